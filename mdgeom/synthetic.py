"""Synthetic weights: the initial distributions and the Gaussian dual-space change of the theory.

Theorem 1 (docs/theory.md): under the true potential phi the learned change is Gaussian in the dual
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


def measurement_noise(key, w, rel_sd) -> jax.Array:
  """Multiplicative measurement noise with relative standard deviation `rel_sd`.

  w * exp(s e - s^2 / 2), e ~ N(0, 1), s^2 = log(1 + rel_sd^2): the measured value has mean w and
  standard deviation rel_sd |w|, never changes sign, and a zero stays zero (a log-normal error, as
  for volumes measured from images).
  """
  s2 = jnp.log1p(jnp.asarray(rel_sd, jnp.result_type(w)) ** 2)
  e = jax.random.normal(key, jnp.shape(w), jnp.result_type(w))
  return w * jnp.exp(jnp.sqrt(s2) * e - 0.5 * s2)


def weight_pair(key, true: potentials_lib.Potential, shape, *, init: str = "gaussian",
                w0_scale: float = 0.1, change: float = 0.1, drift: float = 0.0,
                silent: float = 0.0, unit_spread: float = 0.0, noise: float = 0.0):
  """Weights before and after learning under a known geometry, with the deviations of real data.

  The robustness protocol of the paper (section 4.2) is the default: w0 ~ N(0, w0_scale^2) with
  w0_scale = 1/sqrt(D) = 0.1, and grad phi(w) = grad phi(w0) + xi with
  xi = change * |f'(w0_scale)| * z, z ~ N(0, 1). On top of it:

  - drift: z ~ N(drift, 1), a net change of the dual weights (net potentiation), in units of the
    change's standard deviation;
  - silent: the fraction of synapses that do not change at all (w = w0 exactly);
  - unit_spread: for a 2-D shape [rows, cols], the standard deviation of log a_i and log b_j of
    per-unit scales, xi_ij = a_i b_j (...) (Eq. 13's x_i delta_j structure; scales normalised to
    a root-mean-square of 1, so the change's overall size is unchanged);
  - noise: multiplicative measurement noise of relative SD `noise` on both w0 and w
    (`measurement_noise`), drawn independently.

  Returns (w0, w) as measured, of `shape`. Pure and jit/vmap-able (potential and shape static).
  """
  shape = tuple(int(s) for s in shape)
  k0, kz, ku, kv, ks, kn0, kn1 = jax.random.split(key, 7)
  w0 = initial_weights(k0, init, shape, std=w0_scale)
  sigma = change * jnp.abs(true.mirror_map(jnp.asarray(w0_scale, w0.dtype)))
  unit = jnp.ones(shape, w0.dtype)
  if len(shape) == 2:
    a = jnp.exp(unit_spread * jax.random.normal(ku, (shape[0], 1), w0.dtype))
    b = jnp.exp(unit_spread * jax.random.normal(kv, (1, shape[1]), w0.dtype))
    unit = a * b
    unit = unit / jnp.sqrt(jnp.mean(unit * unit))
  elif isinstance(unit_spread, (int, float)) and unit_spread:
    raise ValueError(f"unit_spread needs a 2-D shape [rows, cols], got {shape}.")
  xi = sigma * unit * (drift + jax.random.normal(kz, shape, w0.dtype))
  still = jax.random.uniform(ks, shape) < silent
  w = gaussian_dual_change(true, w0, xi, 1.0)
  w = jnp.where(still, w0, w)
  if not (isinstance(noise, (int, float)) and noise == 0):  # (a traced noise level: always)
    w0, w = measurement_noise(kn0, w0, noise), measurement_noise(kn1, w, noise)
  return w0, w
