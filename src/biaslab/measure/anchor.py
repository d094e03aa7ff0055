"""Measures of Zhang et al.'s anchor-function study: which solution a model found, and how.

Every measure is a pure tensor function, written once. Those that run a model take ``fn``, a
callable from tokens [B, L] to logits [..., B, V] -- an ``nn.Module``, or a ``Stack``, whose
``forward`` returns [M, B, V] for all members in one ``Stack.map`` (``lift.forward_of``) -- and
broadcast over the leading member dims, so a stack needs no second function and every member
sees the same inputs (differences between members are never sampling noise). Those that need
activations call ``fn(x, acts=True)``. The weight measures take a stack in place of a model
(``query_condensation``, ``embedding_order``, ``used_embedding_stable_rank``, ``stable_ranks``)
and broadcast over its [M, ...] parameters.

* ``heldout_accuracy``: on the held-out pair (4,3), accuracy against the inferential target
  (x-10) and the symmetric target (x-6), the share of other answers, and a histogram of
  prediction - inferential target (+4 = symmetric).
* ``seen_accuracy``: accuracy on the trained pairs with test keys (overall and per pair).
* ``attention_flow``: per-layer attention patterns and their rollout for a probe sequence.
* ``fused_similarity``: cosine similarity of last-token vectors grouped by composite value
  (optionally centred; equal-value pairs split into mirror pairs and the rest).
* ``condensation``: share of weight-row pairs with cos > 0.7 (signed, as the paper's Fig 5a,b;
  ``signed=False`` counts |cos|, the lab's earlier reading) (W_Q of layer 1 in the paper).
* ``stable_rank`` (from ``norms``, re-exported): ||W||_F^2 / sigma_max^2;
  ``used_embedding_stable_rank`` of the embedding rows of the tokens inputs contain.
* ``embedding_order``: |Spearman| between token value and the item embeddings' top PCs.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch

from .. import rng
from ..errors import InputError
from ..models.roles import query_keys
from ..tasks.anchor import AnchorTask, pair_tuple
from .lift import forward_of, is_stack
from .norms import stable_rank, stable_ranks  # noqa: F401  (re-exported)

HELDOUT_STREAM = 0xA4C3  # rng stream of heldout_accuracy's inputs
SEEN_STREAM = 0xA4C4  # rng stream of seen_accuracy's inputs
PROBE_STREAM = 0xA4C5  # rng stream of the noise of probe sequences


def _anchor_task(task) -> AnchorTask:
    if not isinstance(task, AnchorTask):
        raise InputError("task", f"{type(task).__name__} is not an anchor task", "anchor")
    return task


def _pred(logits: torch.Tensor) -> torch.Tensor:
    return logits.argmax(-1)


# -- which solution: the held-out pair --------------------------------------------------------------
def solution_scores(task: AnchorTask, x: torch.Tensor, pred: torch.Tensor, radius: int = 16) -> dict:
    """Score predicted classes ``pred`` [..., B] of sequences x [B, L] against both readings.

    Returns float tensors [...]: ``inferential`` (pred = composition), ``symmetric`` (pred =
    trained target of the mirrored pair), ``other`` (neither); ``hist`` [..., 2 radius + 1], the
    share of each deviation pred - inferential in -radius..radius (``offsets``), and
    ``outside`` the share beyond. Where both readings agree an answer counts for both.
    """
    inf, sym = task.inferential_target(x), task.symmetric_target(x)
    is_inf, is_sym = (pred == inf).float(), (pred == sym).float()
    dev = pred - inf
    offsets = torch.arange(-radius, radius + 1, device=x.device)
    hist = (dev[..., None] == offsets).float().mean(-2)
    return {"inferential": is_inf.mean(-1), "symmetric": is_sym.mean(-1),
            "other": (1 - torch.maximum(is_inf, is_sym)).mean(-1), "hist": hist,
            "outside": 1 - hist.sum(-1), "offsets": offsets}


@torch.no_grad()
def heldout_accuracy(fn: Callable, task: AnchorTask, key, pair=None, batch: int = 1024,
                     key_split: str = "train", radius: int = 16) -> dict:
    """``solution_scores`` on ``batch`` sequences of ``pair`` (default: the first held-out pair).

    Keys come from ``key_split`` ("train" keys, as the authors' code scores (4,3), or "test").
    The same inputs for every member: ``fn`` a Stack gives [M]-shaped results.
    """
    task = _anchor_task(task)
    fn, device = forward_of(fn)
    if pair is None:
        if not task.params.held_out:
            raise InputError("pair", "the task holds out no pair; name one", "e.g. '4,3'")
        pair = task.params.held_out[0]
    key = torch.as_tensor(key, dtype=torch.int64, device=device)
    x, _ = task.sample_pair(rng.derive(key, HELDOUT_STREAM), batch, pair, key_split)
    return solution_scores(task, x, _pred(fn(x)), radius)


# -- generalization on data: seen pairs, test keys ----------------------------------------------------
@torch.no_grad()
def seen_accuracy(fn: Callable, task: AnchorTask, key, batch: int = 1024,
                  key_split: str = "test") -> dict:
    """Accuracy on the trained pairs (trained targets) with ``key_split`` keys.

    Returns ``acc`` [...] and ``per_pair`` [..., A, A] (row = first anchor, in sorted anchor
    order; NaN for pairs not trained or not drawn).
    """
    task = _anchor_task(task)
    fn, device = forward_of(fn)
    key = torch.as_tensor(key, dtype=torch.int64, device=device)
    x, y = task.sample({}, rng.derive(key, SEEN_STREAM), batch, key_split)
    correct = (_pred(fn(x)) == y).float()
    t, loc = task.tables(x.device), task.locate(x)
    A = len(task.anchor_tokens)
    pair_id = t["index"][loc["a1"]] * A + t["index"][loc["a2"]]
    member = (pair_id[:, None] == torch.arange(A * A, device=x.device)).float()  # [B, A*A]
    per_pair = (correct[..., None] * member).sum(-2) / member.sum(-2)  # 0/0 -> NaN if absent
    return {"acc": correct.mean(-1), "per_pair": per_pair.unflatten(-1, (A, A))}


# -- probes --------------------------------------------------------------------------------------------
def probe_sequences(task: AnchorTask, keys: Iterable[int], pairs: Iterable, pos: Optional[int] = None,
                    seed: int = 0, device="cpu") -> torch.Tensor:
    """Every (key, pair) combination, key-major, over one shared noise row: [K * P, L].

    Sharing noise and position makes the sequences differ only in key and anchors, so a
    difference in representation is due to them. ``pos`` (key index) defaults to the middle.
    """
    task = _anchor_task(task)
    L = task.seq_len
    pos = (L - 3) // 2 if pos is None else pos
    if not 0 <= pos <= L - 3:
        raise InputError("pos", f"key position {pos} out of range", f"0..{L - 3}")
    grid = [(k, *pair_tuple(p)) for k in keys for p in pairs]
    g = torch.tensor(grid, dtype=torch.int64, device=device)
    p = task.params
    noise = rng.randint(rng.derive(rng.key_of(seed, device), PROBE_STREAM), (1, L),
                        p.item_max + 1, p.item_min).expand(len(grid), L)
    return task.build(noise, torch.full_like(g[:, 0], pos), g[:, 0], g[:, 1], g[:, 2])


# -- attention information flow ------------------------------------------------------------------------
def _layer_count(acts: dict) -> int:
    return sum(1 for k in acts if k.startswith("layers.") and k.endswith(".attn"))


@torch.no_grad()
def attention_flow(fn: Callable, x: torch.Tensor, residual: float = 0.5) -> dict:
    """Per-layer attention and its rollout (Abnar & Zuidema) for probe sequences x [B, L].

    Rollout composes the head-averaged patterns, each mixed with the identity to account for
    the residual stream: R = A'_{n-1} ... A'_0 with A' = (1 - residual) A + residual I.
    R[q, j] is how much input position j reaches position q at the top. Returns ``attn``
    [..., layers, B, H, L, L], ``rollout`` [..., B, L, L] and ``last`` = rollout's last row
    [..., B, L] (the flow into the read-out token).
    """
    fn, device = forward_of(fn)
    x = x if device is None else x.to(device)
    _, acts = fn(x, acts=True)
    attn = [acts[f"layers.{i}.attn"] for i in range(_layer_count(acts))]
    L = x.shape[-1]
    eye = torch.eye(L, device=x.device)
    rollout = eye
    for a in attn:
        step = (1 - residual) * a.mean(-3) + residual * eye
        rollout = step @ rollout
    return {"attn": torch.stack(attn, -5), "rollout": rollout, "last": rollout[..., -1, :]}


# -- fused representations ------------------------------------------------------------------------------
@torch.no_grad()
def fused_similarity(fn: Callable, task: AnchorTask, x: torch.Tensor, act: Optional[str] = None,
                     center: bool = False) -> dict:
    """Cosine similarity of last-token vectors of x [B, L], grouped by composite value.

    ``act``: activation name (default: X_ao of the last layer, ``layers.{n-1}.ao``; or e.g.
    ``readout``), read at the last position. The composite value is the inferential target
    f = key + d(a1) + d(a2). Returns ``cos`` [..., B, B], ``values`` [B], and the mean cosine
    over distinct pairs of sequences with ``same`` and ``different`` values, and ``gap``.
    An inferential model should give same ~ 1 (Fig 4 of the paper), a symmetric one less.

    ``center``: subtract each member's mean vector over the B sequences first. Post-LN vectors
    share a large common component (small init makes all of them alike), which lifts every raw
    cosine; centred, a cosine compares only what differs between sequences. Equal-value pairs are
    also split: ``same_mirror`` (same key, mirrored anchors (a,b)/(b,a): a symmetric model merges
    these by construction, so they say nothing about composing) and ``same_other`` (the rest, e.g.
    the paper's (3,3)/(2,2) triangles, Fig 4), with ``gap_other`` = same_other - different.
    """
    task = _anchor_task(task)
    fn, device = forward_of(fn)
    x = x if device is None else x.to(device)
    _, acts = fn(x, acts=True)
    name = act or f"layers.{_layer_count(acts) - 1}.ao"
    if name not in acts:
        raise InputError("act", f"no activation {name!r}", ", ".join(sorted(acts)))
    v = acts[name]
    v = v if name == "readout" else v[..., -1, :]
    if center:
        v = v - v.mean(-2, keepdim=True)
    v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = v @ v.transpose(-1, -2)
    values = task.inferential_target(x)
    off = ~torch.eye(len(values), dtype=torch.bool, device=x.device)
    same = (values[:, None] == values[None, :]) & off
    diff = (values[:, None] != values[None, :])
    mean_over = lambda m: (cos * m).sum((-1, -2)) / m.sum()  # noqa: E731
    s, d = mean_over(same), mean_over(diff)
    loc = task.locate(x)
    mirror = ((loc["key"][:, None] == loc["key"][None, :]) & (loc["a1"][:, None] == loc["a2"][None, :])
              & (loc["a2"][:, None] == loc["a1"][None, :]) & off)
    nan = torch.full_like(s, float("nan"))
    over = lambda m: mean_over(m) if bool(m.any()) else nan  # noqa: E731  (no such pair: NaN)
    so = over(same & ~mirror)
    return {"cos": cos, "values": values, "same": s, "different": d, "gap": s - d,
            "same_mirror": over(same & mirror), "same_other": so, "gap_other": so - d}


# -- complexity of the weights ------------------------------------------------------------------------
def condensation(w: torch.Tensor, threshold: float = 0.7, signed: bool = True) -> torch.Tensor:
    """Share of row pairs i < j of w [..., n, d] with cos(w_i, w_j) > threshold; [...].

    Rows of an ``nn.Linear`` weight are neurons (each a vector over the input dims), the
    units whose alignment the condensation literature tracks. Zero rows count as unaligned.
    Signed by default: Zhang et al. group W_Q(1) rows at "cosine > 0.7" (Fig 5a,b), so
    anti-aligned rows are not condensed together; ``signed=False`` counts |cos| (issue 10's rule).
    """
    u = w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = u @ u.transpose(-1, -2)
    cos = cos if signed else cos.abs()
    n = w.shape[-2]
    upper = torch.ones(n, n, dtype=torch.bool, device=w.device).triu(1)
    return ((cos > threshold) & upper).sum((-1, -2)).float() / upper.sum()


def query_condensation(params: dict, layer: int = 0, threshold: float = 0.7,
                       signed: bool = True) -> torch.Tensor:
    """``condensation`` of the query weight of attention ``layer`` of a name -> tensor dict
    (found by the models' naming convention), or of a Stack (by its roles; [M])."""
    if is_stack(params):
        return condensation(params.params[params.roles.query(layer)], threshold, signed)
    return condensation(params[query_keys(params)[layer]], threshold, signed)


def _ranks(v: torch.Tensor) -> torch.Tensor:
    return v.argsort(-1).argsort(-1).float()


def embedding_order(emb, tokens: torch.Tensor | None = None, k: int = 2) -> dict:
    """How well token value is ordered along the top principal components of embeddings.

    emb [..., V, d]; tokens [N] (the item tokens). A Stack in place of emb: its members' token
    embeddings [M, V, d] over its task's item tokens (``tokens`` None). Centers the N rows, projects them onto the
    top ``k`` principal components and returns ``rho`` [..., k], the |Spearman| correlation of
    each projection with the token value, and ``max`` [...] over components. 1 = a perfectly
    monotone order along a PC (the paper's small-init embeddings, Fig 5c); near 0 = no order.
    """
    if is_stack(emb):
        emb, tokens = _token_embedding(emb), item_tokens(emb.task, emb.device)
    e = emb[..., tokens, :].float()
    e = e - e.mean(-2, keepdim=True)
    u, s, _ = torch.linalg.svd(e, full_matrices=False)
    proj = (u[..., :k] * s[..., None, :k]).transpose(-1, -2)  # [..., k, N]
    rx, rp = _ranks(tokens.float()), _ranks(proj)
    rx, rp = rx - rx.mean(), rp - rp.mean(-1, keepdim=True)
    rho = (rp * rx).sum(-1) / (rp.norm(dim=-1) * rx.norm()).clamp_min(1e-12)
    return {"rho": rho.abs(), "max": rho.abs().amax(-1)}


def item_tokens(task: AnchorTask, device="cpu") -> torch.Tensor:
    p = _anchor_task(task).params
    return torch.arange(p.item_min, p.item_max + 1, device=device)


def input_tokens(task: AnchorTask, device="cpu") -> torch.Tensor:
    """The tokens the task's inputs contain: the anchors and the items (keys and noise)."""
    task = _anchor_task(task)
    return torch.cat([torch.tensor(task.anchor_tokens, device=device), item_tokens(task, device)])


def used_embedding_stable_rank(emb, tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Stable rank of the embedding rows ``tokens`` of emb [..., V, d]; [...]. A Stack in place
    of emb: its members' token embeddings over the tokens its task's inputs contain -> [M].

    Rows of tokens no input contains (pad, target-only values) get no gradient and keep their
    random init (only weight decay shrinks them); in the full table they add a near-isotropic
    block that lifts the stable rank by an amount set by the init, not by training.
    """
    if is_stack(emb):
        emb, tokens = _token_embedding(emb), input_tokens(emb.task, emb.device)
    return stable_rank(emb[..., tokens, :])


def _token_embedding(stack) -> torch.Tensor:
    return stack.params[stack.roles.token_embedding]


def _register() -> None:
    from ..registry import MEASURES

    for fn in (heldout_accuracy, seen_accuracy, attention_flow, fused_similarity,
               query_condensation, embedding_order):
        fn.lifts_stacks = True  # takes a Stack in place of the model (see the module doc)
    MEASURES.add("anchor_heldout", heldout_accuracy,
                 "held-out pair (4,3): inferential (x-10) / symmetric (x-6) / other shares, deviation histogram")
    MEASURES.add("anchor_seen", seen_accuracy,
                 "accuracy on the trained anchor pairs with test keys (overall and per pair)")
    MEASURES.add("attention_flow", attention_flow,
                 "per-layer attention patterns and their rollout for probe sequences")
    MEASURES.add("anchor_fused_similarity", fused_similarity,
                 "cosine of last-token vectors: mean for equal vs different composite value")
    MEASURES.add("query_condensation", query_condensation,
                 "share of W_Q row pairs (first layer) with cos > 0.7 (signed; Fig 5a,b): condensation")
    MEASURES.add("embedding_order", embedding_order,
                 "|Spearman| of token value vs the top principal components of token embeddings")


_register()
