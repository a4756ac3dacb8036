"""Does the best model describe the data? A goodness-of-fit check calibrated by simulation.

The check standardises each synapse's dual change by what the fitted model predicts for it,

    r = (h(v / g) - h(v0) - mu u) / sqrt(s^2 u^2 + sigma^2 q),

with q = the squared sensitivities of the dual change to the log noise of each measurement
(the delta method), and measures the distance of r from N(0, 1) with the paper's Delta-CDF
(uncentred, unscaled). Under the model r is close to N(0, 1) but not exactly (the noise is not
linear, silent synapses are a second component), so the statistic is compared with `n_sim` data
sets simulated from the fitted model itself, given the same BEFORE measurements: the p-value is
the fraction of simulations at least as far from N(0, 1) as the data. A small p-value says that
no candidate of the winning family describes the data well; the intervals are then already
widened by the sandwich factor kappa, and the verdict says so.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mdgeom.inference import likelihood as lik
from mdgeom.inference import mle, statistic

N_SIM = 39


def _unit(spec, x, pairs):
  if not spec.n_rows:
    return jnp.ones_like(pairs.l0)
  a = x[mle.N_GLOBAL:mle.N_GLOBAL + spec.n_rows]
  b = x[mle.N_GLOBAL + spec.n_rows:]
  return jnp.exp(a[pairs.rows] + b[pairs.cols])


def _residual(spec, x, s0, l0, s1, l1, u):
  fam = spec.family
  theta = x[mle.THETA]
  logg = x[mle.LOGG]

  def dual(t0, t1):
    return fam.dual(theta, s0, s1, l0 - t0, l1 - logg - t1)[0]

  z = jnp.zeros_like(l0)
  o = jnp.ones_like(l0)
  d, c0 = jax.jvp(dual, (z, z), (o, z))
  _, c1 = jax.jvp(dual, (z, z), (z, o))
  sig2 = lik.sigma_of(x[mle.RHO]) ** 2 if spec.noisy else 0.0
  var = (jnp.exp(x[mle.LOGS]) * u) ** 2 + sig2 * (c0 * c0 + c1 * c1)
  return (d - x[mle.MU] * u) / jnp.sqrt(var)


@functools.partial(jax.jit, static_argnums=0)
def _simulated(spec, x, pairs, keys):
  """Residuals of data simulated from the fitted model, given BEFORE: [n_sim, n]."""
  fam = spec.family
  theta = x[mle.THETA]
  u = _unit(spec, x, pairs)
  s2, m, m0, v0, v1, _ = lik.noise_prior(x[mle.RHO], pairs, spec.repeat) if spec.noisy else (
      0.0, 0.0, jnp.zeros_like(pairs.l0), jnp.zeros_like(pairs.l0), jnp.zeros_like(pairs.l0), 0.0)
  pi = jax.nn.sigmoid(x[mle.SILENT]) if spec.silent else 0.0

  def one(key):
    k0, k1, kz, ks = jax.random.split(key, 4)
    n = pairs.l0.shape[0]
    t0 = m0 + jnp.sqrt(v0) * jax.random.normal(k0, (n,), pairs.l0.dtype)
    t1 = m + jnp.sqrt(v1) * jax.random.normal(k1, (n,), pairs.l0.dtype)
    w0 = pairs.s0 * jnp.exp(pairs.l0 - t0)
    y = fam.mirror(theta, w0) + u * (x[mle.MU] + jnp.exp(x[mle.LOGS]) *
                                     jax.random.normal(kz, (n,), pairs.l0.dtype))
    w = fam.inverse(theta, y, pairs.s0)
    w = jnp.where(jax.random.uniform(ks, (n,)) < pi, w0, w)
    v = jnp.exp(x[mle.LOGG]) * w * jnp.exp(t1)
    v = jnp.where(v == 0, jnp.finfo(v.dtype).tiny, v)
    return _residual(spec, x, pairs.s0, pairs.l0, jnp.sign(v), jnp.log(jnp.abs(v)), u)

  return jax.vmap(one)(keys)


def _stat(r: np.ndarray) -> np.ndarray:
  r = np.atleast_2d(np.asarray(r, np.float64))
  return statistic.delta_cdf_rows(r, np.isfinite(r), center=False, scaled=False)


def check(fam, prep, settings, n_sim: int = N_SIM, seed: int = 0) -> dict:
  """The best family's goodness of fit: Delta-CDF of the standardised change, the median over
  simulations of the fitted model, and the p-value."""
  spec, x, pairs = fam.spec, jnp.asarray(fam.x), prep.pairs
  with jax.enable_x64(True):
    u = _unit(spec, x, pairs)
    r = np.asarray(_residual(spec, x, pairs.s0, pairs.l0, pairs.s1, pairs.l1, u))
    observed = float(_stat(r)[0])
    if n_sim <= 0:
      return {"delta_cdf": observed, "simulated_median": float("nan"), "p_value": float("nan"),
              "n_sim": 0, "residuals": r}
    keys = jax.random.split(jax.random.PRNGKey(seed + 7919), n_sim)
    sims = _stat(np.asarray(_simulated(spec, x, pairs, keys)))
  sims = sims[np.isfinite(sims)]
  p = float((1 + np.sum(sims >= observed)) / (1 + sims.size))
  return {"delta_cdf": observed, "simulated_median": float(np.median(sims)) if sims.size else
          float("nan"), "p_value": p, "n_sim": int(sims.size), "residuals": r}
