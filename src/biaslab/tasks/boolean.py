"""Boolean tasks on {0,1}^n: inputs are bit strings, targets a function of them.

Targets are in {0,1} (binary) or real (MEAN, DEGREE). Truth tables are indexed little-endian:
bit i of the table index is input i. Every task can restrict training to a fixed subset of
``train_size`` distinct inputs (the "restricted training" of Hahn & Rofin E5), so the learned
completion on the remaining inputs can be studied; the test split is always uniform over {0,1}^n.
"""

from __future__ import annotations

from typing import ClassVar, Optional

import torch
from pydantic import Field, model_validator

from .. import rng
from ..errors import InputError
from ..registry import TASKS
from .base import Task, TaskParams

MAX_TABLE_N = 24  # 2^24 floats = 64 MiB: the largest cube we enumerate exactly


def all_inputs(n: int, device="cpu") -> torch.Tensor:
    """Every input of {0,1}^n as a LongTensor [2^n, n], row j = the bits of j (little-endian)."""
    if n > MAX_TABLE_N:
        raise InputError("n", f"{n} is too large to enumerate", f"n <= {MAX_TABLE_N}")
    j = torch.arange(1 << n, device=device, dtype=torch.int64)
    return (j[:, None] >> torch.arange(n, device=device)) & 1


def index_of(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``all_inputs``: the table index of each bit string [..., n] -> [...]."""
    weights = 1 << torch.arange(x.shape[-1], device=x.device, dtype=torch.int64)
    return (x.to(torch.int64) * weights).sum(-1)


class BooleanParams(TaskParams):
    n: int = Field(gt=0, description="input length")
    train_size: Optional[int] = Field(
        default=None, gt=0, description="train on a fixed subset of this many distinct inputs"
    )
    subset_seed: Optional[int] = Field(default=None, description="seed of the training subset")
    function_seed: Optional[int] = Field(default=None, description="seed of a random target")

    @model_validator(mode="after")
    def _subset_fits(self):
        if self.train_size is not None and self.n <= 62 and self.train_size > (1 << self.n):
            raise ValueError(f"train_size {self.train_size} exceeds 2^n = {1 << self.n} inputs")
        return self


class BooleanTask(Task):
    """Shared machinery: uniform inputs, optional fixed subset, truth tables."""

    Params: ClassVar = BooleanParams
    target_kind: ClassVar[str] = "binary"
    needs_table: ClassVar[bool] = False  # target stored as a table in state (n <= 24)

    def __init__(self, params):
        super().__init__(params)
        if self.needs_table and params.n > MAX_TABLE_N:
            raise InputError(
                "n", f"{params.n} too large for a tabulated target", f"1 <= n <= {MAX_TABLE_N}"
            )

    @property
    def n(self) -> int:
        return self.params.n

    @property
    def vocab_size(self) -> int:
        return 2

    @property
    def seq_len(self) -> int:
        return self.params.n

    def shape_key(self) -> tuple:
        return super().shape_key() + (self.params.train_size,)

    # -- target -------------------------------------------------------------------------
    def target(self, state: dict, x: torch.Tensor) -> torch.Tensor:
        """The target of bit strings x [..., n]; float tensor [...]."""
        raise NotImplementedError

    def make_function_state(self, key: torch.Tensor) -> dict:
        return {}

    def make_state(self, seed: int, device="cpu") -> dict:
        p = self.params
        fkey = rng.key_of(p.function_seed if p.function_seed is not None else seed, device)
        state = self.make_function_state(rng.derive(fkey, 101))
        if p.train_size is not None:
            skey = rng.key_of(p.subset_seed if p.subset_seed is not None else seed, device)
            state["subset"] = self._distinct_inputs(rng.derive(skey, 202), p.train_size)
        return state

    def _distinct_inputs(self, key: torch.Tensor, m: int) -> torch.Tensor:
        n = self.n
        if n <= MAX_TABLE_N:
            # A random permutation of the cube by sorting hashes; the first m rows are distinct.
            order = torch.argsort(rng.bits32(key, (1 << n,)))
            return all_inputs(n, key.device)[order[:m]]
        return rng.randint(key, (m, n), 2)  # duplicates have probability < m^2 / 2^n

    def truth_table(self, state: dict) -> torch.Tensor:
        """The target on every input, [2^n] float."""
        return self.target(state, all_inputs(self.n, self._device(state)))

    @staticmethod
    def _device(state: dict):
        for v in state.values():
            return v.device
        return "cpu"

    # -- sampling -----------------------------------------------------------------------
    def sample(self, state: dict, key: torch.Tensor, batch: int, split: str = "train"):
        if split == "train" and "subset" in state:
            idx = rng.randint(rng.derive(key, 11), (batch,), self.params.train_size)
            x = state["subset"][idx]
        else:
            x = rng.randint(rng.derive(key, 12 if split == "train" else 13), (batch, self.n), 2)
        return x, self.target(state, x)

    def evaluation_batch(self, state: dict, key: torch.Tensor, batch: int, split: str = "train"):
        """A fixed training subset is evaluated whole on the train split; otherwise a sample."""
        if split == "train" and "subset" in state:
            x = state["subset"]
            return x, self.target(state, x)
        return self.sample(state, key, batch, split)


def _register(name: str, description: str):
    return TASKS.register(name, description)


@_register("parity", "PARITY: 1 iff the number of ones is odd (sensitivity n)")
class Parity(BooleanTask):
    def target(self, state, x):
        return (x.sum(-1) % 2).float()


class SparseParityParams(BooleanParams):
    k: int = Field(default=3, gt=0, description="number of relevant bits")
    positions: Optional[list[int]] = Field(default=None, description="fixed relevant positions")

    @model_validator(mode="after")
    def _k_fits(self):
        if self.positions is not None:
            if len(set(self.positions)) != len(self.positions) or any(
                not 0 <= p < self.n for p in self.positions
            ):
                raise ValueError(f"positions must be distinct integers in [0, {self.n})")
            object.__setattr__(self, "k", len(self.positions))
        if self.k > self.n:
            raise ValueError(f"k = {self.k} exceeds n = {self.n}")
        return self


@_register("sparse_parity", "parity of k of the n bits (chosen or seeded positions; sensitivity k)")
class SparseParity(BooleanTask):
    Params = SparseParityParams

    def make_function_state(self, key):
        p = self.params
        if p.positions is not None:
            pos = torch.tensor(p.positions, device=key.device)
        else:
            pos = torch.argsort(rng.bits32(key, (p.n,)))[: p.k]
        mask = torch.zeros(p.n, dtype=torch.int64, device=key.device)
        mask[pos] = 1
        return {"mask": mask}

    def target(self, state, x):
        return ((x * state["mask"]).sum(-1) % 2).float()


@_register("majority", "MAJORITY: 1 iff strictly more than half of the bits are ones")
class Majority(BooleanTask):
    def target(self, state, x):
        return (2 * x.sum(-1) > self.n).float()


@_register("first", "FIRST: the first bit (sensitivity 1)")
class First(BooleanTask):
    def target(self, state, x):
        return x[..., 0].float()


@_register("mean", "MEAN: the fraction of ones (real-valued target)")
class Mean(BooleanTask):
    target_kind = "real"

    def target(self, state, x):
        return x.float().mean(-1)


@_register("random", "random function: a seeded uniformly random truth table (n <= 24)")
class RandomFunction(BooleanTask):
    needs_table = True

    def make_function_state(self, key):
        return {"table": (rng.bits32(key, (1 << self.n,)) & 1).float()}

    def target(self, state, x):
        return state["table"][index_of(x)]


class DegreeParams(BooleanParams):
    degree: int = Field(default=2, ge=0, description="Fourier degree of every monomial")
    terms: int = Field(default=4, gt=0, description="number of random monomials")

    @model_validator(mode="after")
    def _degree_fits(self):
        if self.degree > self.n:
            raise ValueError(f"degree {self.degree} exceeds n = {self.n}")
        return self


@_register(
    "degree",
    "random real function: sum of `terms` random degree-d Walsh monomials, unit L2 norm",
)
class Degree(BooleanTask):
    """f(x) = sum_j c_j chi_{S_j}(x) with |S_j| = degree; sum c_j^2 = 1, so as(f) = degree.

    Monomials are drawn independently and may repeat; repeated sets add their coefficients,
    which keeps the norm formula approximate but the degree exact.
    """

    Params = DegreeParams
    target_kind = "real"

    def make_function_state(self, key):
        p = self.params
        masks = torch.zeros(p.terms, p.n, dtype=torch.int64, device=key.device)
        for j in range(p.terms):
            pos = torch.argsort(rng.bits32(rng.derive(key, j), (p.n,)))[: p.degree]
            masks[j, pos] = 1
        coef = rng.normal(rng.derive(key, 999), (p.terms,))
        coef = coef / coef.norm()
        return {"masks": masks, "coef": coef}

    def target(self, state, x):
        # chi_S(x) = (-1)^(number of ones of x in S)
        ones = (x[..., None, :] * state["masks"]).sum(-1)
        chi = 1.0 - 2.0 * (ones % 2).float()
        return (chi * state["coef"]).sum(-1)


class JuntaParams(BooleanParams):
    k: int = Field(default=3, gt=0, description="number of relevant bits")

    @model_validator(mode="after")
    def _k_fits(self):
        if self.k > min(self.n, MAX_TABLE_N):
            raise ValueError(f"k = {self.k} exceeds n = {self.n}")
        return self


@_register("junta", "k-junta: a random truth table on k seeded positions")
class Junta(BooleanTask):
    Params = JuntaParams

    def make_function_state(self, key):
        p = self.params
        pos = torch.argsort(rng.bits32(key, (p.n,)))[: p.k]
        inner = (rng.bits32(rng.derive(key, 7), (1 << p.k,)) & 1).float()
        return {"positions": pos, "inner": inner}

    def target(self, state, x):
        sub = torch.index_select(x, -1, state["positions"]) if x.dim() == 2 else x[..., state["positions"]]
        return state["inner"][index_of(sub)]
