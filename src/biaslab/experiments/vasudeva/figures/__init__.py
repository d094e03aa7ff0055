"""The figures of the Vasudeva et al. experiments, one module per kind of experiment (vision,
text, grokking). Figures read stored tables and artifacts only: they import the wing's leaf
definitions (``protocol.py``), never an experiment module, so nothing here forms a cycle with
the experiments that call them."""
