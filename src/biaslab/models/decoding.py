"""Batched greedy and beam decoding of a seq2seq model, on the device.

The loops run over decoder *positions* (at most ``decoder_len`` of them), never over sequences:
every step decodes the whole batch (and every beam) at once. By default a step feeds only the
newest token and keeps every decoder layer's self-attention keys/values of the earlier positions
(and the memory's, computed once), as the reference's ``generate`` does; ``cached=False`` reruns
the decoder over the whole prefix at every step (quadratic; kept as the check of the cache:
both give the same tokens, ``tests/test_lawt_model.py``). Under ``vmap`` the loop has no
data-dependent exit (no host read) and writes no tensor in place; ``stack_greedy`` /
``stack_beam`` map it over ``stack.params`` with the lab's one mapping rule (``Stack.map``): on
an accelerator one vmap over the stack, on a CPU (where a decode step's buffers are far above
the rule's threshold: a vmapped stack of 3 LAWT models decoded 390 examples/s against 570 for
the same members one after another, docs/benchmarks.md) a plain loop over the members, in which
greedy decoding writes each position in place and stops once every sequence has emitted
``<eos>`` (the reference's ``generate`` does both; the tokens are the same either way).

A model is seen through its two parts (``models/lawt.py``): ``encode(xe) -> memory`` and
``decode(xd, memory, src_keep)`` -> the logits of the prefix's last position, [B, 1, V];
``start(memory)`` -> the memory's keys/values per layer and ``step(tok, t, cross_kv, src_keep,
cache)`` -> (logits [B, 1, V], cache) for the cached loop.
``module_parts(model)`` gives them for a plain module, ``member_parts(stack, params, buffers)``
for one member of a stack (under vmap or in a loop).

Outputs follow the target layout of the tasks: [B, decoder_len] tokens, the prediction, then
``<eos>``, then ``<pad>``; a sequence that never emits ``<eos>`` just fills the row (a malformed
output for the task's parser). The decoder input starts with ``<eos>`` used as BOS, as in the
reference.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch


class Parts(NamedTuple):
    encode: Callable
    decode: Callable
    pad_id: int
    start: Callable
    step: Callable


def _parts(run, pad_id: int) -> Parts:
    return Parts(lambda xe: run(xe, part="encode"),
                 lambda xd, mem, keep: run(xd, part="decode_last", memory=mem, src_keep=keep),
                 pad_id,
                 lambda mem: run(mem, part="cross_kv"),
                 lambda tok, t, ckv, keep, cache: run(tok, part="decode_step", t=t, cross_kv=ckv,
                                                      src_keep=keep, cache=cache))


def module_parts(model) -> Parts:
    return _parts(model, model.pad_id)


def member_parts(stack, params: dict, buffers: dict) -> Parts:
    """The parts of one member of ``stack`` through ``Stack.apply`` (under vmap a
    ``functional_call``; in a plain loop a call of the stack's module with the member's tensors
    in place, no swap)."""
    def run(x, **kw):
        return stack.apply(params, buffers, x, **kw)
    return _parts(run, stack.base.pad_id)


def _eager(params: dict) -> bool:
    """Not under vmap: the member's tensors are plain tensors."""
    first = next(iter(params.values()))
    return not torch._C._functorch.is_functorch_wrapped_tensor(first)


class _Stepper:
    """Next-token logits [B, V] of a growing prefix, with or without the key/value cache."""

    def __init__(self, parts: Parts, memory, keep, bos, cached: bool):
        self.parts, self.memory, self.keep, self.cached = parts, memory, keep, cached
        self.prefix, self.t, self.cache = bos, 0, None
        if cached:
            self.cross_kv = parts.start(memory)
            self.cache = [None] * len(self.cross_kv)

    def __call__(self) -> torch.Tensor:
        if not self.cached:
            return self.parts.decode(self.prefix, self.memory, self.keep)[:, -1]
        logits, self.cache = self.parts.step(self.prefix[:, -1:], self.t, self.cross_kv,
                                             self.keep, self.cache)
        return logits[:, -1]

    def push(self, tokens: torch.Tensor, reorder=None):
        """Append ``tokens`` [B']; ``reorder(tensor)`` first moves the rows to their new beams."""
        if reorder is not None:
            if self.cache is not None:
                self.cache = [tuple(reorder(c) for c in kv) for kv in self.cache]
            else:
                self.prefix = reorder(self.prefix)
        # The cached step reads only the newest token; the uncached one the whole prefix.
        self.prefix = tokens[:, None] if self.cached else torch.cat([self.prefix, tokens[:, None]], 1)
        self.t += 1


def _put(row: torch.Tensor, t: int, values: torch.Tensor) -> torch.Tensor:
    """row with column t replaced by ``values`` (functional: vmap-safe)."""
    col = torch.arange(row.shape[-1], device=row.device) == t
    return torch.where(col, values[..., None], row)


def greedy_decode(parts: Parts, xe: torch.Tensor, dec_len: int, eos_id: int = 0,
                  cached: bool = True, eager: bool = False) -> torch.Tensor:
    """xe [B, Le] encoder tokens -> [B, dec_len] predicted target tokens (argmax each step).

    ``eager`` (never under vmap): write each position in place and stop as soon as every
    sequence has emitted ``<eos>`` (a host read per step, as the reference's ``generate``;
    on a CPU a read is no device sync); the positions left are ``<pad>``, as they would be.
    """
    pad = parts.pad_id
    B = xe.shape[0]
    bos = torch.full((B, 1), eos_id, dtype=torch.long, device=xe.device)
    next_logits = _Stepper(parts, parts.encode(xe), xe != pad, bos, cached)
    out = torch.full((B, dec_len), pad, dtype=torch.long, device=xe.device)
    done = torch.zeros(B, dtype=torch.bool, device=xe.device)
    for t in range(dec_len):
        nxt = next_logits().argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        done = done | (nxt == eos_id)
        if eager:
            out[:, t] = nxt
            if bool(done.all()):
                break
        else:
            out = _put(out, t, nxt)
        next_logits.push(nxt)
    return out


def _beam_reorder(B: int, K: int, src: torch.Tensor):
    """rows [B*K, ...] -> the rows of the beams ``src`` [B, K] came from (gather: vmap-safe)."""
    def reorder(rows):
        shape = rows.shape
        idx = src.reshape(B, K, *([1] * (len(shape) - 1))).expand(B, K, *shape[1:])
        return rows.reshape(B, K, *shape[1:]).gather(1, idx).reshape(shape)
    return reorder


def beam_decode(parts: Parts, xe: torch.Tensor, dec_len: int, beam: int, eos_id: int = 0,
                length_penalty: float = 1.0, cached: bool = True) -> torch.Tensor:
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
    bos = torch.full((B * K, 1), eos_id, dtype=torch.long, device=dev)
    next_logits = _Stepper(parts, memory, keep, bos, cached)
    seqs = torch.zeros((B, K, 0), dtype=torch.long, device=dev)
    scores = torch.full((B, K), float("-inf"), device=dev)
    scores = torch.where(torch.arange(K, device=dev) == 0, 0.0, scores)  # one live beam at first
    done = torch.zeros((B, K), dtype=torch.bool, device=dev)
    for t in range(dec_len):
        logp = next_logits().float().log_softmax(-1)
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
        next_logits.push(tok.reshape(B * K), _beam_reorder(B, K, src))
    length = (seqs != pad).sum(-1).clamp(min=1).float()
    best = (scores / length ** length_penalty).argmax(-1)  # [B]
    return seqs.gather(1, best[:, None, None].expand(B, 1, dec_len))[:, 0]


def stack_greedy(stack, xe: torch.Tensor, dec_len: int, eos_id: int = 0,
                 params: dict | None = None, cached: bool = True, chunk="auto") -> torch.Tensor:
    """Greedy decoding of every member: xe [M, B, Le] (or [B, Le] shared) -> [M, B, dec_len].
    ``chunk``: how members are mapped (``Stack.map``; None = one vmap, 1 = a loop)."""
    p = stack.params if params is None else params

    def one(pp, bb, x):
        return greedy_decode(member_parts(stack, pp, bb), x, dec_len, eos_id, cached,
                             eager=_eager(pp))
    return _map_decode(stack, one, p, xe, dec_len, chunk)


def _map_decode(stack, one, params: dict, xe: torch.Tensor, dec_len: int, chunk) -> torch.Tensor:
    """``one(member params, member buffers, member xe)`` over the stack by ``Stack.map``'s rule.
    The largest buffers of a decode are its encoder's, which the teacher-forced forward of the
    whole sequence also makes: that forward's probed peak stands for the decode's."""
    in_x = 0 if xe.dim() == 3 else None
    shape = (*xe.shape[-2:-1], xe.shape[-1] + dec_len)
    return stack.map(one, params, stack.buffers, xe, in_dims=(0, 0, in_x), chunk=chunk,
                     peak_bytes=lambda: stack.forward_peak(shape, xe.dtype))


def stack_beam(stack, xe: torch.Tensor, dec_len: int, beam: int, eos_id: int = 0,
               length_penalty: float = 1.0, params: dict | None = None,
               cached: bool = True, chunk="auto") -> torch.Tensor:
    """Beam decoding of every member: xe [M, B, Le] (or shared) -> [M, B, dec_len]."""
    p = stack.params if params is None else params

    def one(pp, bb, x):
        return beam_decode(member_parts(stack, pp, bb), x, dec_len, beam, eos_id,
                           length_penalty, cached)
    return _map_decode(stack, one, p, xe, dec_len, chunk)
