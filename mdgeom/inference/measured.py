"""Fitting the measurement model to measured pairs: which geometry, and with what nuisances?

`fit_measurements` prepares the synapses (exact ties, zeros and sign flips counted; units merged
where they are too small; at most `max_synapses` of them, drawn at random), then for each family
of candidate geometries computes the profile likelihood of its shape parameter with every
nuisance (drift, change size, per-unit scales, gain, noise, silent fraction) maximised
(`mdgeom.inference.profile`), and the nuisances' own estimates and intervals at the best fit.

Families: the p-norms, p in [1, p_max] with p = 1 negative entropy (always, when any p-norm or
negative entropy is a candidate); hypentropy over beta (when asked for); each other potential
as a single point. docs/inference.md explains the model and every reported quantity.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize, stats

from mdgeom import scales as scales_lib
from mdgeom.inference import likelihood as lik
from mdgeom.inference import mle, profile
from mdgeom.inference.io import InferenceError

P_STEP = 0.5         # the p grid of the rough scan
P_LIMIT = 8.0        # the p scan grows up to this when the interval reaches its end
BETA_DECADES = (-3.0, 2.0)  # hypentropy's beta, relative to the median |BEFORE|
BETA_STEP = 1.0      # decades
ROUGH_SYNAPSES = 2000  # the rough scan of a profile runs on this many synapses at random
QUADRATURE = 5       # K x K nodes of the noise integral (K = 4 leaves a non-smooth profile at 15% noise)


@dataclasses.dataclass
class Prepared:
  """The synapses the likelihood sees, and what was left out and why."""

  pairs: lik.Pairs
  n_rows: int
  n_cols: int
  n_total: int          # synapses given
  n_used: int           # in the likelihood
  n_unchanged: int      # exactly equal before and after (left out)
  n_zero: int           # exactly zero before or after (left out; rule out sign-preserving ones)
  n_flips: int          # changed sign (in the likelihood; rule out sign-preserving ones)
  n_repeat_flips: int   # repeated baseline of the other sign (left out)
  subsampled: bool
  unit_note: str
  rows: np.ndarray | None  # unit of each used synapse (for clustering), or None
  cols: np.ndarray | None
  rough_pairs: lik.Pairs | None = None  # a random subset for the rough scan (None: all)


def prepare(w0: np.ndarray, w: np.ndarray, ids: scales_lib.UnitIds | None = None,
            repeat: np.ndarray | None = None, max_synapses: int | None = 50_000,
            seed: int = 0, min_count: int = scales_lib.MIN_COUNT) -> Prepared:
  """Flat float64 pairs -> the likelihood's inputs (exclusions counted; units merged)."""
  w0 = np.asarray(w0, np.float64).ravel()
  w = np.asarray(w, np.float64).ravel()
  changed = w0 != w
  zero = changed & ((w0 == 0) | (w == 0))
  keep = changed & ~zero
  n_rep_flip = 0
  if repeat is not None:
    repeat = np.asarray(repeat, np.float64).ravel()
    bad = keep & ((repeat == 0) | (np.sign(repeat) != np.sign(w0)))
    n_rep_flip = int(bad.sum())
    keep &= ~bad
  idx = np.flatnonzero(keep)
  subsampled = False
  if max_synapses is not None and idx.size > max_synapses:
    idx = np.sort(np.random.default_rng(seed).choice(idx, max_synapses, replace=False))
    subsampled = True
  rows = cols = None
  n_r = n_c = 0
  note = ""
  if ids is not None and idx.size:
    r, n_r = scales_lib.merge_small_units(ids.rows[idx], np.ones(idx.size, bool), min_count)
    c, n_c = scales_lib.merge_small_units(ids.cols[idx], np.ones(idx.size, bool), min_count)
    if n_r <= 1 and n_c <= 1:
      note = (f"no unit has {min_count} or more synapses in both directions "
              f"({ids.n_rows} row and {ids.n_cols} column units): analysed as one pool.")
      n_r = n_c = 0
    else:
      rows, cols = r.astype(np.int64), c.astype(np.int64)
      note = (f"per-unit scales a_i b_j over {n_r} row and {n_c} column units (units with fewer "
              f"than {min_count} synapses share one scale).")
  a, b = w0[idx], w[idx]
  l0, l1 = np.log(np.abs(a)), np.log(np.abs(b))
  if repeat is not None:
    lb = np.log(np.abs(repeat[idx]))
    rb = lb - l0
  else:
    lb = rb = np.zeros_like(l0)
  with jax.enable_x64(True):
    ones = np.ones_like(l0)
    pairs = lik.Pairs(*(jnp.asarray(v, jnp.float64) for v in (
        np.sign(a), np.sign(b), l0, l1, rb, lb)),
        jnp.asarray(rows if rows is not None else np.zeros(idx.size), jnp.int32),
        jnp.asarray(cols if cols is not None else np.zeros(idx.size), jnp.int32),
        jnp.asarray(np.mean(l0) * ones), jnp.asarray(np.var(l0) * ones))
  rough = None
  n_rough = max(ROUGH_SYNAPSES, 10 * (n_r + n_c))
  if idx.size > 1.5 * n_rough:
    pick = np.sort(np.random.default_rng(seed + 1).choice(idx.size, n_rough, replace=False))
    rough = lik.Pairs(*(v[pick] for v in pairs))
  return Prepared(pairs, n_r, n_c, int(w0.size), int(idx.size), int((~changed).sum()),
                  int(zero.sum()), int(np.sum(np.sign(a) != np.sign(b))), n_rep_flip,
                  subsampled, note, rows, cols, rough)


@dataclasses.dataclass
class FamilyFit:
  """One family's profile and its best fit, in the family's own units."""

  family: str                  # "pnorm", "hypentropy" or a potential's name
  shape: float | None          # p, beta, or None for a single potential
  interval: tuple | None       # statistical interval of the shape (before the resolution)
  loglik: float                # maximised log-likelihood
  n_shape: int                 # shape parameters (0 or 1)
  profile: Any                 # profile.Profile, or None
  x: np.ndarray                # parameters at the maximum
  per_synapse: np.ndarray
  spec: Any
  free: np.ndarray
  pairs: Any = None

  def nuisances(self) -> dict:
    x = self.x
    return {"drift": float(x[mle.MU]), "change_sd": float(np.exp(x[mle.LOGS])),
            "gain": float(np.exp(x[mle.LOGG])),
            "noise_log_sd": float(lik.sigma_of(x[mle.RHO])) if self.spec.noisy else 0.0,
            "silent": float(1 / (1 + np.exp(-x[mle.SILENT]))) if self.spec.silent else 0.0}


class Settings(NamedTuple):
  noise: Any          # "auto" or the relative SD of the multiplicative noise
  gain: Any           # "auto" or a fixed gain
  silent: bool        # estimate a fraction of silent synapses (with noise)
  level: float
  k: int = QUADRATURE


def _spec(prep: Prepared, family, settings: Settings) -> mle.Spec:
  noisy = settings.noise == "auto" or float(settings.noise) > 0 or bool(
      np.any(np.asarray(prep.pairs.rb) != 0))
  return mle.Spec(family, bool(noisy), bool(np.any(np.asarray(prep.pairs.lb) != 0)), settings.k,
                  prep.n_rows, prep.n_cols, bool(noisy and settings.silent))


def log_noise_sd(rel_sd: float) -> float:
  """The SD of log e for multiplicative noise e of relative SD rel_sd."""
  return float(np.sqrt(np.log1p(rel_sd ** 2)))


def relative_noise(log_sd: float) -> float:
  """The relative SD of e for log e of SD log_sd (the inverse of `log_noise_sd`)."""
  return float(np.sqrt(np.expm1(log_sd ** 2)))


def _setup(prep, family, settings):
  spec = _spec(prep, family, settings)
  fixed_sigma = None if settings.noise == "auto" else log_noise_sd(float(settings.noise))
  free = mle.free_mask(spec, fit_gain=settings.gain == "auto", fit_noise=fixed_sigma is None)
  gain = 0.0 if settings.gain == "auto" else float(np.log(float(settings.gain)))

  def init(theta, pairs=None, noise_first=False):
    """Starting values by moments; noise_first: most of the change put down to noise and silent
    synapses (the likelihood's other mode)."""
    pairs = prep.pairs if pairs is None else pairs
    x = mle.initial_params(spec, pairs, theta, fixed_sigma)
    x[mle.LOGG] = gain
    if fixed_sigma is not None and spec.noisy:
      x[mle.RHO] = np.log(max(fixed_sigma - lik.SIGMA_MIN, 1e-12)) if fixed_sigma > lik.SIGMA_MIN \
          else mle.RHO_BOUNDS[0]
    if noise_first and spec.noisy:
      if fixed_sigma is None:
        ratio = np.asarray(pairs.l1 - pairs.l0)
        sd = float(np.std(ratio)) / np.sqrt(2.0)
        x[mle.RHO] = float(np.clip(np.log(max(sd - lik.SIGMA_MIN, 1e-12)), *mle.RHO_BOUNDS))
      if spec.silent:
        x[mle.SILENT] = np.log(0.9 / 0.1)
      x[mle.LOGS] -= 1.0
    return x

  return spec, free, init


def fit_pnorm(prep: Prepared, settings: Settings, p_range=(1.0, 4.0),
              named=(1.0, 2.0, 3.0)) -> FamilyFit:
  """The p-norm family's profile over p (p = 1: negative entropy). Sign flips rule p = 1 out,
  and the scan then starts just above it."""
  spec, free, init = _setup(prep, lik.PNORM, settings)
  lo = p_range[0] - 1.0
  if prep.n_flips:
    lo = max(lo, 1e-3)
  hi = p_range[1] - 1.0
  while True:
    grid = np.arange(np.floor(lo / P_STEP) * P_STEP, hi + 1e-9, P_STEP)
    grid = np.unique(np.clip(np.append(grid, [lo, hi]), lo, hi))
    extra = [p - 1.0 for p in named if lo <= p - 1.0 <= hi]
    prof = profile.profile(spec, prep.pairs, free, grid, init, start=min(max(1.0, lo), hi),
                           level=settings.level, clusters=prep.rows is not None, extra=extra,
                           lower=lo, upper=hi, name="pnorm", rough_pairs=prep.rough_pairs)
    if prof.theta_hat < hi - P_STEP or hi >= P_LIMIT - 1.0:
      break
    hi = min(hi + 2.0, P_LIMIT - 1.0)  # the maximum is at the end of the scan: grow it
  return FamilyFit("pnorm", prof.theta_hat + 1.0,
                   (prof.interval[0] + 1.0, prof.interval[1] + 1.0), prof.loglik_hat, 1, prof,
                   prof.x_hat, prof.per_synapse, spec, free, prep.pairs)


def fit_hypentropy(prep: Prepared, settings: Settings, interval: bool = False) -> FamilyFit:
  """Hypentropy's profile over log beta, beta from 10^-3 to 10^2 times the median |BEFORE|: its
  maximum (and, with `interval`, the interval of beta)."""
  spec, free, init = _setup(prep, lik.HYPENTROPY, settings)
  ref = float(np.median(np.asarray(prep.pairs.l0)))
  grid = ref + np.log(10.0) * np.arange(BETA_DECADES[0], BETA_DECADES[1] + 1e-9, BETA_STEP)
  prof = profile.profile(spec, prep.pairs, free, grid, init, start=ref, level=settings.level,
                         clusters=prep.rows is not None, lower=grid[0], upper=grid[-1],
                         name="hypentropy", interval=interval, rough_pairs=prep.rough_pairs)
  return FamilyFit("hypentropy", float(np.exp(prof.theta_hat)),
                   (float(np.exp(prof.interval[0])), float(np.exp(prof.interval[1]))),
                   prof.loglik_hat, 1, prof, prof.x_hat, prof.per_synapse, spec, free,
                   prep.pairs)


def fit_fixed(prep: Prepared, settings: Settings, pot) -> FamilyFit:
  """One potential without a shape parameter: its nuisances maximised from two starts."""
  spec, free, init = _setup(prep, lik.fixed(pot), settings)
  best = None
  x0 = init(0.0)
  starts = [x0]
  if spec.noisy and free[mle.RHO]:
    alt = x0.copy()
    alt[mle.RHO] = mle.RHO_BOUNDS[0]
    starts.append(alt)
  for s in starts:
    try:
      fit = mle.maximise(spec, s, prep.pairs, free)
    except FloatingPointError:
      continue
    x, f = fit.x, fit.loglik
    if best is None or f > best[1]:
      best = (x, f)
  if best is None or not np.isfinite(best[1]):
    raise InferenceError(f"candidate {pot.name}: its likelihood is not finite on these data "
                         "(its mirror map or second derivative fails on these weights).")
  x, f = best
  return FamilyFit(pot.name, None, None, f, 0, None, x, np.asarray(
      mle.per_synapse(spec, x, prep.pairs)), spec, free, prep.pairs)


def no_change(prep: Prepared, settings: Settings) -> tuple[float, float, float]:
  """The log-likelihood of 'nothing changed': AFTER = gain x BEFORE up to the measurement noise
  (every synapse silent), maximised over the gain and the noise. Given v0 the log-ratio is
  Gaussian (`lik.noise_prior`), so this is a two-parameter fit. Returns (log-likelihood, gain,
  noise log-SD); -inf when a weight changed sign or the noise is nil."""
  p = prep.pairs
  if np.any(np.asarray(p.s0) != np.asarray(p.s1)):
    return -np.inf, float("nan"), float("nan")
  repeat = bool(np.any(np.asarray(p.lb) != 0))
  raw = np.asarray(p.l1 - p.l0)

  def parts(rho):
    with jax.enable_x64(True):
      s2, m, m0, v0, v1, extra = lik.noise_prior(jnp.asarray(rho, jnp.float64), p, repeat)
      return (np.asarray(raw - m + m0), np.asarray(v0 + v1),
              np.asarray(extra - p.l1) * np.ones_like(raw))

  def best_gain(rho):
    r, var, _ = parts(rho)
    if settings.gain != "auto":
      return float(np.log(float(settings.gain)))
    return float(np.sum(r / var) / np.sum(1.0 / var))

  def ll(rho, logg):
    r, var, rest = parts(rho)
    return float(np.sum(-0.5 * (r - logg) ** 2 / var - 0.5 * np.log(2 * np.pi * var) + rest))

  if settings.noise == "auto":
    sd = float(np.std(raw)) / np.sqrt(2.0)
    if not sd > 0:
      return -np.inf, float("nan"), 0.0
    lo, hi = np.log(max(sd / 20 - lik.SIGMA_MIN, 1e-12)), np.log(2 * sd)
    res = optimize.minimize_scalar(lambda r: -ll(r, best_gain(r)), bounds=(lo, hi),
                                   method="bounded", options={"xatol": 1e-6})
    rho = float(res.x)
  else:
    sig = log_noise_sd(float(settings.noise))
    if not sig > lik.SIGMA_MIN:
      return -np.inf, float("nan"), 0.0
    rho = float(np.log(sig - lik.SIGMA_MIN))
  logg = best_gain(rho)
  return ll(rho, logg), float(np.exp(logg)), float(lik.sigma_of(rho))


def nuisance_wald(fam: FamilyFit, prep: Prepared, index: int) -> tuple[float, float]:
  """(estimate, robust standard error) of one nuisance parameter at the family's maximum (the
  shape parameter held fixed)."""
  free = fam.free.copy()
  if not free[index]:
    return float(fam.x[index]), float("nan")
  rob = mle.robust_variance(fam.spec, fam.x, prep.pairs, free, prep.rows is not None,
                            index=index)
  return float(fam.x[index]), float(np.sqrt(max(rob.robust_var, rob.model_var, 0.0)))


def noise_profile(fam: FamilyFit, prep: Prepared, level: float) -> dict:
  """The noise SD's interval and the best shape at each end of it (how the verdict moves over
  the plausible noise range). The interval is Wald's on log sigma with the sandwich variance
  (the shape free too); when sigma sits at zero, its upper end comes from the profile
  likelihood. The shape at each end follows the optimum's tangent (implicit function theorem).
  Returns {"lower": (sigma, theta), "upper": (sigma, theta)} (theta None without a shape)."""
  spec, pairs, x = fam.spec, prep.pairs, np.asarray(fam.x)
  free = fam.free.copy()
  free[mle.RHO] = True
  free[mle.THETA] = fam.n_shape > 0
  rob = mle.robust_variance(spec, x, pairs, free, prep.rows is not None, index=mle.RHO)
  z = float(stats.norm.ppf(1 - level / 2))
  rho = float(x[mle.RHO])
  sigma = float(lik.sigma_of(rho))
  se_rho = float(np.sqrt(max(rob.robust_var, rob.model_var, 0.0)))
  if sigma > 20 * lik.SIGMA_MIN and np.isfinite(se_rho):
    se_log = se_rho * (sigma - lik.SIGMA_MIN) / sigma
    lo, hi = sigma * np.exp(-z * se_log), sigma * np.exp(z * se_log)
  else:
    lo, hi = 0.0, _noise_upper(fam, prep, level)
  out = {}
  for side, s_end in (("lower", lo), ("upper", hi)):
    rho_end = float(np.log(max(s_end - lik.SIGMA_MIN, 1e-12)))
    theta = None
    if fam.n_shape and np.isfinite(rob.tangent[mle.THETA]):
      theta = float(x[mle.THETA] + (rho_end - rho) * rob.tangent[mle.THETA])
      if fam.profile is not None:
        theta = float(np.clip(theta, *fam.profile.bounds))
    out[side] = (float(s_end), theta)
  return out


def check_noise(fam: FamilyFit, prep: Prepared, level: float) -> dict:
  """A given noise level against the data: the fit with the noise (and the shape) free, from the
  given one and from a noise-dominated start, and the likelihood-ratio test of the given level
  within this family (`loglik`: the free fit's value, for comparisons across families)."""
  free = fam.free.copy()
  free[mle.RHO] = True
  free[mle.THETA] = fam.n_shape > 0
  bounds = fam.profile.bounds if fam.profile is not None else (-np.inf, np.inf)
  # two starts: the given noise, and all of the log-ratio's spread put down to noise (a start
  # at the given level alone can stay in its local optimum and miss a larger noise)
  alt = np.array(fam.x)
  sd = float(np.std(np.asarray(prep.pairs.l1 - prep.pairs.l0))) / np.sqrt(2.0)
  alt[mle.RHO] = float(np.clip(np.log(max(sd - lik.SIGMA_MIN, 1e-12)), *mle.RHO_BOUNDS))
  alt[mle.LOGS] -= 1.0
  fit = None
  for x0 in (fam.x, alt):
    try:
      f = mle.maximise(fam.spec, x0, prep.pairs, free, theta_bounds=bounds)
    except FloatingPointError:
      continue
    if fit is None or f.loglik > fit.loglik:
      fit = f
  if fit is None:
    return {"noise": float("nan"), "lr": float("nan"), "p_value": float("nan"),
            "loglik": float("nan")}
  lr = 2.0 * max(fit.loglik - fam.loglik, 0.0)
  kappa = fam.profile.kappa if fam.profile is not None else 1.0
  return {"noise": relative_noise(float(lik.sigma_of(fit.x[mle.RHO]))), "lr": lr,
          "p_value": float(stats.chi2.sf(lr / kappa, 1)), "loglik": float(fit.loglik)}


def _noise_upper(fam: FamilyFit, prep: Prepared, level: float) -> float:
  """The upper end of the noise SD's interval when its estimate is zero: the largest sigma on a
  doubling grid (0.5%, 1%, 2%, ...) whose likelihood ratio (shape and nuisances refitted) stays
  below the chi-square quantile, refined by two bisections."""
  spec, pairs = fam.spec, prep.pairs
  free = fam.free.copy()
  free[mle.RHO] = False
  free[mle.THETA] = fam.n_shape > 0
  crit = float(stats.chi2.ppf(1 - level, 1))
  bounds = fam.profile.bounds if fam.profile is not None else (-np.inf, np.inf)
  kappa = fam.profile.kappa if fam.profile is not None else 1.0

  def lr(sig, x0):
    x = np.array(x0)
    x[mle.RHO] = np.log(max(sig - lik.SIGMA_MIN, 1e-12))
    fit = mle.maximise(spec, x, pairs, free, theta_bounds=bounds)
    return 2.0 * max(fam.loglik - fit.loglik, 0.0) / kappa, fit.x

  inside, x_in, outside = 0.0, fam.x, None
  sig = 0.005
  while sig <= 1.0:
    value, x_t = lr(sig, x_in)
    if value > crit:
      outside = sig
      break
    inside, x_in = sig, x_t
    sig *= 2.0
  if outside is None:
    return float(inside)
  for _ in range(2):
    mid = 0.5 * (inside + outside)
    value, x_t = lr(mid, x_in)
    if value <= crit:
      inside, x_in = mid, x_t
    else:
      outside = mid
  return float(inside)
