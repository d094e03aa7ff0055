"""Figures (pure functions: table -> matplotlib Figure) and the one-page HTML report."""
