"""Tasks: what is learned. Every task module is listed in ``biaslab/catalog.py``; the task
registry imports them on its first lookup."""

from .base import Task, TaskParams

__all__ = ["Task", "TaskParams", "make_task"]


def make_task(name: str, params: dict | None = None) -> Task:
    from ..registry import TASKS

    cls = TASKS.get(name)
    return cls.from_dict(dict(params or {}), prefix=name)
