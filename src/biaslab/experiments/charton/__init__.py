"""Charton's math transformers (LAWT, "What is my math transformer doing?"): one file per
experiment, with the pieces they share in ``protocol.py`` and their figures in ``figures.py``."""

#: The paper this folder reproduces, as the report titles its section (and its place there).
PAPER = 'Charton, "What is my math transformer doing?"'
PAPER_ORDER = 4
