"""Norm measures: LayerNorm blow-up, parameter norm, stable rank.

Hahn & Rofin's Corollary 5: a transformer can only represent a sensitive function with a large
parameter norm or a large LayerNorm blow-up (inverse std of the LayerNorm inputs). Both are
computed as in the reference code, from activations the model returns explicitly (never hooks:
PyTorch's fused encoder path can skip LayerNorms, and hooks do not vmap).

Each measure is written once, for one model, and takes a ``Stack`` in its place (``measure/lift.py``):
then it returns one value per member ([M] tensors).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from ..models.roles import parameter_roles, position_keys
from ..train.members import AUTO
from .lift import is_stack, over_stack, per_member

LN_INPUTS = ("ln1_in", "ln2_in")


# -- LayerNorm blow-up --------------------------------------------------------------------------
def _std_last(x: torch.Tensor) -> torch.Tensor:
    """Unbiased std over the last dim, two-pass. ``Tensor.std`` over a short last dim is 9x
    slower on this CPU (1.1 ms vs 0.12 ms for [256, 10, 32]), a sixth of a measurement."""
    centred = x - x.mean(-1, keepdim=True)
    return (centred.square().sum(-1) / (x.shape[-1] - 1)).sqrt()


def blowup_from_acts(acts: dict, reduce: Literal["max", "mean"] = "max") -> dict:
    """The blow-up of one model from its activations (each [B, L, d]); see ``layernorm_blowup``."""
    names = [n for n in acts if n.rsplit(".", 1)[-1] in LN_INPUTS]
    if not names:
        raise ValueError("the model returned no LayerNorm inputs (*.ln1_in / *.ln2_in); "
                         "a model without LayerNorm has no blow-up")
    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
    # The last layer is the one whose LayerNorm comes last in the forward (dict order).
    last = names[-1].rsplit(".", 1)[0]
    per_ln, product = {}, None
    for n in names:
        # Unbiased std over the hidden units, no epsilon: the reference code's definition.
        inv = 1.0 / _std_last(acts[n])  # [B, L]
        if n.rsplit(".", 1)[0] == last:
            inv = inv[:, -1:]  # only the read-out position feeds the output in the last layer
        r = inv.amax(-1) if reduce == "max" else inv.mean(-1)  # [B]
        per_ln[n] = r.mean()
        product = r if product is None else product * r
    return {"blowup": product.mean(), "per_ln": per_ln}


def layernorm_blowup(model, x: torch.Tensor, reduce: Literal["max", "mean"] = "max",
                     shared: bool | None = None, member_chunk=None) -> dict:
    """LayerNorm blow-up of Hahn & Rofin on inputs x [B, L].

    For the input of every LayerNorm (``*.ln1_in``, ``*.ln2_in``): per token 1/std over the
    hidden dim; in the last layer only the final (read-out) position; per example the max (or
    mean) over positions; the product over all LayerNorms; the mean over the batch.
    Returns {"blowup": scalar, "per_ln": {name: batch mean of that LayerNorm's factor}}.

    ``model`` a Stack: every member, x [B, L] shared or [M, B, L] per member (``shared``
    None: inferred from x's dims) -> [M] tensors; ``member_chunk`` is ``Stack.map``'s chunk
    (None: the automatic rule).
    The reduction runs inside the map, so only scalars (not every activation) leave it.
    """
    with torch.no_grad():
        if not is_stack(model):
            return blowup_from_acts(model(x, acts=True)[1], reduce)
        per_member = x.dim() == 3 if shared is None else not shared
        shape = tuple(x.shape[1:] if per_member else x.shape)
        return over_stack(layernorm_blowup, model, x, reduce, in_dims=(0 if per_member else None,
                          None), chunk=AUTO if member_chunk is None else member_chunk,
                          peak_bytes=lambda: model.forward_peak(shape, x.dtype))


# -- parameter norm -----------------------------------------------------------------------------
def _params_of(model_or_params) -> dict:
    if isinstance(model_or_params, nn.Module):
        return {n: p.detach() for n, p in model_or_params.named_parameters()}
    return dict(getattr(model_or_params, "params", model_or_params))  # a stack member: its params


def _positions(owner, names) -> tuple:
    """The positional-embedding keys: by role for a module or a Stack, by the models' naming
    convention for a bare name -> tensor dict."""
    if isinstance(owner, nn.Module):
        return parameter_roles(owner).position_embeddings
    roles = getattr(owner, "roles", None)
    return roles.position_embeddings if roles is not None else tuple(position_keys(names))


@per_member
def parameter_norm(model_or_params, exclude: Sequence[str] | None = None) -> torch.Tensor:
    """L2 norm over all parameters except names starting with a prefix in ``exclude``
    (the positional embeddings by default, as in the paper). A module or a name->tensor dict;
    a Stack gives [M] (``over_stack(parameter_norm, stacked_params)`` for a dict of [M, ...])."""
    p = _params_of(model_or_params)
    skip = tuple(exclude) if exclude is not None else _positions(model_or_params, p)
    return torch.sqrt(sum(t.pow(2).sum() for n, t in p.items() if not n.startswith(skip)))


# -- stable rank --------------------------------------------------------------------------------
def stable_rank(weight: torch.Tensor) -> torch.Tensor:
    """||W||_F^2 / sigma_max(W)^2 of the matrices in the last two dims (batched over the rest).

    Between 1 (rank one) and rank(W) (all singular values equal); unlike the rank it is
    insensitive to tiny singular values.
    """
    fro2 = weight.pow(2).sum((-2, -1))
    return fro2 / torch.linalg.matrix_norm(weight, ord=2).pow(2)


def stable_ranks(model_or_params, exclude: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """Stable rank of every 2-D parameter (Linear weights, embedding tables): name -> scalar.
    A Stack: name -> [M], ``stable_rank`` batched over the members' [M, ...] weights (one
    batched SVD: a per-member map would round differently)."""
    lead = 1 if is_stack(model_or_params) else 0
    p = _params_of(model_or_params)
    return {n: stable_rank(t) for n, t in p.items()
            if t.dim() == 2 + lead and not n.startswith(tuple(exclude))}


def _register() -> None:
    from ..registry import MEASURES

    layernorm_blowup.lifts_stacks = True  # stack branches inside (inputs per member; batched SVD)
    stable_ranks.lifts_stacks = True
    MEASURES.add("layernorm_blowup", layernorm_blowup,
                 "product over LayerNorms of the max inverse std of their inputs (Hahn & Rofin)")
    MEASURES.add("parameter_norm", parameter_norm,
                 "L2 norm of all parameters except the positional embeddings")
    MEASURES.add("stable_rank", stable_ranks,
                 "||W||_F^2 / sigma_max^2 of every 2-D weight")


_register()
