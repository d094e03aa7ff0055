"""Composite anchor functions (Zhang et al., NeurIPS 2024): reasoning vs memorizing.

A sequence of ``seq_len`` (9) tokens holds exactly one adjacent pair of anchors (a1, a2) and,
right before it, the key x; every other token is noise. Anchors 1..4 shift a number by
+5, +1, -2, -8, and the target composes both shifts: f = x + d(a1) + d(a2). Items (keys and
noise) are drawn from [item_min, item_max] = [20, 99], disjoint from the anchors; token 0 never
occurs. The training design breaks the composition on purpose:

* a *perturbed* pair is trained to a different total shift: (3,4) -> x-6 instead of x-10, which
  is the target of its mirror (4,3) under the symmetric reading;
* a *held-out* pair never appears in training: (4,3). After training, its answer tells the
  solution apart: x-10 = inferential (the model composed the single-anchor maps), x-6 =
  symmetric (the model merged (4,3) with the pair it saw, (3,4)).

Indexing convention. Positions are 0-based. ``pos`` is the index of the key, in 0..seq_len-3;
the anchors sit at pos+1 and pos+2, so the pair never reaches past the end. Keys are split
between train and test by value and position with modulus m (default seq_len-2 = 7, as in the
paper's text; the authors' code used 9 and 8): a (pos, key) combination is a *train* key if
key mod m != pos and a *test* key if key mod m == pos. Each split draws (pos, key) uniformly
from its allowed combinations.

Splits accepted by ``sample``:
  ``train``            training pairs (all but held-out), train keys, trained targets
  ``test``             the same pairs with test keys ("generalization on data")
  ``pair:a,b``         only pair (a,b), train keys; ``pair:a,b:test`` with test keys
For a ``pair:`` split the target is the trained target of that pair, and the inferential
composition for a held-out pair (so ``pair:4,3`` scores x-10). ``inferential_target`` and
``symmetric_target`` give both readings of any batch for the measures.

Training data. With ``train_size`` unset, training sequences are sampled fresh every step. The
paper trains on a fixed, finite set (about 900k sequences, ~759k of them in the trained groups,
for 210 epochs), and the memorizing solution it describes needs a set that can be memorized:
``train_size`` N draws N training sequences once per member (from ``data_seed``, else the
member's task seed) into its state, and every training batch is drawn from them on the device.
Test keys and the held-out pair are always sampled fresh (they are never trained on).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Optional

import torch
from pydantic import BeforeValidator, Field, model_validator

from .. import rng
from ..errors import InputError
from ..registry import TASKS
from .base import Task, TaskParams

# rng streams of the sampler (distinct salts so the pieces are independent)
_PAIR, _POSKEY, _NOISE, _TRAIN_SET, _PICK = 31, 32, 33, 34, 35


def parse_pair(value) -> str:
    """Canonical pair string "a,b" from "a,b", "(a, b)", [a, b] or (a, b)."""
    if isinstance(value, str):
        parts = value.strip().strip("()[]").split(",")
    else:
        parts = list(value)
    if len(parts) != 2:
        raise ValueError(f"{value!r} is not a pair of anchors like '4,3'")
    a, b = (int(str(p).strip()) for p in parts)
    return f"{a},{b}"


def pair_tuple(pair) -> tuple[int, int]:
    a, b = parse_pair(pair).split(",")
    return int(a), int(b)


PairStr = Annotated[str, BeforeValidator(parse_pair)]


class AnchorParams(TaskParams):
    anchors: dict[int, int] = Field(
        default={1: 5, 2: 1, 3: -2, 4: -8}, description="anchor token -> shift of the key")
    seq_len: int = Field(default=9, ge=3, description="tokens per sequence")
    item_min: int = Field(default=20, ge=1, description="smallest key/noise token")
    item_max: int = Field(default=99, ge=1, description="largest key/noise token (inclusive)")
    held_out: list[PairStr] = Field(default=["4,3"], description="pairs never trained")
    perturbed: dict[PairStr, int] = Field(
        default={"3,4": -6}, description="pair -> total shift trained instead of the composition")
    modulus: Optional[int] = Field(
        default=None, ge=1, description="key split modulus m (train: key mod m != pos); None = seq_len-2")
    vocab: int = Field(default=201, ge=2, description="vocabulary = number of classes (token 0 unused)")
    train_size: Optional[int] = Field(
        default=None, ge=1, description="fixed training set of this many sequences, drawn once "
        "per member; batches are drawn from it (paper: ~759k trained sequences); None = fresh "
        "sequences every step")
    data_seed: Optional[int] = Field(
        default=None, description="seed of the fixed training set (None = the member's task seed)")

    @model_validator(mode="after")
    def _consistent(self):
        if self.item_min > self.item_max:
            raise ValueError(f"item_min {self.item_min} exceeds item_max {self.item_max}")
        if len(self.anchors) < 1:
            raise ValueError("at least one anchor is needed")
        for a in self.anchors:
            if not 1 <= a < self.vocab or self.item_min <= a <= self.item_max:
                raise ValueError(f"anchor {a} must be in [1, vocab) and outside the item range")
        if self.item_max >= self.vocab:
            raise ValueError(f"item_max {self.item_max} does not fit vocab {self.vocab}")
        for p in list(self.held_out) + list(self.perturbed):
            if any(a not in self.anchors for a in pair_tuple(p)):
                raise ValueError(f"pair {p} uses a token that is not an anchor")
        both = set(self.held_out) & set(self.perturbed)
        if both:
            raise ValueError(f"pairs {sorted(both)} are both held out and perturbed")
        if len(set(self.held_out)) >= len(self.anchors) ** 2:
            raise ValueError("every pair is held out: nothing to train on")
        shifts = [a + b for a in self.anchors.values() for b in self.anchors.values()]
        shifts += list(self.perturbed.values())
        lo, hi = self.item_min + min(shifts), self.item_max + max(shifts)
        if lo < 1 or hi >= self.vocab:
            raise ValueError(f"targets span [{lo}, {hi}], outside [1, vocab={self.vocab})")
        return self


@TASKS.register("anchor", "composite anchor functions: key + shift(a1) + shift(a2); "
                "(3,4) trained as x-6, (4,3) held out (Zhang et al.)")
class AnchorTask(Task):
    Params: ClassVar = AnchorParams
    target_kind: ClassVar[str] = "classes"

    def __init__(self, params: AnchorParams):
        super().__init__(params)
        p = params
        self.anchor_tokens = sorted(p.anchors)
        self.shifts = [p.anchors[a] for a in self.anchor_tokens]
        self.m = p.modulus if p.modulus is not None else p.seq_len - 2
        # trained[i, j]: total shift trained for pair (anchor i, anchor j); held-out pairs keep
        # the composition, which is what their "target" means (the inferential answer).
        trained = torch.tensor([[si + sj for sj in self.shifts] for si in self.shifts])
        for pair, shift in p.perturbed.items():
            a, b = pair_tuple(pair)
            trained[self.anchor_tokens.index(a), self.anchor_tokens.index(b)] = shift
        held = {pair_tuple(h) for h in p.held_out}
        self.train_pairs = [(a, b) for a in self.anchor_tokens for b in self.anchor_tokens
                            if (a, b) not in held]
        # token -> anchor index (-1 elsewhere) and token -> single shift (0 elsewhere)
        index = torch.full((p.vocab,), -1, dtype=torch.int64)
        shift = torch.zeros(p.vocab, dtype=torch.int64)
        for i, a in enumerate(self.anchor_tokens):
            index[a], shift[a] = i, self.shifts[i]
        keys = torch.arange(p.item_min, p.item_max + 1)
        poss = torch.arange(p.seq_len - 2)
        pos_grid, key_grid = torch.meshgrid(poss, keys, indexing="ij")
        is_test = (key_grid % self.m) == pos_grid
        combos = {
            "train": torch.stack([pos_grid[~is_test], key_grid[~is_test]], -1),
            "test": torch.stack([pos_grid[is_test], key_grid[is_test]], -1),
        }
        for name, c in combos.items():
            if len(c) == 0:
                raise InputError("anchor.modulus", f"no {name} keys with m = {self.m}",
                                 "a modulus that leaves keys in both splits")
        self._cpu = {
            "trained": trained, "index": index, "shift": shift,
            "pairs": torch.tensor(self.train_pairs, dtype=torch.int64),
            "combos_train": combos["train"], "combos_test": combos["test"],
        }
        self._tables: dict = {}

    def tables(self, device) -> dict[str, torch.Tensor]:
        """The constant lookup tables on ``device`` (cached; built from params only)."""
        device = torch.device(device)
        if device not in self._tables:
            self._tables[device] = {k: v.to(device) for k, v in self._cpu.items()}
        return self._tables[device]

    # -- shapes -------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.params.vocab

    @property
    def seq_len(self) -> int:
        return self.params.seq_len

    @property
    def n_outputs(self) -> int:
        return self.params.vocab

    def shape_key(self) -> tuple:
        # A stack samples every member with its first task, so members must agree on every
        # parameter that changes the data, i.e. all of them.
        return super().shape_key() + (self.params.model_dump_json(),)

    def check_split(self, split: str) -> None:
        self._parse_split(split)

    # -- targets of any batch (pure, vectorized; used by sample and by the measures) ----------
    def locate(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Key position, key and anchors of sequences x [..., L] (each with one anchor pair)."""
        t = self.tables(x.device)
        is_anchor = t["index"][x] >= 0
        first = is_anchor.to(torch.int64).argmax(-1, keepdim=True)  # first anchor position
        take = lambda i: x.gather(-1, i).squeeze(-1)  # noqa: E731
        return {"pos": (first - 1).squeeze(-1), "key": take(first - 1), "a1": take(first),
                "a2": take(first + 1)}

    def inferential_target(self, x: torch.Tensor) -> torch.Tensor:
        """key + d(a1) + d(a2): the composition of the single-anchor maps."""
        t, loc = self.tables(x.device), self.locate(x)
        return loc["key"] + t["shift"][loc["a1"]] + t["shift"][loc["a2"]]

    def trained_target(self, x: torch.Tensor) -> torch.Tensor:
        """The target taught in training (perturbed pairs changed; held-out pairs inferential)."""
        t, loc = self.tables(x.device), self.locate(x)
        return loc["key"] + t["trained"][t["index"][loc["a1"]], t["index"][loc["a2"]]]

    def symmetric_target(self, x: torch.Tensor) -> torch.Tensor:
        """The trained target of the mirrored pair (a2, a1): for (4,3) that is x-6."""
        t, loc = self.tables(x.device), self.locate(x)
        return loc["key"] + t["trained"][t["index"][loc["a2"]], t["index"][loc["a1"]]]

    # -- sampling ------------------------------------------------------------------------------
    def make_state(self, seed: int, device="cpu") -> dict:
        """The fixed training set [train_size, L] when ``train_size`` is set, drawn once."""
        p = self.params
        if p.train_size is None:
            return {}
        key = rng.key_of(p.data_seed if p.data_seed is not None else seed, device)
        x, _ = self.sample({}, rng.derive(key, _TRAIN_SET), p.train_size, "train")
        return {"train_set": x}

    def build(self, noise: torch.Tensor, pos: torch.Tensor, key: torch.Tensor,
              a1: torch.Tensor, a2: torch.Tensor) -> torch.Tensor:
        """Write key and anchors into noise [B, L] at pos, pos+1, pos+2 (all [B])."""
        ar = torch.arange(noise.shape[-1], device=noise.device)
        at = lambda k: ar == (pos[..., None] + k)  # noqa: E731
        x = torch.where(at(0), key[..., None], noise)
        x = torch.where(at(1), a1[..., None], x)
        return torch.where(at(2), a2[..., None], x)

    def _draw(self, key: torch.Tensor, batch: int, key_split: str, a1, a2):
        """Sequences with anchors a1, a2 ([batch]) and (pos, key) drawn from ``key_split``."""
        p = self.params
        combos = self.tables(key.device)["combos_" + key_split]
        c = combos[rng.randint(rng.derive(key, _POSKEY), (batch,), combos.shape[0])]
        noise = rng.randint(rng.derive(key, _NOISE), (batch, p.seq_len), p.item_max + 1,
                            p.item_min)
        return self.build(noise, c[:, 0], c[:, 1], a1, a2)

    def sample(self, state: dict, key: torch.Tensor, batch: int, split: str = "train"):
        """(x [batch, L] long, y [batch] long) for ``split``; pure and vmappable over key."""
        pair, key_split = self._parse_split(split)
        key = torch.as_tensor(key, dtype=torch.int64)
        if split == "train" and "train_set" in state:  # a batch of the fixed training set
            fixed = state["train_set"]
            x = fixed[rng.randint(rng.derive(key, _PICK), (batch,), fixed.shape[0])]
            return x, self.trained_target(x)
        if pair is None:
            pairs = self.tables(key.device)["pairs"]
            chosen = pairs[rng.randint(rng.derive(key, _PAIR), (batch,), pairs.shape[0])]
            a1, a2 = chosen[:, 0], chosen[:, 1]
        else:
            a1 = torch.full((batch,), pair[0], dtype=torch.int64, device=key.device)
            a2 = torch.full((batch,), pair[1], dtype=torch.int64, device=key.device)
        x = self._draw(key, batch, key_split, a1, a2)
        return x, self.trained_target(x)

    def sample_pair(self, key: torch.Tensor, batch: int, pair, key_split: str = "train"):
        """Sequences of one pair (e.g. (4,3)) with train or test keys; y = trained target."""
        return self.sample({}, key, batch, f"pair:{parse_pair(pair)}:{key_split}")

    def _parse_split(self, split: str) -> tuple[Optional[tuple[int, int]], str]:
        accepted = "train, test, pair:a,b, pair:a,b:test (a, b anchors)"
        if split in ("train", "test"):
            return None, split
        if split.startswith("pair:"):
            body = split[len("pair:"):]
            key_split = "train"
            if body.endswith(":test") or body.endswith(":train"):
                body, key_split = body.rsplit(":", 1)
            try:
                pair = pair_tuple(body)
            except ValueError:
                pair = None
            if pair is not None and all(a in self.params.anchors for a in pair):
                return pair, key_split
        raise InputError("split", f"unknown split {split!r}", accepted)
