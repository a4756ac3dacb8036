"""Measurement noise: a noise-standardised statistic, calibrated by simulating each candidate.

Spine volumes and other synaptic measurements carry 10-30% multiplicative error e (relative SD s,
`mdgeom.synthetic.measurement_noise`). It enters a candidate's dual change through the mirror
map: to first order

    d_i = psi'(w_i e1) - psi'(w0_i e0) ~ xi_i + psi''(w_i) w_i log e1 - psi''(w0_i) w0_i log e0,

so under the true geometry the change is Gaussian with a per-synapse variance

    v_i = sigma^2 u_i^2 + s2 q_i,    q_i = (psi''(w_i) w_i)^2 + (psi''(w0_i) w0_i)^2,

(s2 = log(1 + s^2); u_i = the per-unit scale, 1 without the unit model, fitted to the noise-free
part d_i^2 - s2 q_i of the squared change). For p-norms q grows like
|w|^(2(p-1)), so the pooled change is a scale mixture and its Delta-CDF is far from 0 even under
the true p; for negative entropy psi''(w) w = 1 and the noise is the same at every synapse.
docs/theory.md ("Measurement noise") has the derivation. For each candidate:

  1. fit mu and sigma of the Gaussian change net of noise by maximum likelihood under that
     heteroscedastic Gaussian (Fisher scoring on sigma^2; mu in closed form);
  2. standardise: r_i = (d_i - mu u_i) / sqrt(v_i). Under the candidate r is N(0, 1); under a
     wrong geometry it is not. The statistic is int |F_r - Phi| on the paper's grid, with r
     compared with N(0, 1) as it is, NOT rescaled by its sample SD: a wrong geometry can give a
     Gaussian r of the wrong variance (its change grows with |w0| like the noise does, so the
     fit lets the noise explain it), and a scale-free statistic would miss that. With no noise
     the ML fit makes r's RMS 1 and this is the paper's statistic;
  3. calibrate: simulate `n_sim` data sets from the candidate's generative model (w0 = the
     measured w0; w = psi'^{-1}(psi'(w0) + mu u + sigma u z); both measured with the noise model,
     exactly, not to first order) and run each through steps 1-2. The score is
     |log D_obs - mean log D_sim| / sd log D_sim (0 = typical of the candidate), and the
     two-sided calibration p-value comes from the same simulations. Every candidate sees the same random draws (common random
     numbers), so scores vary smoothly along a scan of p.

The measured w0 stands in for the true one in the simulations (it carries one layer of noise);
for broad weight distributions the extra spread is negligible.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mdgeom import analysis
from mdgeom import potentials as potentials_lib
from mdgeom import scales as scales_lib
from mdgeom.inference import candidates as cands

UNIT_ITERS = 30     # alternating normalisations inside a simulation (fixed count under jit)
SCORING_ITERS = 8   # Fisher-scoring steps of the sigma fit (converged to < 1e-6 in tests)
SIGMA_FLOOR = 1e-4  # sigma is kept >= SIGMA_FLOOR x the change's standard deviation


def lognormal_sigma2(rel_sd: float) -> float:
  """Variance of log e for the multiplicative noise e of relative SD `rel_sd`."""
  return float(np.log1p(rel_sd ** 2))


def noise_weight(pot, w0, w):
  """q_i = (psi''(w) w)^2 + (psi''(w0) w0)^2: the first-order noise variance per unit s2."""
  h = lambda v: pot.hessian_diag(v) * v
  return h(w) ** 2 + h(w0) ** 2


def fit_gaussian_change(d, u, q, s2, valid, fit_mean=True):
  """Maximum-likelihood (mu, sigma) of d_i ~ N(mu u_i, sigma^2 u_i^2 + s2 q_i) over valid i.

  mu is the weighted mean given sigma; sigma^2 by Fisher scoring on the profile likelihood,
  from the moment estimate var(d) - s2 mean(q), kept >= (SIGMA_FLOOR sd)^2. Pure jax (vmap-able
  over simulated data sets)."""
  vf = valid.astype(d.dtype)
  n = jnp.sum(vf)
  dv = jnp.where(valid, d, 0.0)
  uu = jnp.where(valid, u * u, 0.0)
  c = jnp.where(valid, s2 * q, 0.0)
  mean = jnp.sum(dv) / n
  var = jnp.sum(vf * (dv - mean) ** 2) / n
  floor = (SIGMA_FLOOR ** 2) * var
  um = jnp.where(valid, u, 0.0)

  def mu_of(v):
    w = vf / v
    return jnp.sum(w * dv * um) / jnp.sum(w * uu) if fit_mean else jnp.zeros((), d.dtype)

  def body(_, t):
    iv = vf / (t * uu + c + (1.0 - vf))  # 1/v, 0 for invalid entries
    mu = jnp.sum(iv * dv * um) / jnp.sum(iv * uu) if fit_mean else 0.0
    r = (dv - mu * um) * iv
    g = 0.5 * jnp.sum(uu * (r * r - iv))
    info = 0.5 * jnp.sum(uu * uu * iv * iv)
    return jnp.maximum(t + g / info, floor)

  t0 = jnp.maximum(var - jnp.sum(c) / n, floor)
  t = jax.lax.fori_loop(0, SCORING_ITERS, body, t0)
  mu = mu_of(t * uu + c + (1.0 - vf))
  return mu, jnp.sqrt(t)


def standardise(d, u, q, s2, mu, sigma, valid):
  """r_i = (d_i - mu u_i) / sqrt(sigma^2 u_i^2 + s2 q_i); NaN where not valid."""
  v = sigma * sigma * u * u + s2 * q
  return jnp.where(valid & (v > 0), (d - mu * u) / jnp.sqrt(jnp.where(v > 0, v, 1.0)), jnp.nan)


def _units_jax(d, valid, rows, cols, n_rows, n_cols, noise_var):
  """Per-unit RMS scale of each entry fitted to d^2 - noise_var (mdgeom.scales, fixed iteration
  count), 1 where invalid."""
  raw = jnp.where(valid, d * d, 0.0)
  d2 = jnp.where(valid, d * d - noise_var, 0.0)
  vf = valid.astype(d.dtype)
  cnt_r = jnp.maximum(jax.ops.segment_sum(vf, rows, n_rows), 1.0)
  cnt_c = jnp.maximum(jax.ops.segment_sum(vf, cols, n_cols), 1.0)

  def rms(ids_, other, n_units, cnt):
    m = jax.ops.segment_sum(d2 / other ** 2, ids_, n_units) / cnt
    floor = scales_lib.NOISE_FLOOR * jax.ops.segment_sum(raw / other ** 2, ids_, n_units) / cnt
    m = jnp.sqrt(jnp.maximum(m, floor))
    return jnp.where(m > 0, m, 1.0)

  def body(_, ab):
    a, b = ab
    a = rms(rows, b[cols], n_rows, cnt_r)
    b = rms(cols, a[rows], n_cols, cnt_c)
    return a, b

  a, b = jax.lax.fori_loop(0, UNIT_ITERS, body, (jnp.ones(n_rows, d.dtype),
                                                   jnp.ones(n_cols, d.dtype)))
  u = a[rows] * b[cols]
  u = jnp.where(valid, u, 1.0)
  return u / jnp.sqrt(jnp.sum(jnp.where(valid, u * u, 0.0)) / jnp.sum(vf))


def grid_delta_cdf(x, valid, center, scale=True):
  below, n, sd = analysis.scaled_grid_counts(x, valid, center, scale)
  phi = jnp.asarray(analysis.GRID_NORMAL_CDF, x.dtype)
  stat = jnp.sum(jnp.abs(below / n - phi)) * analysis.GRID_STEP
  return jnp.where(sd > 0, stat, jnp.nan)


def _pipeline(pot, w0n, wn, s2, rows, cols, center, use_units, n_rows, n_cols):
  """Data -> noise-standardised change -> statistic, as for the measured pair."""
  d = analysis.dual_change_raw(pot, w0n, wn)
  q = noise_weight(pot, w0n, wn)
  valid = jnp.isfinite(d) & jnp.isfinite(q)
  u = (_units_jax(d, valid, rows, cols, n_rows, n_cols, s2 * q) if use_units else
       jnp.ones_like(d))
  mu, sigma = fit_gaussian_change(d, u, q, s2, valid, center)
  r = standardise(d, u, q, s2, mu, sigma, valid)
  return grid_delta_cdf(r, jnp.isfinite(r), False, False), mu, sigma


@functools.partial(jax.jit, static_argnums=(0, 9, 10, 11, 12))
def _simulate(make, params, w0, mu, sigma, unit, log_sd, keys, ids, center, use_units, n_rows,
              n_cols):
  """Statistic [params, keys] of data simulated under each candidate (common random numbers)."""
  rows, cols = ids
  s2 = log_sd * log_sd

  def one(theta, m, s, key):
    pot = make(theta)
    kz, k0, k1 = jax.random.split(key, 3)
    z = jax.random.normal(kz, w0.shape, w0.dtype)
    y0 = pot.mirror_map(w0)
    w = pot.inverse_mirror_map(y0 + m * unit + s * unit * z, sign=jnp.sign(w0),
                               initial_guess=w0)
    e0 = jax.random.normal(k0, w0.shape, w0.dtype)
    e1 = jax.random.normal(k1, w0.shape, w0.dtype)
    w0n = w0 * jnp.exp(log_sd * e0 - 0.5 * s2)
    wn = w * jnp.exp(log_sd * e1 - 0.5 * s2)
    stat, _, _ = _pipeline(pot, w0n, wn, s2, rows, cols, center, use_units, n_rows, n_cols)
    return stat

  per_param = jax.vmap(one, in_axes=(None, None, None, 0))
  return jax.vmap(per_param, in_axes=(0, 0, 0, None))(params, mu, sigma, keys)


@functools.partial(jax.jit, static_argnums=(0, 7, 8))
def _observed(make, theta, w0, w, keep, log_sd, unit, use_units, center):
  """The measured pair through the same steps: (r, mu, sigma). One compilation per family."""
  pot = make(theta)
  s2 = log_sd * log_sd
  d = analysis.dual_change_raw(pot, w0, w)
  valid = keep & jnp.isfinite(d)
  u = unit if use_units else jnp.ones_like(d)
  q = noise_weight(pot, w0, w)
  valid = valid & jnp.isfinite(q) & jnp.isfinite(u)
  mu, sigma = fit_gaussian_change(d, u, q, s2, valid, center)
  return standardise(d, u, q, s2, mu, sigma, valid), mu, sigma


def observed_standardised(pot, w0, w, keep, rel_sd, unit=None, center=True):
  """The measured change of `pot`, noise-standardised: (r [n] with NaN where left out, mu,
  sigma). `unit` is the per-unit scale of each synapse (from `mdgeom.scales`), or None."""
  make, theta = family_maker(pot)
  with jax.enable_x64(True):
    r, mu, sigma = _observed(make, jnp.asarray(theta, jnp.float64), jnp.asarray(w0, jnp.float64),
                             jnp.asarray(w, jnp.float64),
                             jnp.asarray(keep), jnp.asarray(np.sqrt(lognormal_sigma2(rel_sd))),
                             jnp.asarray(np.ones(np.size(w0)) if unit is None else unit,
                                         jnp.float64), unit is not None, bool(center))
  return np.asarray(r, np.float64), float(mu), float(sigma)


def family_maker(pot: potentials_lib.Potential):
  f = cands.family(pot)
  if f == "pnorm":
    return potentials_lib.pnorm, cands.pnorm_p(pot)
  if f == "hypentropy":
    return potentials_lib.hypentropy, cands.hypentropy_beta(pot)
  return _Constant(pot), 0.0


class _Constant:
  """make(theta) -> the same potential (hashed by the potential, so jit caches per potential)."""

  def __init__(self, pot):
    self.pot = pot

  def __call__(self, _):
    return self.pot

  def __hash__(self):
    return hash(self.pot)

  def __eq__(self, other):
    return isinstance(other, _Constant) and other.pot is self.pot


class Calibration(NamedTuple):
  mu: float                # fitted mean of the dual change, net of noise
  sigma: float             # fitted standard deviation, net of noise
  simulated: np.ndarray    # statistic of each simulated data set [n_sim]
  log_mean: float
  log_sd: float
  interpolated: bool = False  # simulations interpolated between neighbouring p-norms

  @classmethod
  def from_simulations(cls, mu, sigma, simulated, interpolated=False) -> Calibration:
    s = np.asarray(simulated, np.float64)
    ls = np.log(s[np.isfinite(s) & (s > 0)])
    return cls(float(mu), float(sigma), s, float(np.mean(ls)) if ls.size else float("nan"),
               float(np.std(ls, ddof=1)) if ls.size > 1 else float("nan"), interpolated)

  def score(self, stat):
    """|log stat - mean| / sd over the simulations, elementwise: how many standard deviations the
    observed statistic sits from what the candidate's own model produces (0 = typical). Both
    directions count: a candidate whose simulated data are far less Gaussian than the measured
    ones misdescribes them as surely as one whose data are far more."""
    with np.errstate(divide="ignore", invalid="ignore"):
      return np.abs(np.log(stat) - self.log_mean) / self.log_sd

  def p_value(self, stat: float) -> float:
    """Two-sided: the fraction of simulations at least as far (in log) from their mean."""
    ls = np.log(self.simulated[np.isfinite(self.simulated) & (self.simulated > 0)])
    dev = np.abs(ls - self.log_mean)
    return float((1 + np.sum(dev >= abs(np.log(stat) - self.log_mean))) / (1 + ls.size))


def calibrate(pots, w0: np.ndarray, fits, valid: np.ndarray, rel_sd: float, center: bool,
              ids: scales_lib.UnitIds | None, n_sim: int, key,
              unit_scale: np.ndarray | None = None, chunk: int = 16) -> list[Calibration]:
  """Simulates every candidate of one family batch `pots` with its fitted (mu, sigma) in `fits`;
  `valid` [n] are the synapses in the analysis; `key` is the same for every batch (common random
  numbers)."""
  w0v = np.asarray(w0, np.float64)[valid]
  log_sd = np.sqrt(lognormal_sigma2(rel_sd))
  makers = [family_maker(p) for p in pots]
  make = makers[0][0]
  if any(m != make for m, _ in makers):
    raise ValueError("calibrate() takes candidates of one family at a time.")
  params = np.asarray([t for _, t in makers], np.float64)
  mu = np.asarray([f[0] for f in fits], np.float64)
  sig = np.asarray([f[1] for f in fits], np.float64)
  if ids is not None:
    rows, n_r = scales_lib.merge_small_units(ids.rows[valid], np.ones(w0v.size, bool),
                                        scales_lib.MIN_COUNT)
    cols, n_c = scales_lib.merge_small_units(ids.cols[valid], np.ones(w0v.size, bool),
                                        scales_lib.MIN_COUNT)
  else:
    rows = cols = np.zeros(w0v.size, np.int64)
    n_r = n_c = 1
  # the unit scales as fitted with (mu, sigma): the simulated change is mu u + sigma u z
  unit = np.ones(w0v.size) if unit_scale is None else np.asarray(unit_scale, np.float64)[valid]
  keys = jax.random.split(key, n_sim)
  per = max(1, min(chunk, int(2e6 // max(w0v.size * len(pots), 1))))
  out = []
  # float32 is ample for simulated statistics (their Monte Carlo spread is ~1e-3 relative) and
  # about twice as fast as float64 on a CPU
  f32 = jnp.float32
  with jax.enable_x64(True):
    args = (jnp.asarray(w0v, f32), jnp.asarray(mu, f32), jnp.asarray(sig, f32),
            jnp.asarray(unit, f32), jnp.asarray(log_sd, f32))
    idx = (jnp.asarray(rows, jnp.int32), jnp.asarray(cols, jnp.int32))
    for start in range(0, n_sim, per):
      kk = keys[start:start + per]
      if kk.shape[0] < per:  # one shape: one compilation per data size
        kk = jnp.concatenate([kk, jnp.repeat(kk[-1:], per - kk.shape[0], 0)])
      st = _simulate(make, jnp.asarray(params, f32), args[0], args[1], args[2], args[3], args[4], kk,
                     idx, bool(center), ids is not None, int(n_r), int(n_c))
      out.append(np.asarray(st)[:, : min(per, n_sim - start)])
  simulated = np.concatenate(out, 1).astype(np.float64)
  return [Calibration.from_simulations(mu[i], sig[i], simulated[i]) for i in range(len(pots))]
