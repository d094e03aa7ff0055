"""Issue 4's and issue 16's benchmarks in one run: training (stack vs one-at-a-time), measures
(one stacked call vs a loop over members), side by side for each stack size, and the measures
against the plain code they replace (bench_measure_speed.py).

    python benchmarks/bench_all.py --device cpu     # tiny and small models; measures on the small config
    python benchmarks/bench_all.py --device cuda    # every model, M in {1, 16, 64, 256}, fp32/TF32/bf16

The parts are `bench_stack.py`, `bench_measures.py` and `bench_measure_speed.py`; this script
runs them with matching stack sizes so that one invocation prints every ratio.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import bench_measure_speed  # noqa: E402
import bench_measures  # noqa: E402
import bench_stack  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--members", type=int, nargs="*", help="stack sizes (default: 1 16 64 [256 on GPU])")
    ap.add_argument("--json", help="training rows to this file too")
    args = ap.parse_args()
    gpu = args.device == "cuda"
    sizes = args.members or ([1, 16, 64, 256] if gpu else [1, 16, 64])
    print("## Training: stack vs one-at-a-time\n", flush=True)
    train_args = ["--device", args.device, "--members", *map(str, sizes), "--compile"]
    bench_stack.main(train_args + (["--full"] if gpu else []) + (["--json", args.json] if args.json else []))
    print("\n## Measures: one vmapped call vs a loop over members\n", flush=True)
    for m in sizes:
        if m == 1:
            continue  # a loop of one is the vmapped call's own baseline
        bench_measures.main(["--device", args.device, "--members", str(m)] + ([] if gpu else ["--small"]))
    print("\n## Measures against the plain code they replace (issue 16)", flush=True)
    bench_measure_speed.main(["--device", args.device])


if __name__ == "__main__":
    main()
