"""Charton's math transformers (LAWT, "What is my math transformer doing?"): one file per
experiment, with the pieces they share in ``common.py`` and their figures in ``figures.py``."""
