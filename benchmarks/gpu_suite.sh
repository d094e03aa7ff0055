#!/usr/bin/env bash
# The GPU checks of issues 3, 4 and 5 in stages that each fit one 10-minute device call.
#
#   make gpu-wheels                      # here, once: pydantic and its needs as wheels in .whl/
#   bash benchmarks/gpu_suite.sh STAGE   # there, with .whl carried; writes under $OUT (or ./gpu-out)
#
# Stages: bench (bench_all.py: training and measure ratios), claims3 (issue 3's claims, --preset gpu),
# phase (init-phase-diagram --preset gpu, timed), paper (sharpness-scaling --preset paper, timed;
# longer than one call: it stores every finished run, so repeating the stage resumes it).
set -euo pipefail
stage=${1:?stage: bench | claims3 | phase | paper}
out=${OUT:-gpu-out}
mkdir -p "$out"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:src
else
  export PYTHONPATH=src
fi
export PYTHONUNBUFFERED=1
run() { python3 -m biaslab.cli "$@"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/machine.csv" || true
case "$stage" in
  bench)
    python3 benchmarks/bench_all.py --device cuda --json "$out/bench_stack.json" \
      2>&1 | tee "$out/bench_all.txt"
    ;;
  claims3)
    for claim in sharpness-grows-for-parity parity-needs-norm-or-blowup abrupt-change-at-convergence \
                 sharpness-rises-with-sensitivity majority-extends-parity-fails scratchpad-sharpness-flat; do
      start=$(date +%s)
      run reproduce "$claim" --preset gpu --store "$out/issue3.sqlite" 2>&1 | tee -a "$out/claims3.txt"
      echo "$claim: $(( $(date +%s) - start )) s" | tee -a "$out/claims3.txt"
    done
    run report --store "$out/issue3.sqlite" --out "$out/report3" > /dev/null
    ;;
  phase)
    start=$(date +%s)
    run reproduce init-phase-small-gamma-symmetric init-phase-large-gamma-inferential --preset gpu \
      --store "$out/issue5.sqlite" 2>&1 | tee "$out/phase.txt"
    echo "init-phase-diagram --preset gpu: $(( $(date +%s) - start )) s" | tee -a "$out/phase.txt"
    ;;
  paper)
    # A store under $OUT comes back; carry it in (as gpu-store/) to resume in the next call.
    store=gpu-store/paper.sqlite; mkdir -p gpu-store
    start=$(date +%s)
    timeout "${BUDGET_S:-540}" python3 -m biaslab.cli run sharpness-scaling --preset paper \
      --store "$store" 2>&1 | tail -n 40 | tee "$out/paper.txt" || true
    echo "sharpness-scaling --preset paper, this call: $(( $(date +%s) - start )) s" | tee -a "$out/paper.txt"
    cp "$store" "$out/paper.sqlite"
    ;;
  *) echo "stage: bench | claims3 | phase | paper (got '$stage')" >&2; exit 2 ;;
esac
