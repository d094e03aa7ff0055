"""Stacked training with torch.func: one trainer for M >= 1 members."""

from .stack import Member, Stack
from .trainer import TrainConfig, TrainResult, evaluate, train

__all__ = ["Member", "Stack", "TrainConfig", "TrainResult", "evaluate", "train"]
