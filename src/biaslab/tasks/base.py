"""The Task interface: what is learned, sampled on the device as a pure function.

A task object holds only the parameters that fix tensor shapes (n, vocabulary, subset size).
Everything that may differ between members of one stack -- a random truth table, the positions
of a sparse parity, a fixed training subset -- lives in ``state``, a dict of tensors made by
``make_state(seed)``. ``sample(state, key, batch, split)`` reads only shape parameters from
``self`` and the rest from ``state`` and ``key``, so it can be vmapped over members.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from ..errors import InputError, pydantic_to_input_error


class TaskParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Task(ABC):
    """Base class of every task. Subclasses set ``Params`` and the class attributes below."""

    Params: ClassVar[type[TaskParams]] = TaskParams
    #: 'binary' (targets in {0,1}), 'real' (float targets), or 'classes' (integer targets).
    target_kind: ClassVar[str] = "binary"

    def __init__(self, params: TaskParams):
        self.params = params

    @classmethod
    def from_dict(cls, values: dict, prefix: str = "task") -> "Task":
        from pydantic import ValidationError

        try:
            params = cls.Params(**values)
        except ValidationError as exc:
            raise pydantic_to_input_error(exc, prefix, cls.Params) from None
        return cls(params)

    # -- shapes -------------------------------------------------------------------------
    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of distinct input tokens."""

    @property
    @abstractmethod
    def seq_len(self) -> int:
        """Length of one input sequence."""

    @property
    def n_outputs(self) -> int:
        """Output width a model needs: 1 for binary/real targets, the class count otherwise."""
        return 1

    def shape_key(self) -> tuple:
        """Members whose tasks share this key can be trained in one stack."""
        return (type(self).__name__, self.vocab_size, self.seq_len, self.n_outputs)

    # -- data ---------------------------------------------------------------------------
    def make_state(self, seed: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Per-member tensors (tables, positions, subsets) drawn from ``seed``. Default: none."""
        return {}

    @abstractmethod
    def sample(self, state: dict, key: torch.Tensor, batch: int, split: str = "train"):
        """Return ``(x, y)``: x LongTensor [batch, seq_len], y [batch] (float or long)."""

    def evaluation_batch(self, state: dict, key: torch.Tensor, batch: int, split: str = "train"):
        """The inputs and targets a trainer evaluates a member on: ``(x, y)`` like ``sample``.

        Default: a sample of ``batch`` examples. A task whose training data is a fixed finite
        set overrides this to return the whole set, so that "fits its training set" means
        every training input, not a sample of them.
        """
        return self.sample(state, key, batch, split)

    def check_split(self, split: str) -> None:
        if split not in ("train", "test"):
            raise InputError("split", f"unknown split {split!r}", "train, test")

    def correct(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-example correctness (bool) of model outputs against targets."""
        if self.target_kind == "classes":
            return output.argmax(-1) == y
        if self.target_kind == "binary":
            return (output > 0.5) == (y > 0.5)
        # Real targets have no accuracy; call a prediction correct within 0.05 (documented).
        return (output - y).abs() < 0.05

    def describe(self) -> dict:
        return {"task": type(self).__name__, **self.params.model_dump()}
