"""Plotting helpers the experiments' figures share (palette, strips with means, flip rate by
position). Below experiments/, above nothing of the project: figures import it, the report never
needs it."""
