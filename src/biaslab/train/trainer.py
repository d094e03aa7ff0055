"""The one trainer: trains a Stack of M >= 1 members at once.

The step is a pure function of (params, optimizer state, step number): each member samples its
own batch on the device from a counter-based RNG keyed by (member seed, step), computes its
loss, and takes an AdamW step with its own hyperparameters. Metrics stay on the device and are
read once per evaluation boundary, where convergence and divergence flags are updated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Literal, Optional

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.func import grad_and_value, vmap

from .. import rng
from .losses import get_loss
from .optim import AdamWState, adamw_init, adamw_step
from .stack import Stack

EVAL_STREAM = 0x5EED


class TrainConfig(BaseModel):
    """How a stack is trained. Every field is one knob; defaults follow Hahn & Rofin."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=10_000, gt=0, description="maximum optimizer steps")
    batch: int = Field(default=1024, gt=0, description="examples per member per step")
    loss: Literal["mse", "mse_pm1", "bce", "ce"] = Field(default="mse", description="training loss")
    eval_every: int = Field(default=100, gt=0, description="steps between evaluations")
    eval_batch: int = Field(default=1024, gt=0, description="examples of the fixed eval batch")
    eval_split: Literal["train", "test"] = Field(
        default="train", description="split the convergence check reads")
    converge: Literal["mse", "acc", "none"] = Field(
        default="acc", description="convergence criterion: eval MSE below converge_mse, "
        "or eval accuracy >= converge_acc")
    converge_mse: float = Field(default=1e-3, gt=0)
    converge_acc: float = Field(default=0.99, gt=0, le=1)
    stop_on_converge: bool = Field(
        default=True, description="freeze a member once converged; stop when all are done")
    schedule: Literal["constant", "warmup_cosine"] = Field(default="constant")
    warmup_steps: int = Field(default=0, ge=0)
    min_lr_ratio: float = Field(default=0.0, ge=0, le=1, description="cosine floor / peak lr")
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.999, ge=0, lt=1)
    eps: float = Field(default=1e-8, gt=0)
    compile: bool = Field(default=False, description="torch.compile the step")
    precision: Literal["fp32", "tf32", "bf16"] = Field(
        default="fp32", description="bf16 = autocast with fp32 master weights")


@dataclass
class TrainResult:
    steps_run: int
    converged: torch.Tensor  # [M] bool
    diverged: torch.Tensor  # [M] bool
    converge_step: torch.Tensor  # [M] long, -1 if never
    history: list[dict] = field(default_factory=list)  # {"step": s, name: [M] list}
    final: dict = field(default_factory=dict)  # name -> [M] tensor (last evaluation)
    seconds: float = 0.0


def lr_multiplier(cfg: TrainConfig, step: torch.Tensor) -> torch.Tensor:
    """Schedule multiplier as a tensor function of the step (no recompiles across steps)."""
    if cfg.schedule == "constant":
        return torch.ones((), device=step.device)
    s = step.float()
    w = float(max(cfg.warmup_steps, 1))
    warm = (s + 1) / w
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
    """The fixed evaluation batch of every member: [M, B, L] inputs and [M, B] targets.

    A task with a fixed training subset is evaluated on the whole subset (train split), so
    "fits its training set" means every training input, not a sample of them.
    """
    split = split or cfg.eval_split
    task = stack.task
    if split == "train" and "subset" in stack.task_states:
        x = stack.task_states["subset"]
        y = vmap(task.target)(stack.task_states, x)
        return x, y
    keys = rng.derive(stack.seed_keys, EVAL_STREAM)
    return vmap(lambda s, k: task.sample(s, k, cfg.eval_batch, split))(stack.task_states, keys)


def evaluate(stack: Stack, cfg: TrainConfig, params=None, split: str | None = None) -> dict:
    """Loss and accuracy of every member on its eval batch: name -> [M] tensor (on device)."""
    loss = get_loss(cfg.loss)
    x, y = eval_batch(stack, cfg, split)
    p = stack.params if params is None else params
    with torch.no_grad(), _autocast(cfg, stack.device):
        out = _upcast(vmap(stack.apply)(p, stack.buffers, x))
    losses = vmap(loss.fn)(out, y)
    pred = loss.predict(out)
    acc = stack.task.correct(pred, y).float().mean(-1)
    mse = (pred - y.float()).pow(2).mean(-1) if stack.task.target_kind != "classes" else losses
    return {"loss": losses, "acc": acc, "mse": mse}


def make_step(stack: Stack, cfg: TrainConfig):
    """The pure training step: (params, opt_state, step, hyper) -> (params, opt_state, loss, gnorm)."""
    loss = get_loss(cfg.loss)
    task = stack.task

    def member_loss(params, buffers, state, key):
        x, y = task.sample(state, key, cfg.batch, "train")
        with _autocast(cfg, stack.device):
            out = stack.apply(params, buffers, x)
        return loss.fn(_upcast(out), y)

    grad_fn = vmap(grad_and_value(member_loss))

    def step(params, opt_state: AdamWState, step_t, lr, wd, clip, active):
        keys = rng.derive(stack.seed_keys, step_t)
        grads, losses = grad_fn(params, stack.buffers, stack.task_states, keys)
        ok = torch.isfinite(losses)
        for g in grads.values():
            ok = ok & torch.isfinite(g.flatten(1)).all(1)
        act = active & ok
        params, opt_state, gnorm = adamw_step(
            params, grads, opt_state, lr=lr * lr_multiplier(cfg, step_t), weight_decay=wd,
            clip_norm=clip, active=act, beta1=cfg.beta1, beta2=cfg.beta2, eps=cfg.eps)
        return params, opt_state, losses, ~ok

    return step


def train(stack: Stack, cfg: TrainConfig, progress: bool | Callable = False,
          on_eval: Optional[Callable[[int, dict], None]] = None) -> TrainResult:
    """Train ``stack`` in place; returns flags, convergence steps and the evaluation history."""
    import time

    t0 = time.perf_counter()
    if cfg.precision == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True
    step_fn = make_step(stack, cfg)
    if cfg.compile:
        step_fn = torch.compile(step_fn, dynamic=False)
    dev = stack.device
    M = stack.M
    opt = adamw_init(stack.params)
    lr, wd = stack.hyper("lr"), stack.hyper("weight_decay")
    clip = stack.hyper("clip_norm", default=float("inf"))
    active = torch.ones(M, dtype=torch.bool, device=dev)
    converged = torch.zeros(M, dtype=torch.bool, device=dev)
    diverged = torch.zeros(M, dtype=torch.bool, device=dev)
    converge_step = torch.full((M,), -1, dtype=torch.long, device=dev)
    train_loss = torch.zeros(M, device=dev)
    n_acc = 0
    history: list[dict] = []
    bar = _progress_bar(progress, cfg.steps, M)
    params = stack.params
    final: dict = {}
    step = 0
    for step in range(cfg.steps):
        step_t = torch.tensor(step, device=dev)
        params, opt, losses, bad = step_fn(params, opt, step_t, lr, wd, clip, active)
        diverged = diverged | (bad & active)
        active = active & ~bad
        train_loss = train_loss + torch.nan_to_num(losses.detach(), nan=0.0, posinf=0.0)
        n_acc += 1
        last = step == cfg.steps - 1
        if (step + 1) % cfg.eval_every and not last:
            continue
        # -- evaluation boundary: the only place the host reads device values ---------------
        ev = evaluate(stack, cfg, params)
        if cfg.converge == "mse":
            hit = ev["mse"] < cfg.converge_mse
        elif cfg.converge == "acc":
            hit = ev["acc"] >= cfg.converge_acc
        else:
            hit = torch.zeros_like(converged)
        hit = hit & ~diverged
        newly = hit & ~converged
        converge_step = torch.where(newly, torch.full_like(converge_step, step + 1), converge_step)
        converged = converged | hit if cfg.stop_on_converge else hit
        if cfg.stop_on_converge:
            active = active & ~converged
        record = {"step": step + 1, "train_loss": (train_loss / n_acc).cpu().tolist()}
        record.update({k: v.detach().float().cpu().tolist() for k, v in ev.items()})
        history.append(record)
        final = ev
        train_loss.zero_()
        n_acc = 0
        n_conv, n_div = int(converged.sum()), int(diverged.sum())
        if on_eval is not None:
            on_eval(step + 1, record)
        if bar is not None:
            bar.update(step + 1 - bar.n)
            bar.set_postfix(loss=f"{sum(record['loss']) / M:.3g}", conv=f"{n_conv}/{M}", div=n_div)
        if cfg.stop_on_converge and not bool(active.any()):
            break
    if bar is not None:
        bar.close()
    stack.params = params
    return TrainResult(step + 1, converged.cpu(), diverged.cpu(), converge_step.cpu(), history,
                       {k: v.detach().cpu() for k, v in final.items()}, time.perf_counter() - t0)


def _progress_bar(progress, total: int, M: int):
    if not progress:
        return None
    from tqdm.auto import tqdm

    desc = progress if isinstance(progress, str) else f"stack of {M}"
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
