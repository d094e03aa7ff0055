"""A functional AdamW over stacked parameters, with per-member hyperparameters.

Every hyperparameter is an [M] tensor, so members of one stack may differ in learning rate,
weight decay and clip norm, and changing them never triggers a recompile. Gradients are clipped
per member: a global norm over the whole stack would couple members that must stay independent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AdamWState:
    exp_avg: dict[str, torch.Tensor]
    exp_avg_sq: dict[str, torch.Tensor]
    t: torch.Tensor  # [M] number of updates applied to each member


def adamw_init(params: dict[str, torch.Tensor]) -> AdamWState:
    M = next(iter(params.values())).shape[0]
    device = next(iter(params.values())).device
    return AdamWState(
        {k: torch.zeros_like(v) for k, v in params.items()},
        {k: torch.zeros_like(v) for k, v in params.items()},
        torch.zeros(M, device=device),
    )


def _per_member(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast an [M] tensor against a stacked tensor [M, ...]."""
    x = x.view(-1, *([1] * (like.dim() - 1)))
    return x.to(like.dtype) if x.is_floating_point() else x


def member_grad_norm(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    """L2 norm of each member's full gradient, [M]."""
    sq = sum(g.float().pow(2).flatten(1).sum(1) for g in grads.values())
    return sq.sqrt()


def adamw_step(
    params: dict[str, torch.Tensor],
    grads: dict[str, torch.Tensor],
    state: AdamWState,
    *,
    lr: torch.Tensor,
    weight_decay: torch.Tensor,
    clip_norm: torch.Tensor,
    active: torch.Tensor,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
):
    """One AdamW update of every active member; returns (params, state, grad_norm [M]).

    ``clip_norm`` is +inf where a member does not clip. Inactive members (converged, diverged)
    keep their parameters and moments unchanged: their moment weights and step size are zero,
    which costs no extra pass over the parameters (a ``where`` per tensor would).
    """
    gnorm = member_grad_norm(grads)
    scale = torch.clamp(clip_norm / (gnorm + 1e-6), max=1.0)
    act = active.to(lr.dtype)
    t = state.t + act
    bc1 = 1 - beta1 ** t.clamp(min=1)
    bc2 = 1 - beta2 ** t.clamp(min=1)
    # Per-member coefficients, folded so each tensor sees few elementwise kernels.
    w1 = act * (1 - beta1)  # lerp weight of the first moment (0: frozen)
    w2 = act * (1 - beta2)
    step_size = act * lr / bc1
    decay = 1 - act * lr * weight_decay
    new_p, new_m, new_v = {}, {}, {}
    for k, p in params.items():
        # Zero the gradient of inactive members: a diverged member's NaNs must not leak into its
        # (frozen) moments through 0 * NaN.
        g = torch.where(_per_member(active, p), grads[k] * _per_member(scale, p).to(grads[k].dtype), 0)
        m = torch.lerp(state.exp_avg[k], g, _per_member(w1, p))
        v = torch.lerp(state.exp_avg_sq[k], g * g, _per_member(w2, p))
        denom = (v / _per_member(bc2, p)).sqrt_().add_(eps)
        new_p[k] = p * _per_member(decay, p) - _per_member(step_size, p) * m / denom
        new_m[k], new_v[k] = m, v
    return new_p, AdamWState(new_m, new_v, t), gnorm
