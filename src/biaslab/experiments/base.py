"""Experiments and claims.

An experiment is a declarative grid: ``plan(spec)`` expands it into runs, each with a resolved
config (hashed into the run id) and a group key (runs of one group share an architecture shape
and train as one stack); ``run_group`` trains and measures one group and returns each run's
metrics; ``figures`` draws from the stored table. A claim is a paper's statement turned into a
check on the stored table, written before the runs, returning PASS / FAIL / INCONCLUSIVE with
its numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict

from ..registry import CLAIMS, EXPERIMENTS
from ..store.db import run_id
from ..train.trainer import EXECUTION_FIELDS


class SpecBase(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class RunPlan:
    config: dict
    group: tuple
    experiment: str

    @property
    def id(self) -> str:
        return run_id(self.experiment, identity_config(self.config))


def identity_config(config: dict) -> dict:
    """The part of a run's config that decides its result: execution knobs (compile, chunking)
    are left out, so a sweep resumes whichever of them the restart uses."""
    train = config.get("train")
    if not isinstance(train, dict):
        return config
    return {**config, "train": {k: v for k, v in train.items() if k not in EXECUTION_FIELDS}}


@dataclass
class RunOutcome:
    plan: RunPlan
    metrics: dict[str, float]
    series: list[tuple[int, str, float]] = field(default_factory=list)
    tensors: dict[str, Any] = field(default_factory=dict)  # name -> tensor dict (safetensors)
    arrays: dict[str, Any] = field(default_factory=dict)  # name -> numpy array (.npy)
    seconds: float = 0.0


class Experiment:
    name: ClassVar[str]
    description: ClassVar[str]
    Spec: ClassVar[type[SpecBase]]

    def plan(self, spec) -> list[RunPlan]:
        raise NotImplementedError

    def run_group(self, spec, plans: list[RunPlan], device, progress=False) -> list[RunOutcome]:
        raise NotImplementedError

    #: Set by the report before ``figures`` is called, for figures drawn from run artifacts.
    store = None

    def figures(self, table: list[dict]) -> dict:
        """name -> matplotlib Figure, from the stored table (rows of ``Store.table``)."""
        return {}

    def _plan(self, config: dict, group: tuple) -> RunPlan:
        return RunPlan(config, group, self.name)


def register_experiment(cls):
    EXPERIMENTS.add(cls.name, cls, cls.description)
    return cls


@dataclass
class Verdict:
    status: str  # PASS | FAIL | INCONCLUSIVE
    summary: str
    numbers: dict = field(default_factory=dict)


@dataclass
class Claim:
    name: str
    experiment: str
    statement: str
    paper: str  # what the paper reports, for the results table
    check: Callable[[list[dict]], Verdict]


def register_claim(name: str, experiment: str, statement: str, paper: str):
    def deco(fn):
        CLAIMS.add(name, Claim(name, experiment, statement, paper, fn), statement)
        return fn

    return deco


def get_experiment(name: str) -> Experiment:
    return EXPERIMENTS.get(name)()
