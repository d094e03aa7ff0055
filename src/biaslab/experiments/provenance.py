"""What a stored verdict says about where it came from: the scale of its preset against the
paper's (the resolved fields that differ from the ``paper`` preset), the commit, machine and
torch version it was computed with, and whether it held over reruns on disjoint seeds."""

from __future__ import annotations

import datetime
import functools
import os
import platform
import subprocess
from pathlib import Path

MAX_SCALE_ITEMS = 14


#: Keys that name an entry of a list of settings (LAWT's per-task cells, a sweep's targets):
#: entries are matched across presets by these, not by position.
ENTRY_KEYS = ("task", "name")


def _entry_label(entry: dict, index: int) -> str:
    named = [str(entry[k]) for k in ENTRY_KEYS if isinstance(entry.get(k), (str, int))]
    return named[0] if named else str(index)


def _flat(d, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flat(v, key + "."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            # a list of settings: one flat field per entry and key, so that a preset's 3x3 transposition
            # cell reads "entries[transpose].dim 3 vs 10" rather than "entries [...] vs [...]"
            labels = [_entry_label(x, i) for i, x in enumerate(v)]
            seen: dict = {}
            for x, label in zip(v, labels):
                seen[label] = seen.get(label, 0) + 1
                tag = label if labels.count(label) == 1 else f"{label}#{seen[label]}"
                out.update(_flat(x, f"{key}[{tag}]."))
        else:
            out[key] = v
    return out


def _show(v) -> str:
    if isinstance(v, float):
        return f"{v:,.6g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, list):
        if len(v) > 6:
            return f"[{', '.join(_show(x) for x in v[:3])}, ... {len(v)} values]"
        return "[" + ", ".join(_show(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(sorted(map(str, v))) + "}"
    return str(v)


def scale_diff(ours: dict, paper: dict) -> list[str]:
    """The leaf fields whose values differ between two resolved specs, as
    "field ours vs paper" (a field only one side has shows "-" on the other; an entry of a list
    of settings that only one side has is one item, "entries[eigenvectors] - vs an entry")."""
    a, b = _flat(ours), _flat(paper)
    entries_a, entries_b = _entries(a), _entries(b)
    alone = (entries_a - entries_b) | (entries_b - entries_a)
    out, named = [], set()
    for key in sorted(set(a) | set(b)):
        owner = next((e for e in alone if key.startswith(e + ".")), None)
        if owner is not None:  # keys run sorted: an entry's first key names it, once
            if owner not in named:
                named.add(owner)
                out.append(f"{owner} {'an entry' if owner in entries_a else '-'} vs "
                           f"{'an entry' if owner in entries_b else '-'}")
            continue
        va, vb = a.get(key, "-"), b.get(key, "-")
        if va != vb:
            out.append(f"{key} {_show(va)} vs {_show(vb)}")
    return out


def _entries(flat: dict) -> set:
    """The entry prefixes (``entries[transpose]``) of a flattened spec."""
    return {k[:k.index("].") + 1] for k in flat if "]." in k}


def scale_of(experiment: str, spec) -> list[str]:
    """How the resolved ``spec`` of ``experiment`` differs from its ``paper`` preset (an empty
    list: it is the paper's setup). At most MAX_SCALE_ITEMS fields are named, then a count."""
    from ..registry import EXPERIMENTS
    from ..spec import presets_of, resolve

    if "paper" not in presets_of(experiment):
        return ["no paper preset to compare with"]
    paper = resolve(EXPERIMENTS.get(experiment).Spec, experiment, "paper")
    diff = scale_diff(spec.model_dump(), paper.model_dump())
    if len(diff) > MAX_SCALE_ITEMS:
        diff = diff[:MAX_SCALE_ITEMS] + [f"... and {len(diff) - MAX_SCALE_ITEMS} more fields"]
    return diff


def stability(statuses: list[str]) -> str:
    """A verdict over its replicates: "stable" when every replicate gives the same status,
    "seed-dependent" otherwise."""
    return "stable" if len(set(statuses)) == 1 else "seed-dependent"


@functools.lru_cache(maxsize=1)
def _commit() -> str:
    root = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=10", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return head.stdout.strip() + ("+uncommitted" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"


@functools.lru_cache(maxsize=1)
def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # the kernel set torch dispatches to (AVX2 vs AVX-512 round differently in the last bits,
    # which a sharp loss drop can amplify): two stores match bit for bit only on the same one
    import torch

    try:
        isa = torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        isa = "unknown"
    return f"{name}, {os.cpu_count()} cores, torch CPU kernels {isa}"


def provenance() -> dict:
    """Commit, machine, torch and Python versions and the date, for a verdict's record."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"commit": _commit(), "machine": machine() + (f", {gpu}" if gpu else ""),
            "torch": torch.__version__, "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


REPLICATE_STRIDE = 1000  # replicate k adds k * 1000 to every seed: disjoint from any preset's seeds


def _shift_seeds(node, k: int):
    if isinstance(node, dict):
        return {key: ([s + k * REPLICATE_STRIDE for s in v]
                      if key.endswith("seeds") and isinstance(v, list)
                      and all(isinstance(s, int) and not isinstance(s, bool) for s in v)
                      else _shift_seeds(v, k))
                for key, v in node.items()}
    if isinstance(node, list):
        return [_shift_seeds(v, k) for v in node]
    return node


def replicate_spec(spec, k: int):
    """Replicate ``k`` of a resolved spec: every seed list (a field named ``...seeds``) shifted
    by ``k * REPLICATE_STRIDE``, so the replicates train on disjoint seed sets; everything else,
    fixed test-set seeds included, stays. Replicate 0 is the spec itself."""
    if k == 0:
        return spec
    return type(spec)(**_shift_seeds(spec.model_dump(), k))


def seed_fields(spec) -> list[str]:
    """The dotted names of the seed lists ``replicate_spec`` shifts (empty: no replicates)."""
    out = []

    def walk(node, prefix):
        if isinstance(node, dict):
            for key, v in node.items():
                if key.endswith("seeds") and isinstance(v, list):
                    out.append(prefix + key)
                else:
                    walk(v, f"{prefix}{key}.")
    walk(spec.model_dump(), "")
    return out
