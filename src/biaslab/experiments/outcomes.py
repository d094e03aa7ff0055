"""From a trained stack to one RunOutcome per member: the one place that splits per-member
columns into runs, reads a member's training facts and curves, and shares the stack's time."""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

from ..train.trainer import TrainConfig, TrainResult
from .base import RunOutcome, RunPlan

PerMember = Union[dict, list, Callable[[int], dict]]


def train_metrics(result: TrainResult, cfg: TrainConfig, i: int) -> dict:
    """Member i's training facts: the trainer's convergence, the step reached, divergence."""
    cs = int(result.converge_step[i])
    steps = cs if (cfg.stop_on_converge and cs > 0) else result.steps_run
    if cfg.stop_on_converge and cs > 0 and cfg.after_convergence:
        # frozen at the first evaluation boundary at least after_convergence steps on
        on = -(-cfg.after_convergence // cfg.eval_every) * cfg.eval_every
        steps = min(cs + on, result.steps_run)
    return {"train_converged": float(result.converged[i]), "converge_step": cs,
            "diverged": float(result.diverged[i]), "steps": steps}


def history_series(result: TrainResult, i: int, names=("train_loss", "mse")) -> list:
    """Member i's training curves: (step, name, value) for each recorded evaluation."""
    return [(h["step"], k, h[k][i]) for h in result.history for k in names if k in h]


def member_row(metrics: PerMember, i: int) -> dict:
    """Member i's metrics from columns (name -> M values), rows (M dicts) or a function of i."""
    if callable(metrics):
        return dict(metrics(i))
    if isinstance(metrics, dict):
        return {k: _scalar(v[i]) for k, v in metrics.items()}
    return dict(metrics[i])


def _scalar(v):
    return float(v) if hasattr(v, "item") else v


def member_outcomes(plans: list[RunPlan], metrics: PerMember, seconds: float, *,
                    result: Optional[TrainResult] = None, series: Sequence[str] = (),
                    curves: Optional[Callable[[int], list]] = None,
                    arrays: Optional[Callable[[int], dict]] = None,
                    tensors: Optional[Callable[[int], dict]] = None) -> list[RunOutcome]:
    """One RunOutcome per member (member i runs ``plans[i]``).

    ``metrics``: per-member final metrics (see ``member_row``); ``series``: names of the
    training history stored as curves (needs ``result``), or ``curves(i)`` for curves of the
    experiment's own; ``arrays(i)`` / ``tensors(i)``: member i's artifacts; ``seconds``: the
    stack's wall time, shared evenly by its members.
    """
    out = []
    for i, plan in enumerate(plans):
        s = curves(i) if curves else (history_series(result, i, series) if result is not None else [])
        out.append(RunOutcome(plan, member_row(metrics, i), s,
                              tensors=tensors(i) if tensors else {},
                              arrays=arrays(i) if arrays else {},
                              seconds=seconds / len(plans)))
    return out
