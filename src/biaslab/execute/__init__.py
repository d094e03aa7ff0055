"""Executors: run an experiment's groups (stacks) and write the store."""

from .local import resolve_device, run_experiment

__all__ = ["resolve_device", "run_experiment"]
