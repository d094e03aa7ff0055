#!/usr/bin/env bash
# The GPU checks of issues 3, 4 and 5 in stages that each fit one 10-minute device call.
#
#   make gpu-wheels                      # here, once: pydantic and its needs as wheels in .whl/
#   bash benchmarks/gpu_suite.sh STAGE   # there, with .whl carried; writes under $OUT (or ./gpu-out)
#
# Stages: bench (bench_all.py: training and measure ratios), measure-speed (issue 16:
# bench_measure_speed.py, the measures against the code they replace), claims3 (issue 3's claims, --preset gpu),
# phase (init-phase-diagram --preset gpu, timed), paper (sharpness-scaling --preset paper, timed;
# longer than one call: it stores every finished run, so repeating the stage resumes it),
# grokking (issue 13: bench_grokking.py at p = 113 and grokking-sensitivity --preset gpu),
# lawt-speed / lawt-eigen / lawt-accuracy / failure-anatomy / ood (issue 11, Charton's math
# transformers: bench_lawt.py on the sheet's 6/1-layer 512 model; 5x5 FP15 eigenvalues; the other
# lawt-accuracy cells; failure-anatomy and ood-eigen-distributions --preset gpu), text-vocab /
# text-mrpc / text-qqp (issue 12, language: synthetic-vocabulary --preset gpu; text-sensitivity
# --preset gpu on MRPC and --preset paper on QQP, with data/glue/MRPC or data/glue/QQP carried;
# not yet timed on a GPU). The training stages keep their store in gpu-store/ (carry it back in to resume: finished runs are skipped).
set -euo pipefail
stage=${1:?stage: bench | measure-speed | claims3 | phase | paper | grokking | lawt-speed | lawt-eigen | lawt-accuracy | failure-anatomy | ood | text-vocab | text-mrpc | text-qqp}
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
  measure-speed)
    # Issue 16: the measures against the code they replace (sharpness protocol vs the reference's
    # loop at M = 1, 8, 32; exact sensitivity and degree profile vs numpy; learned sensitivity).
    python3 benchmarks/bench_measure_speed.py --device cuda --rounds 5 2>&1 | tee "$out/measure_speed.txt"
    ;;
  claims3)
    for claim in sharpness-grows-for-parity parity-needs-norm-or-blowup abrupt-sharpness-change-at-convergence \
                 abrupt-blowup-change-at-convergence abrupt-change-at-convergence-old-rule \
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
  grokking)
    # Issue 13: bench_grokking.py at the paper's size, then grokking-sensitivity --preset gpu
    # (p = 113, 30 %, 5 seeds as one stack, stored when the stack finishes; not yet timed on a GPU).
    store=gpu-store/grokking.sqlite; mkdir -p gpu-store
    python3 benchmarks/bench_grokking.py --device cuda --p 113 --frac 0.3 --members 1 5 --probe \
      --json "$out/bench_grokking.json" 2>&1 | tee "$out/bench_grokking.txt"
    start=$(date +%s)
    timeout "${BUDGET_S:-420}" python3 -m biaslab.cli reproduce grokking-sensitivity-falls \
      grokking-sensitivity-leads grokking-weight-norm-falls --preset gpu --store "$store" \
      --report "$out/report13" 2>&1 | tail -n 40 | tee "$out/grokking.txt" || true
    echo "grokking-sensitivity --preset gpu: $(( $(date +%s) - start )) s" | tee -a "$out/grokking.txt"
    cp "$store" "$out/grokking.sqlite"
    ;;
  lawt-speed)
    # Issue 11 item 7: this trainer vs a one-model host-fed loop; target >= 50,000 examples/s.
    python3 benchmarks/bench_lawt.py --device cuda --model sheet --json "$out/bench_lawt.json" \
      2>&1 | tee "$out/bench_lawt.txt"
    ;;
  lawt-eigen|lawt-accuracy|failure-anatomy|ood)
    # Issue 11: each within one call (BUDGET_S); a run killed by the budget restarts next call.
    store=gpu-store/charton.sqlite; mkdir -p gpu-store
    case "$stage" in
      lawt-eigen) args=(reproduce lawt-eigenvalues-5x5 --preset gpu --set
        "entries=[{task: eigenvalues, dim: 5, input_encoding: fp15, output_encoding: fp15, model: {d_model: 512, n_enc_layers: 6, n_dec_layers: 1}, train: {steps: 20000}}]") ;;
      lawt-accuracy) args=(reproduce lawt-easy-tasks-learned lawt-eigenvalues-5x5 --preset gpu) ;;
      failure-anatomy) args=(reproduce wimtd-failures-roughly-right wimtd-cond-separates --preset gpu) ;;
      ood) args=(reproduce ood-laplace-to-wigner --preset gpu) ;;
    esac
    start=$(date +%s)
    timeout "${BUDGET_S:-540}" python3 -m biaslab.cli "${args[@]}" --store "$store" \
      --report "$out/report11" 2>&1 | tail -n 40 | tee "$out/$stage.txt" || true
    echo "$stage: $(( $(date +%s) - start )) s" | tee -a "$out/$stage.txt"
    cp "$store" "$out/charton.sqlite"
    ;;
  text-vocab|text-mrpc|text-qqp)
    # Issue 12, language: synthetic-vocabulary --preset gpu; text-sensitivity --preset gpu (MRPC)
    # and --preset paper (QQP, 1e5 examples seen; resumes from its store over several calls).
    # GLUE files are never downloaded: carry data/glue/MRPC or data/glue/QQP (train.tsv, dev.tsv);
    # a missing directory ends in one line naming the expected file (exit 2).
    store=gpu-store/text.sqlite; mkdir -p gpu-store
    case "$stage" in
      text-vocab) args=(reproduce synthetic-vocabulary --preset gpu) ;;
      text-mrpc) args=(reproduce text-roberta-below-lstm text-lstm-rises-at-end --preset gpu) ;;
      text-qqp) args=(reproduce text-roberta-below-lstm text-lstm-rises-at-end --preset paper) ;;
    esac
    start=$(date +%s)
    timeout "${BUDGET_S:-540}" python3 -m biaslab.cli "${args[@]}" --store "$store" \
      --report "$out/report12-text" 2>&1 | tail -n 40 | tee "$out/$stage.txt" || true
    echo "$stage: $(( $(date +%s) - start )) s" | tee -a "$out/$stage.txt"
    cp "$store" "$out/text.sqlite"
    ;;
  vision|vision-reg|vision-sharp)
    # Issue 12, vision: vision-sensitivity, sensitivity-regularization and
    # sensitivity-sharpness-architectures --preset gpu (synthetic 32x32 images on the device, the
    # reference's ViT size, ResNet-18 at width 64, 5 seeds per stack; not yet timed on a GPU).
    # Each architecture's stack is stored when it finishes, so a stage cut by the budget resumes
    # in the next call with gpu-store/ carried. The paper presets need cifar-10-batches-bin in data/.
    store=gpu-store/vision.sqlite; mkdir -p gpu-store
    if [ "$stage" = vision ]; then
      python3 benchmarks/bench_tokenwise.py --device cuda --members 16 --images 1024 --size 32 \
        2>&1 | tee "$out/bench_tokenwise.txt"
    fi
    case "$stage" in
      vision) args=(reproduce vision-transformer-lowest-sensitivity --preset gpu) ;;
      vision-reg) args=(reproduce sensreg-lowers-vit-sensitivity sensreg-raises-vit-noise-accuracy
                        vit-more-robust-than-cnn --preset gpu) ;;
      vision-sharp) args=(reproduce sensitivity-tracks-sharpness --preset gpu) ;;
    esac
    start=$(date +%s)
    timeout "${BUDGET_S:-540}" python3 -m biaslab.cli "${args[@]}" --store "$store" \
      --report "$out/report12-vision" 2>&1 | tail -n 40 | tee "$out/$stage.txt" || true
    echo "$stage: $(( $(date +%s) - start )) s" | tee -a "$out/$stage.txt"
    cp "$store" "$out/vision.sqlite"
    ;;
  *) echo "stage: bench | claims3 | phase | paper | grokking | lawt-speed | lawt-eigen | lawt-accuracy | failure-anatomy | ood | text-vocab | text-mrpc | text-qqp | vision | vision-reg | vision-sharp | measure-speed (got '$stage')" >&2; exit 2 ;;
esac
