"""Data for the paper's experiments; every draw takes an explicit `jax.random` key.

regression: the linear-regression inputs (paper section 4.1), correlated Gaussians by circulant
embedding (FFT) plus uniform noise, and +-1 labels.
"""

from mdgeom.data import regression
from mdgeom.data.regression import (
    Embedding,
    alternating_power_correlation,
    circulant_embedding,
    correlated_gaussians,
    correlation_sequence,
    embedding_for,
    next_fast_size,
    regression_inputs,
    regression_problem,
)

__all__ = [
    "Embedding",
    "alternating_power_correlation",
    "circulant_embedding",
    "correlated_gaussians",
    "correlation_sequence",
    "embedding_for",
    "next_fast_size",
    "regression",
    "regression_inputs",
    "regression_problem",
]
