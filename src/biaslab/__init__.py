"""biaslab: a laboratory for the inductive biases of neural networks, transformers first."""

__version__ = "0.1.0"
