"""Measures: pure functions of a model (or a stack of members) and data. Importing registers them."""

from .fourier import degree_profile, fourier_degree, fourier_spectrum, fwht
from .sensitivity import (average_sensitivity, bitflip_sensitivity, learned_sensitivity,
                          learned_table, sampled_sensitivity)
from .landscape import (hessian_top_eigenvalues, hessian_trace, hvp, loss_slice,
                        perturbation_sharpness)
from .norms import layernorm_blowup, parameter_norm, stable_rank
from . import anchor  # noqa: F401  (registers)
from .tokenwise import tokenwise_sensitivity  # (registers tokenwise_flip_sensitivity too)
from . import weight_noise  # noqa: F401  (registers weight_noise_sharpness)

__all__ = [
    "average_sensitivity", "bitflip_sensitivity", "degree_profile", "fourier_degree",
    "fourier_spectrum", "fwht", "hessian_top_eigenvalues", "hessian_trace", "hvp",
    "layernorm_blowup", "learned_sensitivity", "learned_table", "loss_slice", "parameter_norm",
    "perturbation_sharpness", "sampled_sensitivity", "stable_rank", "tokenwise_sensitivity",
]
