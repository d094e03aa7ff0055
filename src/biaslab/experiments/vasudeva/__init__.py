"""Vasudeva et al., the simplicity bias of transformers across architectures: one file per
experiment."""

#: The paper this folder reproduces, as the report titles its section (and its place there).
PAPER = 'Vasudeva et al., "Transformers Learn Low Sensitivity Functions"'
PAPER_ORDER = 2
