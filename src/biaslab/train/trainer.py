"""The one trainer: trains a Stack of M >= 1 members at once.

The step is a function of (params, optimizer state, step number): each member samples its own
batch on the device from a counter-based RNG keyed by (member seed, step), computes its loss,
and takes an AdamW step with its own hyperparameters (pure on an accelerator or compiled; on an
eager CPU in place, by torch's fused AdamW kernel: cpu_step.py). Metrics stay on the device and
are read once per evaluation boundary, where convergence and divergence flags are updated."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Literal, Optional

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.func import vmap

from .. import rng
from .allocator import tune_malloc
from .cpu_step import make_cpu_step
from .losses import get_loss
from .members import AUTO, map_members, peak_buffer_bytes, resolve_chunk
from .optim import AdamWState, adamw_init, adamw_step, flat_norm, flatten
from .stack import Stack

EVAL_STREAM = 0x5EED


class TrainConfig(BaseModel):
    """How a stack is trained. Every field is one knob; defaults follow Hahn & Rofin."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=10_000, gt=0, description="maximum optimizer steps")
    batch: int = Field(default=1024, gt=0, description="examples per member per step")
    loss: Literal["mse", "mse_pm1", "bce", "ce", "ce_seq", "sensreg",
                  "sensreg_detached"] = Field(default="mse", description="training loss")
    eval_every: int = Field(default=100, gt=0, description="steps between evaluations")
    eval_batch: int = Field(default=1024, gt=0, description="examples of the fixed eval batch")
    eval_split: Literal["train", "test"] = Field(
        default="train", description="split the convergence check reads")
    converge: Literal["mse", "acc", "none"] = Field(
        default="acc", description="convergence criterion: eval MSE below converge_mse, "
        "or eval accuracy >= converge_acc")
    converge_mse: float = Field(default=1e-3, gt=0, description="converge=mse: converged below this eval MSE")
    converge_acc: float = Field(default=0.99, gt=0, le=1, description="converge=acc: converged at this eval accuracy")
    stop_on_converge: bool = Field(
        default=True, description="freeze a member once converged; stop when all are done "
        "(false = every member trains its full step budget, as Hahn & Rofin's reference does)")
    after_convergence: Optional[int] = Field(
        default=None, ge=0, description="with stop_on_converge: steps a member keeps training "
        "after its convergence step before it is frozen (unset = frozen at convergence); lets "
        "a measure see the minimum some thousand steps on, without the full budget")
    schedule: Literal["constant", "warmup_cosine"] = Field(
        default="constant", description="lr schedule: constant, or linear warmup then cosine decay")
    warmup_steps: int = Field(default=0, ge=0, description="warmup_cosine: steps of linear warmup")
    min_lr_ratio: float = Field(default=0.0, ge=0, le=1, description="cosine floor / peak lr")
    warmup_start_ratio: float = Field(
        default=0.0, ge=0, le=1, description="warmup_cosine: the linear warmup starts at this "
        "share of the peak lr (0 = from zero, as before; Zhang et al.'s warmup_scheduler: 1/25)")
    beta1: float = Field(default=0.9, ge=0, lt=1, description="AdamW decay of the first moment")
    beta2: float = Field(default=0.999, ge=0, lt=1, description="AdamW decay of the second moment")
    eps: float = Field(default=1e-8, gt=0, description="AdamW denominator epsilon")
    compile: bool = Field(default=False, description="torch.compile the step (once per stack shape)")
    cuda_graphs: bool = Field(
        default=False, description="with compile on CUDA: mode='reduce-overhead' (CUDA graphs)")
    precision: Literal["fp32", "tf32", "bf16"] = Field(
        default="fp32", description="bf16 = autocast with fp32 master weights")
    member_chunk: Optional[int] = Field(
        default=None, ge=1, description="members per vmapped chunk; unset = automatic (the whole "
        "stack on a GPU, cache-sized chunks on a CPU, 1 = a plain loop)")


#: Fields that change how fast a run trains, not what it computes: left out of run ids, so a
#: store made with one setting resumes under another.
EXECUTION_FIELDS = ("compile", "cuda_graphs", "member_chunk")

#: Fields added after stores existed, with the default that reproduces the old behaviour: left
#: out of run ids while at that default, so runs stored before the field existed keep their ids.
LATER_FIELD_DEFAULTS = {"after_convergence": None, "warmup_start_ratio": 0.0}


@dataclass
class TrainResult:
    steps_run: int
    converged: torch.Tensor  # [M] bool
    diverged: torch.Tensor  # [M] bool
    converge_step: torch.Tensor  # [M] long, -1 if never
    history: list[dict] = field(default_factory=list)  # {"step": s, name: [M] list}
    final: dict = field(default_factory=dict)  # name -> [M] tensor (last evaluation)
    seconds: float = 0.0


def lr_multiplier(cfg: TrainConfig, step: torch.Tensor,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Schedule multiplier as a tensor function of the step (no recompiles across steps), in
    ``dtype`` (float64 for a float64 stack)."""
    if cfg.schedule == "constant":
        return torch.ones((), device=step.device, dtype=dtype)
    s = step.to(dtype)
    w = float(max(cfg.warmup_steps, 1))
    warm = cfg.warmup_start_ratio + (1 - cfg.warmup_start_ratio) * (s + 1) / w
    progress = ((s - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)).clamp(0, 1)
    cos = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + torch.cos(math.pi * progress))
    return torch.where(s < cfg.warmup_steps, warm, cos)


def _autocast(cfg: TrainConfig, device: torch.device):
    if cfg.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def _upcast(out: torch.Tensor) -> torch.Tensor:
    """Losses in at least fp32: bf16 outputs are upcast, fp64 ones kept (exactness tests)."""
    return out.float() if out.dtype in (torch.bfloat16, torch.float16) else out


def eval_batch(stack: Stack, cfg: TrainConfig, split: str | None = None):
    """The fixed evaluation batch of every member: [M, B, L] inputs and [M, B] targets, as the
    task defines it (``Task.evaluation_batch``: e.g. a fixed training subset is evaluated whole).
    """
    split = split or cfg.eval_split
    task = stack.task
    keys = rng.derive(stack.seed_keys, EVAL_STREAM)
    return vmap(lambda s, k: task.evaluation_batch(s, k, cfg.eval_batch, split))(
        stack.task_states, keys)


def evaluate(stack: Stack, cfg: TrainConfig, params=None, split: str | None = None) -> dict:
    """Loss and accuracy of every member on its eval batch: name -> [M] tensor (on device)."""
    loss = get_loss(cfg.loss)
    x, y = eval_batch(stack, cfg, split)
    p = stack.params if params is None else params
    chunk = member_chunk(stack, cfg, x.shape[1], x.shape[0])
    with torch.no_grad(), _autocast(cfg, stack.device):
        out = _upcast(stack.map(stack.apply, p, stack.buffers, x, chunk=chunk))
    losses = vmap(loss.fn)(out, y)
    pred = loss.predict(out)
    acc = stack.task.correct(pred, y).float().mean(-1)
    # classes and token sequences (logits [.., V] against ids) have no MSE: report the loss there
    per_position = stack.task.target_kind != "classes" and pred.shape == y.shape
    mse = (pred - y.float()).pow(2).flatten(1).mean(-1) if per_position else losses
    return {"loss": losses, "acc": acc, "mse": mse}


_STEP_CACHE: dict = {}
_PEAK_PER_EXAMPLE: dict = {}  # step key -> bytes of one member's largest buffer per example


def member_chunk(stack: Stack, cfg: TrainConfig, batch: int, n_members: int) -> int | None:
    """Members mapped at once for ``batch`` examples each: ``resolve_chunk`` (the one rule) on
    the training step's largest buffer, probed once per step key and scaled to ``batch``."""
    def peak() -> int:
        key = _step_key(stack, cfg)
        if key not in _PEAK_PER_EXAMPLE:
            _PEAK_PER_EXAMPLE[key] = _probe_peak(stack, cfg) / cfg.batch
        return int(_PEAK_PER_EXAMPLE[key] * batch)
    return resolve_chunk(stack.device, n_members, cfg.member_chunk or AUTO, peak)


def _member_loss_fn(stack: Stack, cfg: TrainConfig):
    loss = get_loss(cfg.loss)
    task, apply, device = stack.task, stack.apply, stack.device

    def member_loss(params, buffers, state, key):
        x, y = task.sample(state, key, cfg.batch, "train")
        with _autocast(cfg, device):
            out = apply(params, buffers, x)
        return loss.fn(_upcast(out), y)
    return member_loss


def _probe_peak(stack: Stack, cfg: TrainConfig) -> int:
    """Largest buffer of member 0's training step, measured once per step key."""
    first = lambda tree: {k: v[0] for k, v in tree.items()}  # noqa: E731
    key = rng.derive(stack.seed_keys[:1], 0)[0]
    return peak_buffer_bytes(_member_loss_fn(stack, cfg),
                             (first(stack.params), first(stack.buffers), first(stack.task_states), key))


def _step_key(stack: Stack, cfg: TrainConfig) -> tuple:
    """Everything that changes the step's graph; seeds and hyperparameters are tensors, not here."""
    graph_fields = ("batch", "loss", "schedule", "warmup_steps", "warmup_start_ratio", "steps",
                    "min_lr_ratio", "beta1", "beta2", "eps", "precision", "compile", "cuda_graphs",
                    "member_chunk")
    return (stack.model_name, repr(sorted(stack.model_values.items())), stack.task.shape_key(),
            repr(stack.task.params), str(stack.device),
            tuple(getattr(cfg, f) for f in graph_fields), _clips(stack))


def _clips(stack: Stack) -> bool:
    """Whether any member clips its gradient norm (known on the host from the members' settings;
    a stack that never clips skips the update's scaling pass)."""
    return any(m.clip_norm is not None and math.isfinite(m.clip_norm) for m in stack.members)


def _allow_recompiles(limit: int = 1024) -> None:
    """Dynamo counts compilations per code object, and every stack shape of a sweep compiles
    the same step function anew: past the default limit of 8 shapes it would silently run the
    rest of the sweep eagerly."""
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, limit)
    dynamo_config.accumulated_recompile_limit = max(dynamo_config.accumulated_recompile_limit, limit)


def make_step(stack: Stack, cfg: TrainConfig):
    """The training step of a stack shape: ``step(params, opt, step_t, lr, wd, clip, active,
    buffers, task_states, seed_keys)`` -> ``(params, opt, losses [M], bad [M])``. Everything that
    differs between stacks of one shape (seeds, task states, hyperparameters) is an argument, so
    one compiled step serves every stack of that shape: a sweep compiles once per architecture."""
    key = _step_key(stack, cfg)
    if key in _STEP_CACHE:
        return _STEP_CACHE[key]
    member_loss = _member_loss_fn(stack, cfg)
    device = stack.device
    clips = _clips(stack)

    def update(params, grads, losses, opt_state: AdamWState, step_t, lr, wd, clip, active):
        # A member's gradient norm is finite iff all its gradients are: no extra pass needed.
        flat_grads = flatten(grads)
        gnorm = flat_norm(flat_grads)
        ok = torch.isfinite(losses) & torch.isfinite(gnorm)
        params, opt_state, _ = adamw_step(
            params, flat_grads, opt_state, lr=lr * lr_multiplier(cfg, step_t, lr.dtype), weight_decay=wd,
            clip_norm=clip, active=active & ok, beta1=cfg.beta1, beta2=cfg.beta2, eps=cfg.eps,
            grad_norm=gnorm, clips=clips)
        return params, opt_state, losses, ~ok

    def compiled(fn):
        _allow_recompiles()
        mode = "reduce-overhead" if cfg.cuda_graphs and device.type == "cuda" else None
        return torch.compile(fn, dynamic=False, mode=mode)

    def build(chunk):
        if device.type == "cpu" and not cfg.compile:  # in place, torch's fused AdamW (cpu_step.py)
            return make_cpu_step(member_loss, chunk, clips=clips, beta1=cfg.beta1, beta2=cfg.beta2,
                                 eps=cfg.eps, lr_multiplier=lambda s: lr_multiplier(cfg, s, torch.float64))
        # One vmap over the stack: the whole step is one (compiled) graph. Chunked: a Python loop
        # over chunks of one shape, each a call of one compiled graph, then a compiled update.
        per_chunk = cfg.compile and chunk is not None
        grad_fn = map_members(member_loss, chunk, grad=True, wrap=compiled if per_chunk else None)
        upd = compiled(update) if per_chunk else update

        def one_step(params, opt_state, step_t, lr, wd, clip, active, buffers, task_states,
                     seed_keys):
            grads, losses = grad_fn(params, buffers, task_states, rng.derive(seed_keys, step_t))
            return upd(params, grads, losses, opt_state, step_t, lr, wd, clip, active)
        return compiled(one_step) if cfg.compile and chunk is None else one_step

    by_members: dict = {}  # M -> step; compaction changes M, and with it maybe the chunk
    by_chunk: dict = {}

    def step(params, opt_state, step_t, lr, wd, clip, active, buffers, task_states, seed_keys):
        m = seed_keys.shape[0]
        if m not in by_members:
            chunk = member_chunk(stack, cfg, cfg.batch, m)
            if chunk not in by_chunk:
                by_chunk[chunk] = build(chunk)
            by_members[m] = by_chunk[chunk]
        return by_members[m](params, opt_state, step_t, lr, wd, clip, active, buffers,
                             task_states, seed_keys)

    if len(_STEP_CACHE) > 64:  # a long-lived process sweeping many shapes: keep memory bounded
        _STEP_CACHE.clear()
    _STEP_CACHE[key] = step
    return step


def train(stack: Stack, cfg: TrainConfig, progress: bool | Callable = False,
          on_eval: Optional[Callable[[int, dict], None]] = None,
          compact_below: float = 0.5,
          probe: Optional[Callable[[int], None]] = None,
          check: Optional[Callable[[], torch.Tensor]] = None) -> TrainResult:
    """Train ``stack`` in place; returns flags, convergence steps and the evaluation history.

    Members that converge (with ``stop_on_converge``) or diverge stop updating at once; when the
    live members fall below ``compact_below`` of the current stack, the stack is compacted to
    them, so finished members stop costing compute. Results are always reported for all M.

    At every evaluation boundary ``on_eval(step, record)`` sees the record; ``probe(step)`` and
    ``check()`` see the parameters: ``stack.params`` then holds every member's current values.
    ``check()`` returns an [M] bool that replaces ``cfg.converge`` as the convergence test
    (e.g. greedy decoding accuracy on a fixed batch).
    """
    t0 = time.perf_counter()
    if stack.device.type == "cpu":  # as the CLI and workers do, for library callers too
        tune_malloc()  # keep freed step buffers for the next step (allocator.py)
    if cfg.precision == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True
    dev, M = stack.device, stack.M
    full_params = {k: v.clone() for k, v in stack.params.items()}
    live = stack  # the members still training (a compacted copy of ``stack`` after compaction)
    live_idx = torch.arange(M, device=dev)
    step_fn = make_step(stack, cfg)
    opt = adamw_init(stack.params)
    lr, wd = stack.hyper("lr"), stack.hyper("weight_decay")
    clip = stack.hyper("clip_norm", default=float("inf"))
    active = torch.ones(M, dtype=torch.bool, device=dev)  # over live members
    converged = torch.zeros(M, dtype=torch.bool, device=dev)  # over all members
    diverged = torch.zeros(M, dtype=torch.bool, device=dev)
    converge_step = torch.full((M,), -1, dtype=torch.long, device=dev)
    # Hyperparameters, optimizer arithmetic and recorded losses in the stack's precision (at
    # least fp32): a float64 stack stays float64 end to end.
    train_loss = torch.zeros(M, device=dev, dtype=stack.metric_dtype)
    last_eval: dict[str, torch.Tensor] = {}
    n_acc = 0
    history: list[dict] = []
    bar = _progress_bar(progress, cfg.steps, M)
    params = stack.params

    def write_back():  # the live members' current parameters into the full stack's
        for k in full_params:
            full_params[k][live_idx] = params[k]
    step = 0
    for step in range(cfg.steps):
        step_t = torch.tensor(step, device=dev)
        params, opt, losses, bad = step_fn(params, opt, step_t, lr, wd, clip, active, live.buffers,
                                           live.task_states, live.seed_keys)
        diverged[live_idx] |= bad & active
        active = active & ~bad
        train_loss[live_idx] += torch.nan_to_num(losses.detach(), nan=0.0, posinf=0.0)
        n_acc += 1
        last = step == cfg.steps - 1
        if (step + 1) % cfg.eval_every and not last:
            continue
        # -- evaluation boundary: the only place the host reads device values ---------------
        ev = evaluate(live, cfg, params)
        checked = None
        if probe is not None or check is not None:
            write_back()
            stack.params = full_params
            with torch.no_grad():
                if probe is not None:
                    probe(step + 1)
                if check is not None:
                    checked = check().to(dev)
        if checked is not None:
            hit = checked[live_idx]
        elif cfg.converge == "mse":
            hit = ev["mse"] < cfg.converge_mse
        elif cfg.converge == "acc":
            hit = ev["acc"] >= cfg.converge_acc
        else:
            hit = torch.zeros_like(active)
        hit = hit & ~diverged[live_idx]
        newly = hit & ~converged[live_idx]
        converge_step[live_idx] = torch.where(newly, step + 1, converge_step[live_idx])
        if cfg.stop_on_converge:
            converged[live_idx] |= hit
            done = converged[live_idx]
            if cfg.after_convergence:  # keep training a fixed number of steps past convergence
                done = done & (step + 1 >= converge_step[live_idx] + cfg.after_convergence)
            active = active & ~done
        else:
            converged[live_idx] = hit
        for k, v in ev.items():
            last_eval.setdefault(k, torch.full((M,), float("nan"), device=dev,
                                               dtype=stack.metric_dtype))[live_idx] = v.to(stack.metric_dtype)
        record = {"step": step + 1, "train_loss": (train_loss / n_acc).cpu().tolist()}
        record.update({k: v.detach().cpu().tolist() for k, v in last_eval.items()})
        history.append(record)
        train_loss.zero_()
        n_acc = 0
        n_active = int(active.sum())
        if on_eval is not None:
            on_eval(step + 1, record)
        if bar is not None:
            bar.update(step + 1 - bar.n)
            bar.set_postfix(loss=f"{sum(record['loss']) / M:.3g}", conv=f"{int(converged.sum())}/{M}",
                            div=int(diverged.sum()), live=n_active)
        if n_active == 0:
            break
        if n_active < compact_below * active.numel():
            # Write finished members back, then keep training only the live ones.
            write_back()
            keep = active.nonzero().squeeze(1)
            live = live.select(keep.tolist())
            live_idx = live_idx[keep]
            params = {k: v[keep] for k, v in params.items()}
            opt = opt.select(keep)
            lr, wd, clip, active = lr[keep], wd[keep], clip[keep], active[keep]
    if bar is not None:
        bar.close()
    write_back()
    stack.params = full_params
    return TrainResult(step + 1, converged.cpu(), diverged.cpu(), converge_step.cpu(), history,
                       {k: v.detach().cpu() for k, v in last_eval.items()}, time.perf_counter() - t0)


def _progress_bar(progress, total: int, M: int):
    if not progress:
        return None
    from tqdm.auto import tqdm

    desc = progress if isinstance(progress, str) else f"stack of {M}"
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
