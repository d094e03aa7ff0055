"""scratchpad: does a scratchpad (prefix parities) remove PARITY's growing sharpness? (E4)

An encoder-decoder (``models/seq2seq.py``, built as the reference's ``TorchModelWithScratchpad``:
2+2 layers, d_model 32, FFN 32, concatenated token and position embeddings from one shared
position table, final LayerNorms, torch.nn.Transformer's Xavier init; batch 128) is trained with teacher forcing and MSE at every decoder position on ``prefix_parity``: it writes the
parity of every prefix, so each output is the XOR of the previous output and one input bit. Its
perturbation sharpness (the same teacher-forced loss, same sigma, draws and batches as E1) is
measured at several n, and so, in the same experiment, is plain PARITY's with the encoder of
sharpness-scaling (``parity_*`` fields), so both slopes come from one store and one preset.

Kept runs: the scratchpad model when its greedy decoding (outputs fed back, thresholded at 0.5)
gets every prefix parity right on more than ``keep_acc`` (0.999, the sheet) of fresh inputs; the
PARITY encoder when its eval MSE < ``keep_mse`` (1e-3), as in sharpness-scaling. Blow-up of the
seq2seq model over the LayerNorms the reference hooks (``src/measurements.py``: ``norm1`` and
``norm2`` of every encoder and every decoder layer; not the decoder's ``norm3`` nor the final
LayerNorms): per token the inverse std of the LayerNorm input (unbiased, no eps), in the last
layer of each side only the last position, the max over positions, the product over the
encoder's LayerNorms (``blowup_enc``, the reference's ``blowup_encoder_maxs_prod``) and over the
decoder's (``blowup_dec``, ``blowup_decoder_maxs_prod``), averaged over examples; ``blowup`` is
the mean of their product (ours, not plotted by the reference). The reference's decoder is one
token longer (it also reads y_n), so its "last decoder position" is that extra token; here it is
the last one that emits an output (reads y_{n-1}).
"""

from __future__ import annotations

import time

import torch
from pydantic import Field

from ...execute.plan import shared_config
from ...measure.norms import parameter_norm
from ...tasks import make_task
from ...tasks.prefix_parity import BOS
from ...train import Stack, TrainConfig, train
from ..base import Experiment, SpecBase, Verdict, register_claim, register_experiment
from .. import rules
from ..claims import Bar
from ..common import ModelChoice, planned_lr, members_of
from ..outcomes import member_outcomes, train_metrics
from .protocol import (MeasureSpec, eval_of, fit_measure_group, measurement_batches,
                        reference_train, sharpness_of)
from ..stats import linfit, rounded
from .sharpness_scaling import SCALING_MIN_NS, SCALING_MIN_RUNS, reference_encoder

CHECK_STREAM = 0xC4EC


#: The reference's scratchpad model (src/model.py TorchModelWithScratchpad, sweeps/scratchpad.yaml).
REFERENCE_S2S = {"d_model": 32, "n_heads": 2, "n_enc_layers": 2, "n_dec_layers": 2, "d_ff": 32,
                 "embed": "concat", "shared_positions": True, "final_norm": True,
                 "qkv_init": "xavier", "matrix_init": "xavier"}


def _s2s_model() -> ModelChoice:
    return ModelChoice(name="seq2seq", params=dict(REFERENCE_S2S))


def _s2s_train() -> TrainConfig:
    # Sheet §3: batch 128; the reference's 10k steps, lr 3e-4 / wd 0.1 on the members; no early stop.
    return TrainConfig(steps=10_000, batch=128, eval_every=100, eval_batch=1024, converge="none",
                       stop_on_converge=False, eval_split="test")


class ScratchpadSpec(SpecBase):
    ns: list[int] = Field(default=[8, 16, 32, 64], min_length=1, description="scratchpad lengths")
    seeds: list[int] = Field(default=list(range(10)), min_length=1, description="model seeds")
    model: ModelChoice = Field(default_factory=_s2s_model, description="the encoder-decoder")
    lr: float = Field(default=3e-4, gt=0, description="learning rate unless model.lr is set")
    weight_decay: float = Field(default=0.1, ge=0, description="AdamW weight decay (both kinds)")
    train: TrainConfig = Field(default_factory=_s2s_train, description="stop_on_converge freezes a "
                               "member once its teacher-forced sequence accuracy >= keep_acc")
    keep_acc: float = Field(default=0.999, gt=0, le=1, description="kept: greedy accuracy > this")
    greedy_batches: int = Field(default=2, gt=0, description="measurement batches decoded greedily "
                                "(n forward passes each)")
    parity_ns: list[int] = Field(default=[4, 6, 8, 10, 12, 14], description="plain PARITY "
                                 "baseline lengths ([] = none; the claim is then INCONCLUSIVE)")
    parity_seeds: list[int] = Field(default=[0, 1, 2], description="seeds of the PARITY baseline")
    parity_model: ModelChoice = Field(default_factory=reference_encoder,
                                      description="the PARITY baseline's encoder")
    parity_lr: float = Field(default=3e-4, gt=0, description="PARITY baseline learning rate")
    parity_train: TrainConfig = Field(default_factory=reference_train,
                                      description="PARITY baseline training recipe")
    measure: MeasureSpec = Field(default_factory=MeasureSpec, description="how runs are measured")
    keep_mse: float = Field(default=1e-3, gt=0, description="PARITY baseline kept: eval MSE below")


def greedy_accuracy(stack: Stack, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Greedy decoding of every member: x [M, B, 2n] (teacher-forced layout; only its encoder
    half is read), y [M, B, n]. Returns [M] fraction of inputs with every prefix parity right."""
    n = y.shape[-1]
    enc = x[..., :n]
    dec = torch.zeros_like(x[..., n:])
    dec[..., 0] = BOS
    with torch.no_grad():
        for t in range(n):
            out = stack.forward(torch.cat([enc, dec], -1), shared_input=False)
            if t + 1 < n:
                dec[..., t + 1] = (out[..., t] > 0.5).to(dec.dtype)
    # After the last pass every position saw the model's own (greedy) prefix.
    return ((out > 0.5) == (y > 0.5)).all(-1).float().mean(-1)


def seq2seq_blowup_from_acts(acts: dict) -> dict:
    """Blow-up over the LayerNorms the reference hooks (module docstring), from ``acts``."""
    def product(side):  # [B]
        layers = sorted({int(k.split(".")[1]) for k in acts
                         if k.startswith(side + ".") and k.endswith(".ln1_in")})
        p = None
        for i in layers:
            for ln in ("ln1_in", "ln2_in"):
                inv = 1.0 / acts[f"{side}.{i}.{ln}"].std(-1)  # [B, L], unbiased, no eps
                if i == layers[-1]:
                    inv = inv[:, -1:]  # the reference keeps the last position in the last layer
                r = inv.amax(-1)
                p = r if p is None else p * r
        return p

    e, d = product("encoder"), product("decoder")
    return {"blowup_enc": e.mean(), "blowup_dec": d.mean(), "blowup": (e * d).mean()}


def seq2seq_blowups(stack: Stack, batches, member_chunk=None) -> dict:
    def member(p, b, xx):
        return seq2seq_blowup_from_acts(stack.apply(p, b, xx, acts=True)[1])

    with torch.no_grad():
        vals = [stack.map(member, stack.params, stack.buffers, x,
                          chunk="auto" if member_chunk is None else member_chunk)
                for x, _ in batches]
    return {k: torch.stack([v[k] for v in vals]).mean(0) for k in vals[0]}


@register_experiment
class Scratchpad(Experiment):
    name = "scratchpad"
    description = "sharpness of an encoder-decoder writing prefix parities vs plain PARITY, over n"
    Spec = ScratchpadSpec

    def plan(self, spec: ScratchpadSpec):
        spec.model.validate_now("model")
        spec.parity_model.validate_now("parity_model")
        plans = []
        for n in spec.ns:
            make_task("prefix_parity", {"n": n})
            for s in spec.seeds:
                cfg = {"kind": "scratchpad", "target": "prefix_parity", "n": n, "seed": s,
                       "model": spec.model.model_dump(), "lr": planned_lr(spec.lr, spec.model.lr),
                       "weight_decay": spec.weight_decay, "train": spec.train.model_dump(),
                       "measure": spec.measure.model_dump(), "keep_acc": spec.keep_acc,
                       "greedy_batches": spec.greedy_batches}
                plans.append(self._plan(cfg, ("scratchpad", f"n={n}")))
        for n in spec.parity_ns:
            for s in spec.parity_seeds:
                cfg = {"kind": "parity", "target": "parity", "n": n, "seed": s,
                       "model": spec.parity_model.model_dump(),
                       "lr": planned_lr(spec.parity_lr, spec.parity_model.lr),
                       "weight_decay": spec.weight_decay, "train": spec.parity_train.model_dump(),
                       "measure": spec.measure.model_dump(), "keep_mse": spec.keep_mse}
                plans.append(self._plan(cfg, ("parity", f"n={n}")))
        return plans

    def run_group(self, spec, plans, device, progress=False):
        if shared_config(plans)["kind"] == "parity":
            return fit_measure_group(plans, device, progress)
        t0 = time.perf_counter()
        c0 = shared_config(plans)
        model = ModelChoice(**c0["model"])
        cfg = TrainConfig(**c0["train"])
        m = MeasureSpec(**c0["measure"])
        task = make_task("prefix_parity", {"n": c0["n"]})
        members = members_of(plans)
        stack = Stack(model.name, model.params, task, members, device)
        check_batch = measurement_batches(stack, m.model_copy(update={"batches": 1,
                                                                       "batch": cfg.eval_batch}),
                                          salt=CHECK_STREAM)[0]

        def check():
            x, y = check_batch
            out = stack.forward(x, shared_input=False)
            return task.correct(out, y).float().mean(-1) >= c0["keep_acc"]

        result = train(stack, cfg, progress=progress, check=check)
        batches = measurement_batches(stack, m)
        ev = eval_of(stack, cfg.loss, batches)
        sharp = sharpness_of(stack, cfg.loss, batches, m)
        greedy = torch.stack([greedy_accuracy(stack, x, y)
                              for x, y in batches[:c0["greedy_batches"]]]).mean(0)
        blow = seq2seq_blowups(stack, batches, m.member_chunk)
        norm = parameter_norm(stack)
        seconds = time.perf_counter() - t0

        def member(i):
            return {"sharpness": float(sharp[i]), "sharpness_x4": float(4 * sharp[i]),
                    "eval_mse": float(ev["eval_mse"][i]), "teacher_acc": float(ev["eval_acc"][i]),
                    "greedy_acc": float(greedy[i]),
                    "converged": float(greedy[i] > c0["keep_acc"]),
                    "param_norm": float(norm[i]),
                    **{k: float(v[i]) for k, v in blow.items()},
                    **train_metrics(result, cfg, i)}

        return member_outcomes(plans, member, seconds, result=result, series=("train_loss",))

    def figures(self, table, artifacts):
        from . import figures

        return {"scratchpad_vs_parity": figures.scratchpad_figure(table)}


def scratchpad_fits(table) -> dict:
    out = {}
    for kind in ("scratchpad", "parity"):
        rows = [r for r in table if r["kind"] == kind]
        kept = [r for r in rows if r.get("converged") == 1.0]
        fit = linfit([r["n"] for r in kept], [r["sharpness_x4"] for r in kept])
        fit["se"] = rules.slope_fit([r["n"] for r in kept], [r["sharpness_x4"] for r in kept])["se"]
        fit["xs"], fit["ys"] = [r["n"] for r in kept], [r["sharpness_x4"] for r in kept]
        fit["ns"] = len({r["n"] for r in kept})
        fit["kept"] = f"{len(kept)}/{len(rows)}"
        out[kind] = fit
    return out


@register_claim(
    "scratchpad-sharpness-flat",
    "scratchpad",
    "with a scratchpad (prefix parities, encoder-decoder) the sharpness does not grow with n the "
    "way plain PARITY's does: PARITY's slope of sharpness on n is above 0 and above the "
    "scratchpad's slope, each by more than 2 standard errors (PARITY measured in the same "
    "experiment); a scratchpad slope above PARITY's beyond 2 se fails, a tie is INCONCLUSIVE",
    "Hahn & Rofin Fig 11 (E4): no PARITY-like growth of sharpness with the scratchpad, n from 4 "
    "to 1024; magnitudes not published in the sheet",
    statistic="least-squares slope of sharpness x4 on n over kept runs, scratchpad and plain "
    "PARITY, with standard errors",
    comparison="PARITY's slope > 0; PARITY's slope - the scratchpad's > 0",
    bars=[rules.TIE_BAR, rules.MIN_RUNS_BAR,
          Bar("runs per kind", f">= {SCALING_MIN_RUNS} over >= {SCALING_MIN_NS} n",
              "reason: a slope with a standard error needs several n and runs")],
)
def check_scratchpad(table):
    # Decision rule (issue 22 item 4; the issue-10 rule's 1/5 had no source and no tie band:
    # docs/results.md). Each kind needs SCALING_MIN_RUNS kept runs over SCALING_MIN_NS n (else
    # INCONCLUSIVE). Parts: PARITY's slope > 0; slope(PARITY) - slope(scratchpad) > 0; standard
    # errors from the least-squares fits over runs; PASS beyond +2 se, FAIL beyond -2 se, else a
    # tie. The scratchpad's sharpness averages the loss over its n outputs, PARITY's is one output.
    fits = scratchpad_fits(table)
    numbers = {k: {"slope_x4": rounded(f["slope"], 5), "slope_se": rounded(f["se"], 5),
                   "r": rounded(f["r"], 3), "kept": f["kept"], "n_values": f["ns"]}
               for k, f in fits.items()}
    if any(f["k"] < SCALING_MIN_RUNS or f["ns"] < SCALING_MIN_NS for f in fits.values()):
        return Verdict("INCONCLUSIVE", "too few kept runs / n values (scratchpad "
                       f"{fits['scratchpad']['kept']} over {fits['scratchpad']['ns']} n, parity "
                       f"{fits['parity']['kept']} over {fits['parity']['ns']} n; need "
                       f"{SCALING_MIN_RUNS} over {SCALING_MIN_NS})", numbers)
    sp, pa = fits["scratchpad"], fits["parity"]
    parts = [rules.slope_vs(pa["xs"], pa["ys"], 0.0, label="parity slope"),
             rules.compare_slopes(pa["xs"], pa["ys"], sp["xs"], sp["ys"],
                                  label="parity vs scratchpad")]
    return rules.verdict(parts, numbers)
