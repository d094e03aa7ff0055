"""Hahn & Rofin, "Why are sensitive functions hard for transformers?" (sheet:
sensitivity-hardness.md): one file per experiment; the measurement protocol they share is
``protocol.py``, their figures ``figures.py``."""

#: The paper this folder reproduces, as the report titles its section (and its place there).
PAPER = 'Hahn & Rofin, "Why are Sensitive Functions Hard for Transformers?"'
PAPER_ORDER = 1
