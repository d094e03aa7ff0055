"""Planning in one place: run plans, the identity of a run, run ids, grouping into stacks.

An experiment's ``plan(spec)`` expands its grid into ``RunPlan``s. A run's id hashes the
experiment name and the *identity* part of its config: execution-only fields (compile,
chunking, CUDA graphs: ``EXECUTION_FIELDS``, owned by the trainer that reads them) change how
fast a run trains, not what it computes, so they are left out and a sweep resumes whatever of
them the restart uses. Runs with one group key share an architecture shape and train as one
stack; ``stacks_of`` cuts each group into stacks of at most ``max_members``. A stack is trained
from one shared config, so every plan of a group must agree on every field that is not a member
field (``MEMBER_FIELDS`` plus the experiment's own, e.g. a per-member task seed):
``shared_config`` checks it and fails loudly, and ``stacks_of`` checks every group it cuts.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterator, Optional

from ..train.trainer import EXECUTION_FIELDS, LATER_FIELD_DEFAULTS

__all__ = ["EXECUTION_FIELDS", "MEMBER_FIELDS", "RunPlan", "identity_config", "run_id",
           "shared_config", "stacks_of"]

# The fields a train.Member holds: every experiment's members may differ in them within a stack.
MEMBER_FIELDS = ("seed", "lr", "weight_decay", "gamma", "clip_norm")


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
    # config keys (beyond MEMBER_FIELDS) in which the members of one stack may differ
    member_fields: tuple = field(default=(), compare=False)

    @property
    def id(self) -> str:
        return run_id(self.experiment, identity_config(self.config))


def shared_config(plans: list[RunPlan]) -> dict:
    """The config the plans of one stack share (the first plan's), after checking that every plan
    agrees with it on every field that is not a member field; a disagreement would silently train
    a member with another member's settings, so it raises naming the fields."""
    first = plans[0]
    members = set(MEMBER_FIELDS).union(*(p.member_fields for p in plans))
    missing = object()
    for p in plans[1:]:
        differ = sorted(k for k in set(first.config) | set(p.config) if k not in members
                        and first.config.get(k, missing) != p.config.get(k, missing))
        if differ:
            raise ValueError(f"{first.experiment}: runs {first.id} and {p.id} of stack group "
                             f"{first.group} differ in {differ}, which are not member fields "
                             f"({sorted(members)}): one stack cannot train both")
    return first.config


def stacks_of(plans: list[RunPlan], max_members: Optional[int] = None
              ) -> Iterator[tuple[tuple, list[RunPlan]]]:
    """(group key, plans) of every stack to train: plans grouped by key in first-seen order,
    each group cut into stacks of at most ``max_members`` (default: one stack per group)."""
    groups: "OrderedDict[tuple, list[RunPlan]]" = OrderedDict()
    for p in plans:
        groups.setdefault(p.group, []).append(p)
    for key, members in groups.items():
        shared_config(members)
        step = max_members or len(members)
        for i in range(0, len(members), step):
            yield key, members[i:i + step]
