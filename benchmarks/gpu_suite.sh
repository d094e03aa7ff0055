#!/usr/bin/env bash
# The GPU checks, in stages that each fit one device call of at most 9 minutes.
#
#   make gpu-wheels                      # here, once: pydantic and its needs as wheels in .whl/
#   bash benchmarks/gpu_suite.sh next    # there, with .whl and gpu-store/ carried: the first stage
#                                        # of ORDER not yet finished (marker gpu-store/done/STAGE)
#   bash benchmarks/gpu_suite.sh STAGE   # one named stage; writes under $OUT (or ./gpu-out)
#
# ORDER puts the most valuable first: the stack-vs-one-at-a-time and measure-speed benchmarks,
# then the claims that failed or were inconclusive on CPU. Every experiment with a `gpu` preset
# has a stage (tests/test_gpu_suite.py checks it): `exp-NAME` reproduces every claim of
# experiment NAME with --preset gpu (PRESET=paper for the paper preset) within BUDGET_S (540 s)
# into gpu-store/NAME.sqlite, which is copied back under $OUT; a stack is stored when it
# finishes, so a stage cut by the budget resumes in the next call once gpu-store/ is carried back
# in (finished runs are skipped), and only a stage that ended within its budget is marked done.
#
# Named stages beyond exp-NAME: bench (bench_all.py: training and measure ratios),
# measure-speed (issue 16: bench_measure_speed.py, the measures against the code they replace),
# paper (sharpness-scaling --preset paper, resumable), grokking (bench_grokking.py at p = 113, then
# the grokking claims), lawt-speed (bench_lawt.py on the sheet's 6/1-layer 512 model), lawt-eigen
# (5x5 FP15 eigenvalues at the sheet's size), text-qqp (text-sensitivity --preset paper on QQP,
# data/glue/QQP carried), vision (bench_tokenwise.py, then vision-sensitivity), and the older
# names claims3 / phase / lawt-accuracy / failure-anatomy / ood / text-vocab / text-mrpc /
# vision-reg / vision-sharp, kept as aliases of the exp-NAME stages they grew into.
set -euo pipefail
ORDER=(bench measure-speed
  exp-norm-blowup-tradeoff exp-training-dynamics exp-sensitivity-sharpness exp-lowsens-generalization
  exp-init-phase-diagram exp-complexity-control exp-anchor-mechanisms
  vision exp-sensitivity-regularization exp-sensitivity-sharpness-architectures
  exp-text-sensitivity exp-synthetic-vocabulary exp-architecture-sensitivity grokking
  lawt-speed exp-lawt-accuracy exp-lawt-encodings exp-failure-anatomy exp-ood-eigen-distributions
  exp-inversion-conditioning exp-lawt-cotraining
  exp-sharpness-scaling exp-scratchpad exp-length-generalization lawt-eigen paper text-qqp)
stage=${1:?stage: next | ${ORDER[*]} | exp-EXPERIMENT}
mkdir -p gpu-store/done
if [ "$stage" = next ]; then
  stage=""
  # skip stages done, and stages that failed by themselves (not cut by the budget: e.g. a data
  # folder that was not carried), whose marker holds the exit status; delete it to retry
  for s in "${ORDER[@]}"; do
    [ -e "gpu-store/done/$s" ] || [ -e "gpu-store/done/$s.failed" ] || { stage=$s; break; }
  done
  [ -n "$stage" ] || { echo "gpu_suite: every stage of ORDER is done (gpu-store/done/)"; exit 0; }
  echo "gpu_suite: next stage is $stage"
fi
case "$stage" in  # the older stage names, kept so notes that cite them still work
  claims3) stage=exp-sharpness-scaling ;;  # its other claims have their own exp- stages now
  phase) stage=exp-init-phase-diagram ;;
  lawt-accuracy) stage=exp-lawt-accuracy ;;
  failure-anatomy) stage=exp-failure-anatomy ;;
  ood) stage=exp-ood-eigen-distributions ;;
  text-vocab) stage=exp-synthetic-vocabulary ;;
  text-mrpc) stage=exp-text-sensitivity ;;
  vision-reg) stage=exp-sensitivity-regularization ;;
  vision-sharp) stage=exp-sensitivity-sharpness-architectures ;;
esac
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
finished() { touch "gpu-store/done/$stage"; mkdir -p "$out/gpu-store" && cp -r gpu-store/. "$out/gpu-store/"; }
# Run one biaslab command within the budget (BUDGET_S, default 540 s) against a store in
# gpu-store/; mark the stage done only when the command ended by itself (not cut by the timeout),
# so `next` repeats a cut stage, which resumes from the carried store (finished runs are skipped).
budgeted() {
  local label=$1 start rc
  shift
  start=$(date +%s)
  set +e
  timeout "${BUDGET_S:-540}" python3 -m biaslab.cli "$@" > "$out/$label.log" 2>&1
  rc=$?
  set -e
  tail -n 60 "$out/$label.log"
  echo "$label: rc $rc, $(( $(date +%s) - start )) s" | tee -a "$out/$label.txt"
  if [ "$rc" -eq 0 ]; then
    touch "gpu-store/done/$stage"
  elif [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ]; then
    echo "$rc" > "gpu-store/done/$stage.failed"
  fi
  mkdir -p "$out/gpu-store" && cp -r gpu-store/. "$out/gpu-store/"
}
# Every claim of one experiment, --preset gpu (PRESET=paper for the paper preset).
# MAX_MEMBERS cuts a preset's stacks smaller, so each is stored sooner (more resume points).
experiment_stage() {
  budgeted "$1" reproduce --experiment "$1" --preset "${PRESET:-gpu}" \
    ${MAX_MEMBERS:+--max-members "$MAX_MEMBERS"} --store "gpu-store/$1.sqlite" --report "$out/report-$1"
}
case "$stage" in
  exp-init-phase-diagram|exp-anchor-mechanisms|exp-complexity-control)
    # d_model-400 stacks of up to 18 members: stacks of 3 (~3-5 min each, estimated) are stored
    # within a call, so a cut call loses at most one
    MAX_MEMBERS=${MAX_MEMBERS:-3} experiment_stage "${stage#exp-}"
    ;;
  exp-lowsens-generalization|exp-sensitivity-sharpness)
    # stacks of 20 (~3-4 min each, estimated) so each call stores some
    MAX_MEMBERS=${MAX_MEMBERS:-20} experiment_stage "${stage#exp-}"
    ;;
  exp-*)
    experiment_stage "${stage#exp-}"
    ;;
  bench)
    python3 benchmarks/bench_all.py --device cuda --json "$out/bench_stack.json" \
      2>&1 | tee "$out/bench_all.txt"
    finished
    ;;
  measure-speed)
    # Issue 16: the measures against the code they replace (sharpness protocol vs the reference's
    # loop at M = 1, 8, 32; exact sensitivity and degree profile vs numpy; learned sensitivity).
    python3 benchmarks/bench_measure_speed.py --device cuda --rounds 5 2>&1 | tee "$out/measure_speed.txt"
    finished
    ;;
  lawt-speed)
    # Issue 11 item 7: this trainer vs a one-model host-fed loop; target >= 50,000 examples/s.
    python3 benchmarks/bench_lawt.py --device cuda --model sheet --json "$out/bench_lawt.json" \
      2>&1 | tee "$out/bench_lawt.txt"
    finished
    ;;
  paper)
    # sharpness-scaling --preset paper: longer than one call; every finished stack is stored, so
    # repeating the stage (gpu-store/ carried back in) resumes it.
    budgeted paper run sharpness-scaling --preset paper --store gpu-store/paper.sqlite
    ;;
  grokking)
    # Issue 13: bench_grokking.py at the paper's size, then grokking-sensitivity --preset gpu
    # (p = 113, 30 %, 5 seeds as one stack, stored when the stack finishes; not yet timed on a GPU).
    python3 benchmarks/bench_grokking.py --device cuda --p 113 --frac 0.3 --members 1 5 --probe \
      --json "$out/bench_grokking.json" 2>&1 | tee "$out/bench_grokking.txt"
    BUDGET_S=${BUDGET_S:-420} experiment_stage grokking-sensitivity
    ;;
  lawt-eigen)
    # Issue 11: 5x5 FP15 eigenvalues at the sheet's model size (6/1 layers, d 512, 20k steps).
    budgeted lawt-eigen reproduce lawt-eigenvalues-5x5 --preset gpu --set \
      "entries=[{task: eigenvalues, dim: 5, input_encoding: fp15, output_encoding: fp15, model: {d_model: 512, n_enc_layers: 6, n_dec_layers: 1}, train: {steps: 20000}}]" \
      --store gpu-store/lawt-eigen.sqlite --report "$out/report-lawt-eigen"
    ;;
  text-qqp)
    # Issue 12, language: text-sensitivity --preset paper on QQP (1e5 examples seen; resumes over
    # several calls). GLUE files are never downloaded: carry data/glue/QQP (train.tsv, dev.tsv); a
    # missing directory ends in one line naming the expected file (exit 2).
    PRESET=paper experiment_stage text-sensitivity
    ;;
  vision)
    # Issue 12, vision: bench_tokenwise.py, then every vision-sensitivity claim --preset gpu
    # (synthetic 32x32 images on the device, the reference's ViT size, ResNet-18 at width 64, 5
    # seeds per stack; not yet timed on a GPU). The paper presets need cifar-10-batches-bin in data/.
    python3 benchmarks/bench_tokenwise.py --device cuda --members 16 --images 1024 --size 32 \
      2>&1 | tee "$out/bench_tokenwise.txt"
    experiment_stage vision-sensitivity
    ;;
  *) echo "stage: next | ${ORDER[*]} | exp-EXPERIMENT (got '$stage')" >&2; exit 2 ;;
esac
