"""Hahn & Rofin, "Why are sensitive functions hard for transformers?" (sheet:
sensitivity-hardness.md): one file per experiment; the measurement protocol they share is
``experiments/protocol.py``, their figures ``figures.py``."""
