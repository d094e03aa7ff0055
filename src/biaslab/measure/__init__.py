"""Measures: pure functions of a model (or a stack of members) and data. Importing registers them."""

from .fourier import degree_profile, fourier_degree, fourier_spectrum, fwht
from .sensitivity import (average_sensitivity, bitflip_sensitivity, learned_sensitivity,
                          learned_table, sampled_sensitivity, tokenwise_sensitivity,
                          tokenwise_sensitivity_stack)

__all__ = [
    "average_sensitivity", "bitflip_sensitivity", "degree_profile", "fourier_degree",
    "fourier_spectrum", "fwht", "learned_sensitivity", "learned_table", "sampled_sensitivity",
    "tokenwise_sensitivity", "tokenwise_sensitivity_stack",
]
