"""Issue 16: the lab's measures against the plain code they replace, side by side in one run.

    python benchmarks/bench_measure_speed.py                 # CPU, one thread
    python benchmarks/bench_measure_speed.py --device cuda   # the GPU-suite stage

Three comparisons, each as a ratio (baseline time / lab time per run; >= 1 means the lab is at
least as fast), best of interleaved rounds (each round times every configuration in turn, so a
noisy neighbour slows them alike), with the spread of the rounds stated as noise:

1. The measurement phase of the sharpness protocol per run (model d 32, 2 layers, PARITY n = 10;
   4 batches of 256, 10 noise draws each), the lab's stacked protocol at M = 1, 8, 32 against a
   plain one-model loop written the way the reference code (lacoco-lab/sensitivity-hardness,
   ``src/measurements.py``) does it: per batch one forward with activations for loss, accuracy
   and LayerNorm blow-up, one clean forward, then 10 forwards with freshly drawn Gaussian noise
   on every parameter but the positional ones, each read back with ``.item()``; the loop runs
   over as many models as the stack holds.
2. Exact average sensitivity and degree profile of a {0,1} truth table at n = 12, 16, 20 against
   a numpy loop over the bits (index XOR for the flips; the butterfly for the spectrum).
3. Learned-function sensitivity (a model on all of {0,1}^10) of a stack of 8 per member against
   one module alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from biaslab.measure.fourier import degree_profile  # noqa: E402
from biaslab.measure.sensitivity import average_sensitivity, learned_sensitivity  # noqa: E402
from biaslab.tasks import make_task  # noqa: E402
from biaslab.train import Member, Stack  # noqa: E402

MODEL = {"d_model": 32, "n_heads": 2, "n_layers": 2, "d_ff": 32}
N, BATCH, BATCHES, DRAWS, SIGMA = 10, 256, 4, 10, 0.02


def protocol():
    """The lab's measurement phase of the sharpness protocol and its spec class."""
    try:  # the layout after issue 9
        from biaslab.experiments.hahn_rofin.protocol import MeasureSpec, measure_members
    except ImportError:
        from biaslab.experiments.landscape import MeasureSpec, measure_members
    return MeasureSpec, measure_members


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: The clock of every timing: wall time, or (``--clock cpu``, the default on a CPU) the CPU time
#: of this process. On a machine shared with other jobs, wall time also counts the time the
#: scheduler gave the core to someone else (the 2-core development machine ran at a load of
#: 10-15 while these numbers were taken); CPU time counts only this process's own work. With one
#: intra-op thread the two agree on an idle machine.
CLOCK = {"clock": time.perf_counter}


def rounds(cases: dict, n_rounds: int, device) -> dict:
    """name -> list of seconds per run over the rounds.

    ``cases``: name -> (fn, runs per call, calls per timing); several calls per timing keep a
    sub-millisecond case from being decided by the cache state the previous case left.
    """
    clock = CLOCK["clock"]
    for fn, _, _ in cases.values():  # warm-up
        fn()
    times = {name: [] for name in cases}
    for _ in range(n_rounds):
        for name, (fn, runs, calls) in cases.items():
            sync(device)
            t0 = clock()
            for _ in range(calls):
                fn()
            sync(device)
            times[name].append((clock() - t0) / runs / calls)
    return times


def noise(ts: list) -> float:
    """Spread of the rounds: (median - best) / best."""
    return (statistics.median(ts) - min(ts)) / min(ts)


def report(title: str, times: dict, pairs: list, unit: float = 1e3, unit_name: str = "ms"):
    print(f"\n### {title}\n")
    print(f"| lab | baseline | lab {unit_name} | baseline {unit_name} | ratio (best of each) | "
          "median of the rounds' ratios (min-max) | noise (lab / base) |")
    print("|---|---|---:|---:|---:|---|---:|")
    ratios = []
    for lab, base in pairs:
        tl, tb = min(times[lab]), min(times[base])
        per_round = [b / a for a, b in zip(times[lab], times[base])]  # timed in the same round
        ratios.append(tb / tl)
        print(f"| {lab} | {base} | {tl * unit:.3g} | {tb * unit:.3g} | **{tb / tl:.2f}x** | "
              f"{statistics.median(per_round):.2f}x ({min(per_round):.2f}-{max(per_round):.2f}) | "
              f"{noise(times[lab]):.0%} / {noise(times[base]):.0%} |", flush=True)
    return ratios


# -- 1. the measurement phase ----------------------------------------------------------------
def reference_measure(model: torch.nn.Module, device, seed: int) -> dict:
    """One run measured the reference's way: Python loop, torch.Generator noise, .item()."""
    from torch.func import functional_call

    gen = torch.Generator(device=device).manual_seed(seed)
    m = {"loss": 0.0, "acc": 0.0, "blowup": 0.0, "sharpness": 0.0}
    with torch.inference_mode():
        for _ in range(BATCHES):
            x = torch.randint(0, 2, (BATCH, N), generator=gen, device=device)
            y = (x.sum(-1) % 2).float()
            out, acts = model(x, acts=True)
            m["loss"] += torch.nn.functional.mse_loss(out, y).item() / BATCHES
            m["acc"] += ((out > 0.5) == (y > 0.5)).float().mean().item() / BATCHES
            names = [k for k in acts if k.endswith(("ln1_in", "ln2_in"))]
            last = names[-1].rsplit(".", 1)[0]
            prod = torch.ones(BATCH, device=device)
            for k in names:
                inv = 1 / acts[k].std(dim=2)
                if k.startswith(last):
                    inv = inv[:, -1:]
                prod *= inv.max(dim=1).values
            m["blowup"] += prod.mean().item() / BATCHES
            # hessian_norm_proxy: a clean forward, then n_repeats noisy ones
            diff = -torch.nn.functional.mse_loss(model(x), y).item()
            for _ in range(DRAWS):
                noised = {k: p + torch.randn(p.size(), generator=gen, device=device) * SIGMA
                          for k, p in model.state_dict().items() if not k.startswith("pos_embed")}
                out = functional_call(model, noised, (x,))
                diff += torch.nn.functional.mse_loss(out, y).item() / DRAWS
            m["sharpness"] += diff / BATCHES
        m["param_norm"] = sum(p.norm().item() ** 2 for k, p in model.named_parameters()
                              if not k.startswith("pos_embed")) ** 0.5
    return m


def bench_measurement(device, n_rounds: int, sizes=(1, 8, 32)):
    MeasureSpec, measure_members = protocol()
    spec = MeasureSpec(batches=BATCHES, batch=BATCH, draws=DRAWS, sigma=SIGMA)
    task = make_task("parity", {"n": N})
    stacks = {m: Stack("transformer", MODEL, task, [Member(seed=s) for s in range(m)], device)
              for m in sizes}
    ref_models = [stacks[max(sizes)].member(i).eval() for i in range(max(sizes))]
    cases = {}
    for m, s in stacks.items():
        # Each stack size against a reference loop over as many models: calls of equal length
        # see the same share of a busy machine's noise (a best-of favours short calls).
        cases[f"lab M={m}"] = ((lambda s=s: measure_members(s, "mse", spec, 1e-3)), m, 1)
        cases[f"reference loop x{m}"] = (
            (lambda m=m: [reference_measure(md, device, i) for i, md in enumerate(ref_models[:m])]),
            m, 1)
    times = rounds(cases, n_rounds, device)
    return report("Measurement phase of the sharpness protocol, per run", times,
                  [(f"lab M={m}", f"reference loop x{m}") for m in sizes])


# -- 2. exact sensitivity and degree profile of a table --------------------------------------
def numpy_sensitivity(table: np.ndarray, n: int) -> float:
    g = 1.0 - 2.0 * table.astype(np.float64)
    idx = np.arange(1 << n)
    total = 0.0
    for i in range(n):
        total += np.mean((g - g[idx ^ (1 << i)]) ** 2)
    return total / 4


def numpy_profile(table: np.ndarray, n: int) -> np.ndarray:
    y = 1.0 - 2.0 * table.astype(np.float64)
    for i in range(n):
        y = y.reshape(-1, 2, 1 << i)
        y = np.stack((y[:, 0] + y[:, 1], y[:, 0] - y[:, 1]), axis=1)
    coef = y.reshape(-1) / (1 << n)
    size = np.bitwise_count(np.arange(1 << n, dtype=np.uint32))
    return np.bincount(size, weights=coef ** 2, minlength=n + 1)


def bench_tables(device, n_rounds: int, ns=(12, 16, 20)):
    gen = torch.Generator().manual_seed(0)
    cases, pairs = {}, []
    for n in ns:
        t = torch.randint(0, 2, (1 << n,), generator=gen).float()
        a = t.numpy()
        td = t.to(device)
        assert abs(float(average_sensitivity(td)) - numpy_sensitivity(a, n)) < 1e-9
        assert np.allclose(degree_profile(td).cpu().numpy(), numpy_profile(a, n), atol=1e-12)
        calls = 1 << max(0, 18 - n)  # about 0.1 s of numpy per timing
        cases[f"sensitivity n={n}"] = ((lambda td=td: float(average_sensitivity(td))), 1, calls)
        cases[f"numpy sensitivity n={n}"] = ((lambda a=a, n=n: numpy_sensitivity(a, n)), 1, calls)
        cases[f"profile n={n}"] = ((lambda td=td: degree_profile(td).cpu()), 1, calls)
        cases[f"numpy profile n={n}"] = ((lambda a=a, n=n: numpy_profile(a, n)), 1, calls)
        pairs += [(f"sensitivity n={n}", f"numpy sensitivity n={n}"),
                  (f"profile n={n}", f"numpy profile n={n}")]
    times = rounds(cases, n_rounds, device)
    return report("Exact sensitivity and degree profile of a {0,1} table (lab on "
                  f"{device.type}, numpy on the CPU)", times, pairs)


# -- 3. learned-function sensitivity -----------------------------------------------------------
def bench_learned(device, n_rounds: int, M: int = 8):
    task = make_task("parity", {"n": N})
    stack = Stack("transformer", MODEL, task, [Member(seed=s) for s in range(M)], device)
    modules = [stack.member(i).eval() for i in range(M)]
    alone = torch.stack([learned_sensitivity(m, N) for m in modules])
    stacked = learned_sensitivity(stack, N)
    assert torch.allclose(alone, stacked, atol=1e-6), (alone, stacked)
    cases = {f"stack of {M}": ((lambda: learned_sensitivity(stack, N)), M, 3),
             "one module alone": ((lambda: [learned_sensitivity(m, N) for m in modules]), M, 3)}
    times = rounds(cases, 3 * n_rounds, device)  # cheap: more rounds against the noise
    return report(f"Learned-function sensitivity on all of {{0,1}}^{N}, per member", times,
                  [(f"stack of {M}", "one module alone")])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--parts", nargs="*", default=["measurement", "tables", "learned"])
    ap.add_argument("--clock", choices=["cpu", "wall"], default=None,
                    help="cpu: this process's CPU time (default on a CPU: a shared machine's "
                         "other jobs do not count); wall: elapsed time (default on a GPU)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    clock = args.clock or ("cpu" if device.type == "cpu" else "wall")
    CLOCK["clock"] = time.process_time if clock == "cpu" else time.perf_counter
    if device.type == "cpu":
        torch.set_num_threads(1)
    print(f"torch {torch.__version__}, numpy {np.__version__}, device {device}, "
          f"threads {torch.get_num_threads()}, {clock} time, best of {args.rounds} interleaved "
          "rounds; noise = (median - best) / best")
    ratios = []
    if "measurement" in args.parts:
        ratios += bench_measurement(device, args.rounds)
    if "tables" in args.parts:
        ratios += bench_tables(device, args.rounds)
    if "learned" in args.parts:
        ratios += bench_learned(device, args.rounds)
    print(f"\nsmallest ratio: {min(ratios):.2f}x")


if __name__ == "__main__":
    main()
