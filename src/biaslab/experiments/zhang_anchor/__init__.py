"""Zhang et al., anchor functions and the initialization rate (sheet: anchor-init.md): one file
per experiment, the setup they share in ``protocol.py``, their figures in ``figures.py``."""

#: The paper this folder reproduces, as the report titles its section (and its place there).
PAPER = 'Zhang et al., "Initialization is Critical to Whether Transformers Fit Composite Functions by Reasoning or Memorizing"'
PAPER_ORDER = 3
