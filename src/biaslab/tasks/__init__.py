"""Tasks: what is learned. Importing this package registers every task."""

from .base import Task, TaskParams
from . import anchor, boolean, prefix_parity, table  # noqa: F401  (registers)
from . import modular  # noqa: F401  (registers)
from . import images  # noqa: F401  (registers synthetic_images, cifar10, svhn)
from . import text, vocab_features  # noqa: F401  (registers)
from . import linalg  # noqa: F401  (registers the LAWT matrix tasks)

__all__ = ["Task", "TaskParams", "make_task"]


def make_task(name: str, params: dict | None = None) -> Task:
    from ..registry import TASKS

    cls = TASKS.get(name)
    return cls.from_dict(dict(params or {}), prefix=name)
