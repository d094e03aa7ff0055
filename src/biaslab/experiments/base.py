"""Experiments: the interface every experiment implements, and its registration.

An experiment is a declarative grid: ``plan(spec)`` expands it into runs, each with a resolved
config (hashed into the run id) and a group key (runs of one group share an architecture shape
and train as one stack); ``run_group`` trains and measures one group and returns each run's
outcome (it never writes the store: the executor does); ``figures(table, artifacts)`` draws
from the stored table and the runs' artifact files. An experiment may declare the experiments
it needs (``dependencies``): the executor runs those first and hands ``run_group`` a read-only
view of their runs (``upstream``). Claims live in ``claims.py``; planning in ``execute/plan.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ..execute.plan import RunPlan, identity_config
from ..registry import EXPERIMENTS
from .claims import Claim, Verdict, register_claim

__all__ = ["Claim", "Experiment", "RunOutcome", "RunPlan", "SpecBase", "Verdict", "get_experiment",
           "identity_config", "register_claim", "register_experiment"]


class SpecBase(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    # config keys, beyond execute.plan.MEMBER_FIELDS, in which members of one stack may differ
    member_fields: ClassVar[tuple[str, ...]] = ()

    def plan(self, spec) -> list[RunPlan]:
        raise NotImplementedError

    def dependencies(self, spec) -> list[tuple["Experiment", SpecBase]]:
        """(experiment, its spec) of every experiment whose runs this one reads; the executor
        runs them first and passes their runs to ``run_group`` as ``upstream``. Default: none."""
        return []

    def run_group(self, spec, plans: list[RunPlan], device, progress=False) -> list[RunOutcome]:
        """Train and measure one stack. An experiment with dependencies takes a keyword
        ``upstream`` too: a ``store.RunsView`` of its dependencies' finished runs."""
        raise NotImplementedError

    def figures(self, table: list[dict], artifacts) -> dict:
        """name -> matplotlib Figure, from the stored table (rows of ``Store.table``) and the
        runs' artifacts (a ``store.Artifacts``: run id -> name -> file)."""
        return {}

    def _plan(self, config: dict, group: tuple) -> RunPlan:
        return RunPlan(config, group, self.name, self.member_fields)


def register_experiment(cls):
    EXPERIMENTS.add(cls.name, cls, cls.description)
    return cls


def get_experiment(name: str) -> Experiment:
    return EXPERIMENTS.get(name)()
