"""Zhang et al., anchor functions and the initialization rate (sheet: anchor-init.md): one file
per experiment, the setup they share in ``protocol.py``, their figures in ``figures.py``."""
