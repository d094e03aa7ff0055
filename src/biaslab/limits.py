"""Sizes bounded before anything is allocated: one memory estimate for every command.

A size a user types (n, --count, train.batch, d_model, p, --samples) reaches an allocator only
after it passed a check here, so a typo such as ``n=1000000000`` ends in one line that names the
field and the largest value that fits, not in an allocator traceback or an hour of swapping.

The estimates are deliberately rough upper bounds (a factor of a few above what is allocated):
the point is to refuse what cannot fit by orders of magnitude, not to predict usage. The limit is
the larger of this machine's memory and its GPU's (a stack that does not fit a GPU is split in
halves by the executor, so one member is what must fit); ``BIASLAB_MEMORY_LIMIT`` (bytes, or
with a G / M suffix) overrides it.
"""

from __future__ import annotations

import math
import os

from .errors import InputError

#: Seeds go through ``rng.key_of``, which keeps 32 bits: a larger seed would silently equal a
#: smaller one, so it is refused instead.
SEED_LIMIT = 2**32

# Bytes per element of an activation (fp32), times the copies a training step keeps (forward
# activations, their gradients, temporaries): a rough constant, see the docstring.
_BYTES_PER_ACTIVATION = 4 * 4


def memory_limit() -> int:
    """Bytes a single run or command may plan to allocate on this machine."""
    text = os.environ.get("BIASLAB_MEMORY_LIMIT", "").strip().upper()
    if text:
        scale = {"G": 2**30, "M": 2**20, "K": 2**10}.get(text[-1], 1)
        try:
            return int(float(text.rstrip("GMK")) * scale)
        except ValueError:
            raise InputError("BIASLAB_MEMORY_LIMIT", f"{text!r} is not a size", "bytes, e.g. 8G") from None
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 16 * 2**30
    gpu = 0
    try:
        import torch

        if torch.cuda.is_available():
            gpu = max(torch.cuda.get_device_properties(i).total_memory
                      for i in range(torch.cuda.device_count()))
    except Exception:  # noqa: BLE001 - a broken driver only means "no GPU" for this estimate
        gpu = 0
    return max(ram, gpu)


def human_bytes(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def check_size(field: str, value: int, bytes_per_unit: float, what: str) -> None:
    """Refuse ``value`` when ``value * bytes_per_unit`` exceeds the memory limit; the message
    says how much it would take and the largest value that fits."""
    limit = memory_limit()
    need = value * bytes_per_unit
    if need > limit:
        largest = max(int(limit // max(bytes_per_unit, 1)), 0)
        raise InputError(field, f"{value} needs about {human_bytes(need)} for {what}, over this "
                         f"machine's limit of {human_bytes(limit)}", f"{field} <= {largest}")


def check_seed(field: str, seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        return
    if not 0 <= seed < SEED_LIMIT:
        raise InputError(field, f"{seed} is outside the generator's range", f"0 <= {field} < 2^32")


def check_sample(task, count: int) -> None:
    """``biaslab sample``: ``count`` inputs of the task's length (int64, with temporaries)."""
    length = int(task.seq_len)
    per_example = 8 * 4 * 16
    if length * per_example > memory_limit():  # name the parameter that made it this long
        ints = {k: v for k, v in task.params.model_dump().items()
                if isinstance(v, int) and not isinstance(v, bool)}
        field = "n" if "n" in ints else max(ints, key=ints.get, default="n")
        raise InputError(field, f"{ints.get(field, length)} makes one example {length} tokens long, "
                         f"about {human_bytes(length * per_example)} to sample, over this "
                         f"machine's limit of {human_bytes(memory_limit())}",
                         f"{field} small enough for examples of at most "
                         f"{memory_limit() // per_example} tokens")
    check_size("count", count, 8 * 4 * max(length, 1), f"examples of length {length}")


def check_sampled_sensitivity(n: int, samples: int) -> None:
    """Sampled sensitivity evaluates each of ``samples`` inputs with its n flips: an
    [samples (n+1), n] int64 batch and its float outputs (3 copies of 8 bytes)."""
    limit = memory_limit()
    need = 24.0 * samples * (n + 1) * n
    if need > limit:
        largest_n = int(math.isqrt(int(limit // (24 * max(samples, 1)))))
        largest_samples = int(limit // (24 * (n + 1) * n))
        raise InputError("n", f"{n} with {samples} samples needs about {human_bytes(need)} (each "
                         f"sample is n+1 inputs of length n), over this machine's limit of "
                         f"{human_bytes(limit)}", f"n <= {largest_n} at {samples} samples" + (
                             f", or --samples <= {largest_samples} at n = {n}"
                             if largest_samples >= 2 else ""))


# -- one run of a spec ------------------------------------------------------------------------
_BATCH = ("batch",)  # every key ending in one of these: train.batch, eval_batch, measure.batch
_LENGTH = ("n", "seq_len", "max_len", "length")
_WIDTH = ("d_model", "dim", "width", "hidden", "d_ff", "mlp_dim", "channels", "d_embed", "p")
_DEPTH = ("n_layers", "depth", "n_enc_layers", "n_dec_layers")


def _ints(flat: dict, names: tuple, suffix: bool = False) -> list[tuple[str, int]]:
    out = []
    for key, v in flat.items():
        last = key.rsplit(".", 1)[-1]
        hit = any(last.endswith(n) for n in names) if suffix else last in names
        if hit and isinstance(v, int) and not isinstance(v, bool) and v > 0:
            out.append((key, v))
    return out


def run_bytes(config: dict) -> tuple[float, dict[str, tuple[str, int]]]:
    """A rough upper bound of one run's training memory from its config, and the fields (name,
    value) that set each factor: batch x length x width x depth activations."""
    from .store.query import flatten_config as _flatten

    flat = _flatten(config)
    factors = {}
    for role, names, suffix in (("batch", _BATCH, True), ("length", _LENGTH, False),
                                ("width", _WIDTH, False), ("depth", _DEPTH, False)):
        found = _ints(flat, names, suffix)
        factors[role] = max(found, key=lambda kv: kv[1]) if found else ("", 1)
    sizes = [(k, v) for k, v in _ints(flat, ("size",)) if "task" in k or k == "size"]
    if sizes:  # images: a convolution works on size^2 pixels, a ViT on (size / patch)^2 patches
        key, side = max(sizes, key=lambda kv: kv[1])
        patch = max((v for _, v in _ints(flat, ("patch",))), default=1)
        if (side // patch) ** 2 > factors["length"][1]:
            factors["length"] = (key, max(side // patch, 1) ** 2)
    b, l, w, d = (factors[r][1] for r in ("batch", "length", "width", "depth"))
    return float(_BYTES_PER_ACTIVATION) * b * l * w * d, factors


def check_run(config: dict) -> None:
    """Refuse a run whose estimated memory exceeds the limit, naming the largest factor's field."""
    need, factors = run_bytes(config)
    limit = memory_limit()
    if need <= limit:
        return
    role, (field, value) = max(((r, f) for r, f in factors.items() if f[0]),
                               key=lambda rf: rf[1][1], default=("batch", ("train.batch", 1)))
    largest = max(int(value * limit / need), 0)
    raise InputError(field, f"{value} makes one run need about {human_bytes(need)}, over this "
                     f"machine's limit of {human_bytes(limit)}", f"{field} <= {largest} with the "
                     "other sizes as they are")


def check_values(values, path: str = "") -> None:
    """Refuse values that cannot be meant anywhere in a spec: non-finite numbers and seeds
    outside the generator's range."""
    if isinstance(values, dict):
        for k, v in values.items():
            check_values(v, f"{path}.{k}" if path else str(k))
    elif isinstance(values, (list, tuple)):
        for v in values:
            check_values(v, path)
    elif isinstance(values, float) and not math.isfinite(values):
        raise InputError(path, f"{values} is not a finite number", "a finite number")
    elif path.rsplit(".", 1)[-1].endswith(("seed", "seeds")):
        check_seed(path, values)
