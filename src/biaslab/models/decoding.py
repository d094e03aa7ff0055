"""Batched greedy and beam decoding of a seq2seq model, on the device.

The loops run over decoder *positions* (at most ``decoder_len`` of them), never over sequences:
every step decodes the whole batch (and every beam) in one forward of the prefix. The loop has
no data-dependent exit (no host read), so the same function runs under ``vmap`` over the members
of a stack: ``stack_greedy`` / ``stack_beam`` map it over ``stack.params``.

A model is seen through its two parts (``models/lawt.py``): ``encode(xe) -> memory`` and
``decode(xd, memory, src_keep)`` -> the logits of the prefix's last position, [B, 1, V].
``module_parts(model)`` gives them for a plain module, ``functional_parts(base, params, buffers)``
for one member of a stack (under vmap).

Outputs follow the target layout of the tasks: [B, decoder_len] tokens, the prediction, then
``<eos>``, then ``<pad>``; a sequence that never emits ``<eos>`` just fills the row (a malformed
output for the task's parser). The decoder input starts with ``<eos>`` used as BOS, as in the
reference.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch.func import functional_call, vmap


class Parts(NamedTuple):
    encode: Callable
    decode: Callable
    pad_id: int


def module_parts(model) -> Parts:
    return Parts(lambda xe: model(xe, part="encode"),
                 lambda xd, mem, keep: model(xd, part="decode_last", memory=mem, src_keep=keep),
                 model.pad_id)


def functional_parts(base, params: dict, buffers: dict) -> Parts:
    """The parts of one member given its parameters (``base`` is the stack's meta module)."""
    def run(x, **kw):
        return functional_call(base, (params, buffers), (x,), kw)
    return Parts(lambda xe: run(xe, part="encode"),
                 lambda xd, mem, keep: run(xd, part="decode_last", memory=mem, src_keep=keep),
                 base.pad_id)


def _put(row: torch.Tensor, t: int, values: torch.Tensor) -> torch.Tensor:
    """row with column t replaced by ``values`` (functional: vmap-safe)."""
    col = torch.arange(row.shape[-1], device=row.device) == t
    return torch.where(col, values[..., None], row)


def greedy_decode(parts: Parts, xe: torch.Tensor, dec_len: int, eos_id: int = 0) -> torch.Tensor:
    """xe [B, Le] encoder tokens -> [B, dec_len] predicted target tokens (argmax each step)."""
    pad = parts.pad_id
    memory = parts.encode(xe)
    keep = xe != pad
    B = xe.shape[0]
    prefix = torch.full((B, 1), eos_id, dtype=torch.long, device=xe.device)  # BOS
    out = torch.full((B, dec_len), pad, dtype=torch.long, device=xe.device)
    done = torch.zeros(B, dtype=torch.bool, device=xe.device)
    for t in range(dec_len):
        nxt = parts.decode(prefix, memory, keep)[:, -1].argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        out = _put(out, t, nxt)
        done = done | (nxt == eos_id)
        prefix = torch.cat([prefix, nxt[:, None]], 1)
    return out


def beam_decode(parts: Parts, xe: torch.Tensor, dec_len: int, beam: int, eos_id: int = 0,
                length_penalty: float = 1.0) -> torch.Tensor:
    """Beam search of width ``beam``; returns the best hypothesis per example, [B, dec_len].

    A finished hypothesis can only continue with ``<pad>`` at no cost, so it keeps its slot and
    score; hypotheses are ranked at the end by log-probability / length^length_penalty (the
    reference's rule; length counts the tokens up to and including ``<eos>``).
    """
    pad = parts.pad_id
    B, K = xe.shape[0], beam
    memory = parts.encode(xe).repeat_interleave(K, 0)  # [B*K, Le, d]
    keep = (xe != pad).repeat_interleave(K, 0)
    dev = xe.device
    seqs = torch.zeros((B, K, 0), dtype=torch.long, device=dev)
    scores = torch.full((B, K), float("-inf"), device=dev)
    scores = torch.where(torch.arange(K, device=dev) == 0, 0.0, scores)  # one live beam at first
    done = torch.zeros((B, K), dtype=torch.bool, device=dev)
    bos = torch.full((B * K, 1), eos_id, dtype=torch.long, device=dev)
    for t in range(dec_len):
        prefix = torch.cat([bos, seqs.reshape(B * K, t)], 1)
        logp = parts.decode(prefix, memory, keep)[:, -1].float().log_softmax(-1)
        V = logp.shape[-1]
        logp = logp.view(B, K, V)
        only_pad = torch.full_like(logp, float("-inf"))
        only_pad[..., pad] = 0.0
        logp = torch.where(done[..., None], only_pad, logp)
        top, idx = (scores[..., None] + logp).reshape(B, K * V).topk(K, -1)
        src, tok = idx // V, idx % V
        seqs = torch.cat([seqs.gather(1, src[..., None].expand(B, K, t)), tok[..., None]], -1)
        done = done.gather(1, src) | (tok == eos_id)
        scores = top
    length = (seqs != pad).sum(-1).clamp(min=1).float()
    best = (scores / length ** length_penalty).argmax(-1)  # [B]
    return seqs.gather(1, best[:, None, None].expand(B, 1, dec_len))[:, 0]


def stack_greedy(stack, xe: torch.Tensor, dec_len: int, eos_id: int = 0,
                 params: dict | None = None) -> torch.Tensor:
    """Greedy decoding of every member: xe [M, B, Le] (or [B, Le] shared) -> [M, B, dec_len]."""
    p = stack.params if params is None else params
    in_x = 0 if xe.dim() == 3 else None

    def one(pp, bb, x):
        return greedy_decode(functional_parts(stack.base, pp, bb), x, dec_len, eos_id)
    return vmap(one, in_dims=(0, 0, in_x))(p, stack.buffers, xe)


def stack_beam(stack, xe: torch.Tensor, dec_len: int, beam: int, eos_id: int = 0,
               length_penalty: float = 1.0, params: dict | None = None) -> torch.Tensor:
    """Beam decoding of every member: xe [M, B, Le] (or shared) -> [M, B, dec_len]."""
    p = stack.params if params is None else params
    in_x = 0 if xe.dim() == 3 else None

    def one(pp, bb, x):
        return beam_decode(functional_parts(stack.base, pp, bb), x, dec_len, beam, eos_id,
                           length_penalty)
    return vmap(one, in_dims=(0, 0, in_x))(p, stack.buffers, xe)
