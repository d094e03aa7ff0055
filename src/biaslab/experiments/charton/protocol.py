"""Pieces shared by the Charton experiments: the spec of one linear-algebra run, planning, training
a group as one stack of LAWT models, and the sheet's evaluation on a fixed seeded test set.

Evaluation (sheet ``math-transformer.md`` section 3, "Evaluation"; reference ``src/evaluator.py``):
  1. teacher-forced: if the argmax at every target position equals the target, the example is
     correct at every tolerance (the reference's short-cut, sheet section 6.3);
  2. otherwise the greedy (beam 1) decode is parsed into a matrix; a malformed output is wrong
     and counted as its own category;
  3. the task's check (relative L1 error, or the task-specific check) must be below tau.
The test set is drawn once from a fixed seed (``test_seed``) with the task's ``test_set`` (the
reference regenerates an unseeded one at every evaluation, sheet section 6.6) and stored with
each run as artifacts, with every prediction and error.

Co-training (task ``cotraining``, LAWT's ``--operation cotraining``) is scored per task code, as
the reference logs ``valid_..._acc_<code>`` (``src/evaluator.py``, ``code_class``): a member's
evaluation is then {code: LinalgEvaluation over that code's rows}, a row counting only when its
first decoded token repeats its code; its rates carry the code in front ("T.acc_5") beside the
rates over all rows.
"""

from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field

from ...errors import InputError
from ...execute.plan import shared_config
from ...measure.linalg_checks import LinalgEvaluation, evaluate
from ...models.decoding import stack_beam, stack_greedy
from ...registry import TASKS
from ...train import Member, Stack, TrainConfig, train
from ..base import SpecBase
from ..common import planned_lr
from ..outcomes import member_outcomes

TOLERANCES = [0.05, 0.02, 0.01, 0.005]


def lawt_train(**kw) -> TrainConfig:
    """The sweeps' optimizer (Adam, betas 0.9/0.999, eps 1e-8) with the sequence loss; no early
    stop (the reference stops on a validation patience the sheet gives per sweep)."""
    base = {"loss": "ce_seq", "converge": "none", "stop_on_converge": False, "eval_every": 500,
            "eval_batch": 64, "eval_split": "test", "batch": 64}
    return TrainConfig(**{**base, **kw})


class LinalgEntry(SpecBase):
    """One cell of a sweep: a task at one size and encoding, optionally its own model/optimizer."""

    task: str = Field(description="linalg task (transpose, matrix_sum, eigenvalues, ...)")
    dim: int = Field(description="matrix dimension")
    input_encoding: str = Field(default="p1000", description="p10, p1000, b1999 or fp15")
    output_encoding: str = Field(default="p1000", description="p10, p1000, b1999 or fp15")
    task_params: dict = Field(default_factory=dict, description="further task fields")
    model: dict = Field(default_factory=dict, description="lawt fields over the spec's model")
    train: dict = Field(default_factory=dict, description="train fields over the spec's train")
    lr: Optional[float] = Field(default=None, gt=0, description="learning rate (None: the spec's)")
    patience: Optional[int] = Field(default=None, ge=1, description="this cell's patience "
                                    "(None: the spec's; the sweeps differ per task)")
    decides: bool = Field(default=False, description="a reduced-scale cell that a recorded pilot "
                          "sized to reach the claim's bar: a miss is then a FAIL, as at paper scale")


class LinalgCommon(SpecBase):
    """What every Charton experiment sets besides its cells."""

    seeds: list[int] = Field(default=[0], min_length=1, description="model seeds per cell")
    model: dict = Field(default_factory=lambda: {"d_model": 64, "n_heads": 4, "n_enc_layers": 1,
                                                 "n_dec_layers": 1, "parallel_cross": True},
                        description="lawt fields (parallel_cross: the reference's decoder)")
    lr: float = Field(default=1e-4, gt=0, description="learning rate unless an entry sets one")
    clip_norm: Optional[float] = Field(default=5.0, gt=0, description="gradient clip (sweeps: 5)")
    train: TrainConfig = Field(default_factory=lawt_train, description="training recipe")
    test_size: int = Field(default=1000, gt=0, description="examples of the fixed test set")
    test_seed: int = Field(default=20211203, description="seed of the fixed test set")
    tolerances: list[float] = Field(default_factory=lambda: list(TOLERANCES), min_length=1,
                                    description="relative tolerances the checks are scored at")
    beam: int = Field(default=1, ge=1, description="beam width of the decode (sweeps: 1)")
    decode_batch: int = Field(default=500, gt=0, description="test examples decoded at once")
    valid_size: int = Field(default=0, ge=0, description="problems of a fixed validation set "
                            "scored (greedy, acc at the first tolerance) at every evaluation; each "
                            "member's best checkpoint is then the one tested, as LAWT reloads "
                            "best-valid_numeric_beam_acc (0 = no validation: the last model)")
    valid_seed: int = Field(default=20211204, description="seed of the fixed validation set")
    patience: Optional[int] = Field(default=None, ge=1, description="with valid_size: a member "
                                    "stops after this many evaluations without a better "
                                    "validation accuracy (LAWT's stopping_criterion "
                                    "valid_numeric_beam_acc,N); None = the whole step budget")
    paper_scale: bool = Field(default=False, description="True only for settings at the "
                              "reference's scale: a miss is then a FAIL (below that scale only "
                              "in a pilot-sized cell, `decides`)")


class LinalgSpec(LinalgCommon):
    entries: list[LinalgEntry] = Field(min_length=1, description="task/size/encoding cells")


def task_values(entry: LinalgEntry) -> dict:
    return {"dim": entry.dim, "encoding": entry.input_encoding,
            "output_encoding": entry.output_encoding, **entry.task_params}


def make_linalg_task(name: str, values: dict, field: str = "entries.task"):
    """The registered linalg task ``name`` built from ``values`` (one-line error if bad)."""
    if name not in TASKS or not hasattr(TASKS.get(name), "test_set"):
        names = [n for n in TASKS.names() if hasattr(TASKS.get(n), "test_set")]
        raise InputError(field, f"unknown linalg task {name!r}", ", ".join(names))
    prefix = field.rsplit(".", 1)[0]
    try:
        return TASKS.get(name).from_dict(values, prefix=prefix)
    except InputError as exc:
        if exc.field.startswith(prefix):
            raise
        raise InputError(f"{prefix}.{exc.field}", exc.problem, exc.accepted) from None


def plan_entries(experiment, spec: LinalgCommon, entries: list[LinalgEntry] | None = None,
                 extra: dict | None = None):
    """One RunPlan per (entry, seed); one group per entry (one stack, the seeds its members).
    Bad entries (unknown task or encoding, dim <= 0, too long for the model) fail here."""
    from ...models import build_model

    plans = []
    for i, e in enumerate(spec.entries if entries is None else entries):
        values = task_values(e)
        task = make_linalg_task(e.task, values, f"entries[{i}].task")
        model = {**spec.model, **e.model}
        try:
            build_model("lawt", model, task, seed=0)  # validates the model against the task
        except InputError as exc:
            raise InputError(f"entries[{i}].{exc.field}", exc.problem, exc.accepted) from None
        train_cfg = TrainConfig(**{**spec.train.model_dump(), **e.train}).model_dump()
        for seed in spec.seeds:
            cfg = {"task": e.task, "task_params": values, "model": model, "train": train_cfg,
                   "lr": planned_lr(spec.lr, entry_lr=e.lr), "clip_norm": spec.clip_norm, "seed": seed,
                   "test_size": spec.test_size, "test_seed": spec.test_seed,
                   "tolerances": list(spec.tolerances), "beam": spec.beam,
                   "decode_batch": spec.decode_batch, "paper_scale": spec.paper_scale,
                   "decides": e.decides or spec.paper_scale, "valid_size": spec.valid_size,
                   "valid_seed": spec.valid_seed, "patience": e.patience or spec.patience,
                   **(extra or {})}
            plans.append(experiment._plan(cfg, (f"entry{i}", repr(sorted(values.items())),
                                                repr(sorted(model.items())), repr(train_cfg))))
    return plans


def train_group(plans, device, progress=False):
    """Train the plans of one group as one stack: (stack, task, TrainResult). With a validation
    set, every member ends at its best validation checkpoint (``BestCheckpoint``)."""
    c0 = shared_config(plans)
    task = make_linalg_task(c0["task"], c0["task_params"])
    members = [Member(seed=p.config["seed"], lr=p.config["lr"], clip_norm=p.config["clip_norm"])
               for p in plans]
    stack = Stack("lawt", c0["model"], task, members, device=device)
    cfg = TrainConfig(**c0["train"])
    if not c0.get("valid_size"):
        return stack, task, train(stack, cfg, progress=progress)
    best = BestCheckpoint(stack, task, c0)
    if c0.get("patience"):  # a member whose patience is spent is frozen; all spent: stop
        cfg = cfg.model_copy(update={"stop_on_converge": True, "after_convergence": None})
    result = train(stack, cfg, progress=progress, probe=best.probe, check=best.check)
    best.restore()
    result.best = best
    return stack, task, result


class BestCheckpoint:
    """LAWT's model selection (``src/trainer.py``: ``save_best_model``, ``end_epoch``): at every
    evaluation each member is scored on a fixed validation set (greedy decode, accuracy at the
    first tolerance); a better score keeps a copy of its weights and resets its count, a score
    that is not better adds one; past ``patience`` the member is done. ``restore`` puts every
    member's best weights back, so the test set scores the best checkpoint."""

    def __init__(self, stack, task, c0: dict):
        self.stack, self.task, self.c0 = stack, task, c0
        self.valid = task.test_set(c0["valid_seed"], c0["valid_size"])
        M = stack.M
        self.best = torch.full((M,), -1.0)
        self.best_step = torch.zeros(M, dtype=torch.long)
        self.waited = torch.zeros(M, dtype=torch.long)
        self.params = {k: v.clone() for k, v in stack.params.items()}
        self.step = 0

    def probe(self, step: int):
        self.step = step

    def check(self) -> torch.Tensor:
        evs = evaluate_stack(self.stack, self.task, self.valid, self.c0["tolerances"][:1],
                             self.c0["beam"], self.c0["decode_batch"])
        acc = torch.tensor([float(all_rows(ev).correct[0].float().mean()) for ev in evs])
        better = acc > self.best
        keep = better.to(self.stack.device)
        for k, v in self.stack.params.items():
            self.params[k][keep] = v[keep]
        self.best = torch.where(better, acc, self.best)
        self.best_step = torch.where(better, self.step, self.best_step)
        self.waited = torch.where(better, 0, self.waited + 1)
        patience = self.c0.get("patience")
        return self.waited > patience if patience else torch.zeros_like(better)

    def restore(self):
        self.stack.params = {k: v.clone() for k, v in self.params.items()}

    def metrics(self, i: int) -> dict:
        out = {"best_valid_acc": float(self.best[i]), "best_step": int(self.best_step[i])}
        if self.c0.get("patience"):
            out["patience_spent"] = float(self.waited[i] > self.c0["patience"])
        return out


def decode_tokens(stack, x, enc_len: int, dec_len: int, beam: int) -> torch.Tensor:
    xe = x[:, :enc_len]
    if beam == 1:
        return stack_greedy(stack, xe, dec_len)
    return stack_beam(stack, xe, dec_len, beam)


def evaluate_stack(stack, task, test, tolerances, beam: int = 1, decode_batch: int = 500) -> list:
    """Every member on the fixed test set ``test`` (a ``LinalgProblems`` from ``task.test_set``):
    one ``LinalgEvaluation`` per member (``measure/linalg_checks.py``), with the decoded tokens
    attached as ``tokens`` [N, decoder_len] and the parsed predictions as ``pred`` (co-training:
    one per task code, ``score_tokens``)."""
    x, y = test.x.to(stack.device), test.y.to(stack.device)
    enc_len, dec_len, pad = task.encoder_len, task.decoder_len, task.pad_id
    exact, tokens = [], []
    with torch.no_grad():
        for i in range(0, x.shape[0], decode_batch):
            xb, yb = x[i:i + decode_batch], y[i:i + decode_batch]
            tf = stack.forward(xb).argmax(-1)  # [M, b, Ld] teacher-forced argmax
            exact.append(((tf == yb) | (yb == pad)).all(-1))
            tokens.append(decode_tokens(stack, xb, enc_len, dec_len, beam))
    # one host copy after the loop (a .cpu() per batch would sync the device every batch)
    exact_t, tokens_t = torch.cat(exact, 1).cpu(), torch.cat(tokens, 1).cpu()
    return [score_tokens(task, test, tokens_t[m], exact_t[m], tolerances) for m in range(stack.M)]


def score_tokens(task, test, tokens: torch.Tensor, exact: torch.Tensor, tolerances):
    """One member's decoded ``tokens`` [N, decoder_len] scored on ``test``: a LinalgEvaluation
    with ``tokens`` and the parsed predictions ``pred`` attached; for co-training one per task
    code, over that code's rows (``measure.linalg_checks.evaluate``)."""
    ev = evaluate(task, test, tokens, exact, tuple(tolerances))
    if not test.parts:
        ev.tokens, ev.pred = tokens, task.decode_answers(tokens)[0]
        return ev
    for code, (rows, pred, _) in task.decode_answers(tokens, test.codes).items():
        ev[code].tokens, ev[code].pred = tokens[rows], pred
    return ev


def all_rows(ev) -> LinalgEvaluation:
    """A member's evaluation over all its rows (co-training: the codes' rows together)."""
    if not isinstance(ev, dict):
        return ev
    parts = list(ev.values())

    def joined(name: str, dim: int = 0) -> torch.Tensor:
        return torch.cat([getattr(e, name) for e in parts], dim)

    return LinalgEvaluation("cotraining", joined("error"), joined("valid"), joined("exact"),
                            joined("correct", 1), parts[0].tolerances)


def accuracy_metrics(ev, prefix: str = "") -> dict:
    """Rates of one member's evaluation: accuracy at every tolerance (exact OR valid and error
    below tau), the exact-match (teacher-forced) and parse rates, and the malformed rate.
    Co-training: these rates over all rows, and each task code's with the code in front
    ("T.acc_5", "T.exact_rate", ...) and its number of test rows ("T.n_test")."""
    if isinstance(ev, dict):
        out = accuracy_metrics(all_rows(ev), prefix)
        for code, e in ev.items():
            out[f"{prefix}{code}.n_test"] = e.error.numel()
            out.update(accuracy_metrics(e, f"{prefix}{code}."))
        return out
    n = max(ev.error.numel(), 1)
    out = {f"{prefix}exact_rate": float(ev.exact.sum()) / n,
           f"{prefix}valid_rate": float(ev.valid.sum()) / n,
           f"{prefix}malformed_rate": float((~ev.valid & ~ev.exact).sum()) / n}
    for k, tau in enumerate(ev.tolerances):
        out[f"{prefix}acc_{tol_name(tau)}"] = float(ev.correct[k].sum()) / n
    return out


def correct_at(ev, tau: float) -> torch.Tensor:
    return ev.exact | (ev.valid & (ev.error < tau))


def tol_name(tau: float) -> str:
    """0.05 -> '5', 0.005 -> '0.5' (percent)."""
    return f"{tau * 100:g}"


def train_metrics(task, result, plans, i: int) -> dict:
    """Training cost of member i: steps, examples, seconds of its stack and sequence lengths."""
    cfg = plans[i].config["train"]
    examples = result.steps_run * cfg["batch"]
    return {"steps_run": result.steps_run, "train_examples": examples,
            "train_seconds": result.seconds, "stack_members": len(plans),
            "examples_per_s": examples * len(plans) / max(result.seconds, 1e-9),
            "diverged": float(result.diverged[i]), "encoder_len": task.encoder_len,
            "decoder_len": task.decoder_len, "vocab_size": task.vocab_size,
            "final_loss": float(result.final["loss"][i]) if "loss" in result.final else float("nan"),
            **(result.best.metrics(i) if getattr(result, "best", None) else {})}


def test_arrays(test, ev) -> dict:
    """A run's artifacts: its fixed test set and everything predicted on it (co-training: the
    task code of every row, and per code its rows, matrices and predictions, "T_error")."""
    if isinstance(ev, dict):
        out = {"test_x": test.x.cpu().numpy(), "test_y": test.y.cpu().numpy(),
               "test_codes": test.codes.cpu().numpy()}
        for code, e in ev.items():
            part = {"rows": test.parts[code].rows.cpu().numpy(),
                    **test_arrays(test.parts[code], e)}
            out.update({f"{code}_{k}": v for k, v in part.items() if k not in ("test_x", "test_y")})
        return out
    return {"test_x": test.x.cpu().numpy(), "test_y": test.y.cpu().numpy(),
            "test_inputs": test.inputs_rounded.cpu().numpy(),
            "test_answers": test.answers_rounded.cpu().numpy(),
            "exact": ev.exact.numpy(), "tokens": ev.tokens.numpy(), "valid": ev.valid.numpy(),
            "error": ev.error.numpy()}


def measure_group(spec, plans, device, progress=False, tests: dict | None = None):
    """Train one group and evaluate it: (stack, task, result, {name: (test set, [evaluation per
    member])}). ``tests`` maps a test name to extra task fields of that test set (default: one
    test set of the training task itself)."""
    stack, task, result = train_group(plans, device, progress)
    c0 = shared_config(plans)
    out = {}
    for name, extra in (tests or {"": {}}).items():
        t = make_linalg_task(c0["task"], {**c0["task_params"], **extra}) if extra else task
        test = t.test_set(c0["test_seed"], c0["test_size"])
        out[name] = (test, evaluate_stack(stack, t, test, c0["tolerances"], c0["beam"],
                                          c0["decode_batch"]))
    return stack, task, result, out


def accuracy_outcomes(spec, plans, device, progress=False, keep_model: bool = True,
                      extra=None) -> list:
    """Train one group, test it on its fixed test set, and return one RunOutcome per member:
    accuracy rates (per task code for co-training), training cost, the loss curve, the test set
    with every prediction, and (``keep_model``) the member's weights. ``extra(test, ev)`` ->
    (metrics, arrays): an experiment's own analysis of each member's evaluation, stored beside."""
    stack, task, result, tests = measure_group(spec, plans, device, progress)
    test, evs = tests[""]
    added = [extra(test, ev) if extra else ({}, {}) for ev in evs]
    return member_outcomes(
        plans, lambda i: {**accuracy_metrics(evs[i]), **train_metrics(task, result, plans, i),
                          **added[i][0]},
        result.seconds, result=result, series=("train_loss",),
        tensors=(lambda i: {"model": stack.member_state(i)}) if keep_model else None,
        arrays=lambda i: {**test_arrays(test, evs[i]), **added[i][1]})
