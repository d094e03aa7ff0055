"""Vasudeva et al., the simplicity bias of transformers across architectures: one file per
experiment."""
