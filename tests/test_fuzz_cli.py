"""Fuzzed command lines and spec files (hypothesis): every case ends in exit 0, or in exactly one
line on stderr with exit 2 — never a traceback. Training is replaced by a stub that plans the
runs (so specs are resolved and validated in full) without training them; output paths stay
inside a temporary folder. The count of cases tried is printed and cached (resilience/fuzz)."""

import contextlib
import io

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import biaslab.execute  # noqa: E402
import biaslab.execute.batch  # noqa: E402
from biaslab.cli import main  # noqa: E402
from biaslab.registry import CLAIMS, EXPERIMENTS, TASKS, load_all  # noqa: E402

load_all()
EXPERIMENT_NAMES = EXPERIMENTS.names()
CLAIM_NAMES = CLAIMS.names()
TASK_NAMES = TASKS.names()
COUNTS = {"cases": 0, "exit0": 0, "exit2": 0}
SETTINGS = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))

words = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
    st.integers(1000, 100_000).map(lambda k: "y" * k))  # long input: the message stays short
# Sizes (huge), thread counts over the cores, non-finite values, repeated values, huge seeds.
numbers = st.one_of(st.integers(-5, 40).map(str), st.floats(allow_nan=True).map(str),
                    st.sampled_from(["0", "-1", "1e9", "nan", "inf", "-inf", "", "[1,2]", "{a: 1}",
                                     "x", "1000000000", "10000", "[0,0]", "[1,1,2]", str(2**40),
                                     str(2**70), "[inf]"]))
safe_name = st.text(alphabet="abcdefghij_-.0123", min_size=1, max_size=10).filter(
    lambda s: s not in (".", ".."))


def key_values(keys):
    key = st.one_of(st.sampled_from(keys), words)
    return st.lists(st.tuples(key, st.one_of(numbers, words)).map(lambda kv: f"{kv[0]}={kv[1]}"),
                    max_size=4)


SPEC_KEYS = ["n", "train_sizes", "function_seeds", "seeds", "lr", "lrs", "model", "model.name",
             "model.params.d_model", "train.steps", "train.batch", "train.loss", "targets", "ns",
             "preset", "measure.draws", "random_completions", "sweeps", "sweeps.a.lr",
             "sweeps.A.seeds", "sweeps.A.train.batch", "model.params.n_layers", "train_size"]
TASK_KEYS = ["n", "k", "train_size", "function_seed", "size", "seed", "length", "p", "dim"]


def options(pairs):
    """Optional flags: each present or not, with a fuzzed value."""
    return st.lists(st.sampled_from(pairs), max_size=4, unique_by=lambda p: p[0]).flatmap(
        lambda chosen: st.tuples(*[v.map(lambda x, f=f: [f, x]) for f, v in chosen]) if chosen
        else st.just(())).map(lambda groups: [w for g in groups for w in g])


@st.composite
def argv(draw, tmp):
    cmd = draw(st.sampled_from(["run", "reproduce", "sample", "measure", "list", "runs", "report",
                                "export", "junk"]))
    store = str(tmp / draw(safe_name))
    if cmd == "run":
        exp = draw(st.one_of(st.sampled_from(EXPERIMENT_NAMES), words))
        return ["run", exp, *draw(key_values(SPEC_KEYS)), "--store", store, "--quiet",
                *draw(options([("--preset", st.sampled_from(["cpu", "gpu", "paper", "x", ""])),
                               ("--device", st.sampled_from(["cpu", "auto", "cuda", "tpu"])),
                               ("--threads", numbers), ("--workers", numbers),
                               ("--max-members", numbers), ("--executor", st.sampled_from(["local", "dask", ""])),
                               ("--ray-cpus-per-task", numbers), ("--ray-gpus-per-task", numbers),
                               ("--only", st.sampled_from(["ns=4,8", "sweeps=A", "sweeps=a", "x"])),
                               ("--yes", st.just("--yes"))]))]
    if cmd == "reproduce":
        claims = draw(st.lists(st.one_of(st.sampled_from(CLAIM_NAMES), words), max_size=2))
        sets = [w for kv in draw(key_values(SPEC_KEYS)) for w in ("--set", kv)]
        return ["reproduce", *claims, *sets, "--store", store, "--quiet",
                *draw(options([("--preset", st.sampled_from(["cpu", "gpu", "paper", "x"])),
                               ("--device", st.sampled_from(["cpu", "cuda"])),
                               ("--workers", numbers)]))]
    if cmd == "sample":
        task = draw(st.one_of(st.sampled_from(TASK_NAMES), words))
        params = draw(key_values(TASK_KEYS))
        return ["sample", task, *params, *draw(options([
            ("--count", st.one_of(st.integers(-3, 20), st.sampled_from([10**9, 10**12])).map(str)),
            ("--seed", numbers),
            ("--split", st.sampled_from(["train", "test", "val", ""])), ("--json", st.just("--json"))]))]
    if cmd == "measure":
        task = draw(st.one_of(st.sampled_from(["parity", "majority", "sparse_parity", "random",
                                               "junta", "degree", "anchor"]), words))
        n = draw(st.one_of(st.integers(-2, 16).map(lambda v: f"n={v}"),
                           st.sampled_from(["n=x", "n=1000000000", "n=30", "n=5000", "n=inf"])))
        return ["measure", draw(st.sampled_from(["sensitivity", "fourier", "norm"])), task, n,
                *draw(key_values(TASK_KEYS)),
                *draw(options([("--samples", st.integers(-5, 500).map(str)),
                               ("--table", st.just(store))]))]
    if cmd == "list":
        return ["list", *draw(options([("--json", st.just("--json"))]))]
    if cmd in ("runs", "report", "export"):
        # stores: missing, a text file, an empty file, a damaged SQLite file
        store = draw(st.one_of(st.just(store), st.sampled_from(
            [str(tmp / n) for n in ("text", "empty.sqlite", "damaged.sqlite")])))
        out = ["--out", str(tmp / (draw(safe_name) + draw(st.sampled_from([".csv", ".parquet", "", ".xlsx"]))))]
        return [cmd, "--store", store, *(out if cmd != "runs" else []),
                *draw(options([("--experiment", words), ("--where", st.sampled_from(["n=abc", "x", "n=4"])),
                               ("--status", st.sampled_from(["failed", "done", "bogus"]))]
                              if cmd == "runs" else [("--experiment", words)]))]
    return draw(st.lists(words, max_size=5))


def _check(args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    err = err.getvalue()
    COUNTS["cases"] += 1
    COUNTS[f"exit{code}"] = COUNTS.get(f"exit{code}", 0) + 1
    assert "Traceback" not in err
    assert code in (0, 2), (args, code, err)
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("biaslab: error: "), (args, err)
    assert all(len(line) < 600 for line in err.splitlines()), (args, err[:300])


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    """Plan every run (specs resolve and validate in full), train none; fuzzed --threads
    values must not outlive this file (they set torch's thread count in this process)."""
    import torch

    def plan_only(experiment, spec, store, device="auto", **kw):
        plans = experiment.plan(spec)
        return {"planned": len(plans), "skipped": 0, "trained": 0, "seconds": 0.0}
    def plan_all(items, store, device="auto", on_done=None, **kw):  # reproduce's batch runner
        out = {}
        for experiment, spec in items:
            out[experiment.name] = plan_only(experiment, spec, store, device)
            if on_done is not None:
                on_done(experiment, out[experiment.name])
        return out
    monkeypatch.setattr(biaslab.execute, "run_experiment", plan_only)
    monkeypatch.setattr(biaslab.execute.batch, "run_experiments", plan_all)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_fuzzed_command_lines(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "text").write_text("not a store\n")
    (tmp / "empty.sqlite").write_bytes(b"")
    from biaslab.store import Store

    with Store(tmp / "full.sqlite") as full:  # closed: its log checkpointed into the file
        for i in range(50):
            full.save_run(f"r{i}", "lowsens-generalization", {"n": i}, status="done",
                          metrics={"acc": 0.5}, series=[(s, "loss", 1.0) for s in range(20)])
    (tmp / "damaged.sqlite").write_bytes((tmp / "full.sqlite").read_bytes()[:8192])

    @SETTINGS
    @given(argv(tmp))
    def case(args):
        _check(args)
    case()


yaml_scalars = st.one_of(st.integers(-10, 10**6), st.floats(allow_nan=True), st.booleans(),
                         st.none(), words)
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.sampled_from(SPEC_KEYS), words),
                                                 inner, max_size=3)), max_leaves=8)


def test_fuzzed_spec_files(tmp_path_factory):
    import yaml

    tmp = tmp_path_factory.mktemp("specs")
    spec_file = tmp / "spec.yaml"

    @settings(SETTINGS, max_examples=150)
    @given(st.sampled_from(EXPERIMENT_NAMES),
           st.one_of(st.dictionaries(st.one_of(st.sampled_from(SPEC_KEYS), words), yaml_values,
                                     max_size=4).map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
                     words, st.binary(max_size=40).map(lambda b: b.decode("latin-1"))))
    def case(experiment, text):
        spec_file.write_text(text, encoding="utf-8", errors="replace")
        _check(["run", experiment, "--spec", str(spec_file), "--store", str(tmp / "s.sqlite"),
                "--quiet", "--device", "cpu"])
    case()


def test_zz_fuzz_count(request):
    """Runs last in this file: the count of cases tried, for docs/reliability.md."""
    line = (f"cases={COUNTS['cases']} exit0={COUNTS['exit0']} exit2={COUNTS['exit2']} "
            f"other={COUNTS['cases'] - COUNTS['exit0'] - COUNTS['exit2']}")
    print(f"RESILIENCE fuzz: {line}")
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        cache.set("resilience/fuzz", {"line": line, **COUNTS})
    assert COUNTS["cases"] >= 300
