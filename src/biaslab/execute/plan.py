"""Planning in one place: run plans, the identity of a run, run ids, grouping into stacks.

An experiment's ``plan(spec)`` expands its grid into ``RunPlan``s. A run's id hashes the
experiment name and the *identity* part of its config: execution-only fields (compile,
chunking, CUDA graphs: ``EXECUTION_FIELDS``, owned by the trainer that reads them) change how
fast a run trains, not what it computes, so they are left out and a sweep resumes whatever of
them the restart uses. Runs with one group key share an architecture shape and train as one
stack; ``stacks_of`` cuts each group into stacks of at most ``max_members``.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator, Optional

from ..train.trainer import EXECUTION_FIELDS, LATER_FIELD_DEFAULTS

__all__ = ["EXECUTION_FIELDS", "RunPlan", "identity_config", "run_id", "stacks_of"]


def run_id(experiment: str, config: dict) -> str:
    """Stable id of a run: hash of the experiment name and the canonical JSON of its config."""
    blob = json.dumps({"experiment": experiment, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def identity_config(config: dict) -> dict:
    """The part of a run's config that decides its result (execution fields of ``train`` left out)."""
    train = config.get("train")
    if not isinstance(train, dict):
        return config
    return {**config, "train": {k: v for k, v in train.items() if k not in EXECUTION_FIELDS
                                and not (k in LATER_FIELD_DEFAULTS and v == LATER_FIELD_DEFAULTS[k])}}


@dataclass
class RunPlan:
    config: dict
    group: tuple
    experiment: str

    @property
    def id(self) -> str:
        return run_id(self.experiment, identity_config(self.config))


def stacks_of(plans: list[RunPlan], max_members: Optional[int] = None
              ) -> Iterator[tuple[tuple, list[RunPlan]]]:
    """(group key, plans) of every stack to train: plans grouped by key in first-seen order,
    each group cut into stacks of at most ``max_members`` (default: one stack per group)."""
    groups: "OrderedDict[tuple, list[RunPlan]]" = OrderedDict()
    for p in plans:
        groups.setdefault(p.group, []).append(p)
    for key, members in groups.items():
        step = max_members or len(members)
        for i in range(0, len(members), step):
            yield key, members[i:i + step]
