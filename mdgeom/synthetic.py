"""Synthetic weights: the initial distributions and the Gaussian dual-space change of the theory.

Theorem 1 (SPEC section 3): under the true potential phi the learned change is Gaussian in the dual
space, grad phi(w) = grad phi(w0) + xi. These helpers draw w0 and build w from xi; the robustness
experiment (Fig. 3B), the synaptic-data models (Fig. 5) and tests of the geometry inference use
them. Every draw takes an explicit PRNG key.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mdgeom import potentials as potentials_lib

INITIALIZATIONS = ("gaussian", "lognormal")


def lognormal_params(mean: float, var: float) -> tuple[float, float]:
  """(mu, sigma) of log w for a log-normal with the given mean and variance of w."""
  if mean <= 0 or var <= 0:
    raise ValueError(f"a log-normal needs mean > 0 and variance > 0 (got {mean}, {var}).")
  sigma2 = math.log1p(var / mean**2)
  return math.log(mean) - 0.5 * sigma2, math.sqrt(sigma2)


def initial_weights(key, kind: str, shape, *, std: float) -> jax.Array:
  """Initial weights with standard deviation scale `std`.

  - "gaussian": N(0, std^2).
  - "lognormal": |w| log-normal with mean `std` and variance std^2, times a random sign with equal
    probability (the paper's robustness experiment, as in the authors' code).
  """
  if kind == "gaussian":
    return std * jax.random.normal(key, shape)
  if kind == "lognormal":
    mu, sigma = lognormal_params(std, std**2)
    k_mag, k_sign = jax.random.split(key)
    mag = jnp.exp(mu + sigma * jax.random.normal(k_mag, shape))
    sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, shape), 1.0, -1.0)
    return mag * sign
  raise ValueError(f"unknown initialization {kind!r}; known: {INITIALIZATIONS}.")


def gaussian_dual_change(potential: potentials_lib.Potential, w0, noise, scale) -> jax.Array:
  """w = (grad phi)^{-1}(grad phi(w0) + scale * noise), keeping the sign of w0 where phi needs it.

  Pure and jit/vmap-able; `noise` is typically N(0, 1) of the shape of w0.
  """
  y = potential.mirror_map(w0) + scale * noise
  return potential.inverse_mirror_map(y, sign=jnp.sign(w0), initial_guess=w0)
