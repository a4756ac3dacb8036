"""The Delta-CDF statistic of a dual change, its paired bootstrap, its Gaussian null, intervals.

Statistic (docs/theory.md, "Delta-CDF"): the paper's grid Delta-CDF of the change divided by its
standard deviation, optionally centred by its mean (robust to a net drift of the change) and
optionally after dividing by per-unit scales (`mdgeom.scales`). Float64 throughout.

Bootstrap: a Poisson bootstrap (each synapse enters a resample Poisson(1) times), with the same
counts for every candidate, so that differences between candidates are paired: two candidates
whose changes are nearly the same function of the data get nearly the same resampled statistic,
and their difference is resolved far more finely than either statistic. Up to `EXACT_MAX`
synapses each synapse has its own count, and each resample's statistic is exact (sorted sample,
cumulative counts at the resample's own grid thresholds). Above, synapses fall into `GROUPS`
random groups that share a count (a grouped bootstrap, consistent for i.i.d. data) and each
group's values are histogrammed on a fine grid of `FINE_BINS` bins, so a resample is one matrix
product [resamples x groups] @ [groups x bins] and memory stays O(groups x bins) whatever the
number of synapses; thresholds inside a fine bin are interpolated linearly (the bins hold tens of
synapses each at these sizes, so the error is far below the bootstrap's own spread).

Intervals: the bootstrap distribution of a distance to the Gaussian is shifted upwards (a
resample adds sampling noise to a statistic that is already mostly noise when the fit is good),
so a percentile interval can miss its own estimate. `centred_interval` re-centres the bootstrap
distribution on the estimate (the median of the resamples is aligned with the observed value):
[est - (median - q_lo), est + (q_hi - median)], clipped at 0; it always contains the estimate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from mdgeom import analysis
from mdgeom import scales as scales_lib

EXACT_MAX = 20_000   # synapses up to which the bootstrap resamples each synapse exactly
GROUPS = 1024        # groups of the grouped bootstrap above EXACT_MAX
FINE_BINS = 4096     # fine histogram bins of the grouped bootstrap
NULL_BUDGET = 2e8    # (null draws x synapses) above which fewer null draws are used
NULL_BUDGET_UNITS = 5e7
MIN_NULL = 50
GRID = analysis.GRID
STEP = analysis.GRID_STEP
PHI = analysis.GRID_NORMAL_CDF
DEGENERATE_RTOL = 1e-9  # spread below this fraction of the largest |value|: a constant change


def delta_cdf_rows(x: np.ndarray, valid: np.ndarray, center: bool,
                   scaled: bool = True) -> np.ndarray:
  """The grid Delta-CDF of each row of x [rows, n] over its valid entries, float64. NaN where a
  row has fewer than 2 valid values or no spread. scaled=False compares the values with N(0, 1)
  as they are (for a change already standardised by a model)."""
  x = np.asarray(x, np.float64)
  valid = np.asarray(valid, bool) & np.isfinite(x)
  with jax.enable_x64(True):
    if scaled:
      below, n, s = analysis.batched_grid_counts(jnp.asarray(np.where(valid, x, 0.0)),
                                                  jnp.asarray(valid), bool(center))
    else:
      below, n, s = _unscaled_counts(jnp.asarray(np.where(valid, x, 0.0)), jnp.asarray(valid))
  out = analysis.delta_cdf_from_counts(below, n)
  s = np.asarray(s)
  n = np.asarray(n)
  return np.where((n >= 2) & (s > 0) & np.isfinite(s), out, np.nan)


@jax.jit
def _unscaled_counts(x, valid):
  return jax.vmap(lambda a, b: analysis.scaled_grid_counts(a, b, False, False))(x, valid)


def is_degenerate(x: np.ndarray, center: bool) -> bool:
  """A change with no spread (every valid value equal up to rounding): no scale to divide by.
  Uncentred, a constant change is degenerate too (its standardised value is a rounding artefact)."""
  v = x[np.isfinite(x)]
  if v.size < 2:
    return True
  spread = float(np.std(v))
  return not spread > DEGENERATE_RTOL * float(np.max(np.abs(v)))


def prepare(d: np.ndarray, valid: np.ndarray, ids: scales_lib.UnitIds | None) -> np.ndarray:
  """The change the statistic sees: d (or d / (a_i b_j) with unit ids), NaN where invalid."""
  return scales_lib.normalise(d, ids, valid)


class Bootstrap:
  """Poisson bootstrap counts shared by every candidate (paired resamples)."""

  def __init__(self, n: int, n_boot: int, rng: np.random.Generator,
               exact_max: int = EXACT_MAX, groups: int = GROUPS, fine_bins: int = FINE_BINS):
    self.n, self.n_boot = int(n), int(n_boot)
    self.fine_bins = fine_bins
    if n <= exact_max:
      self.mode = "exact"
      self.counts = rng.poisson(1.0, (n_boot, n)).astype(np.uint8)
    else:
      self.mode = "grouped"
      self.groups = groups
      self.group = rng.integers(0, groups, n)
      self.counts = rng.poisson(1.0, (n_boot, groups)).astype(np.float64)

  def statistics(self, x: np.ndarray, center: bool, scaled: bool = True,
                 chunk: int = 32) -> np.ndarray:
    """The statistic of every resample [n_boot] for a change x [n] (NaN = not in the sample);
    scaled=False: each resample compared with N(0, 1) as it is (model-standardised values)."""
    x = np.asarray(x, np.float64).ravel()
    if x.size != self.n:
      raise ValueError(f"bootstrap built for {self.n} synapses, got {x.size}.")
    v = np.isfinite(x)
    if v.sum() < 2:
      return np.full(self.n_boot, np.nan)
    if self.mode == "exact":
      return self._exact(x, v, center, chunk, scaled)
    return self._grouped(x, v, center, chunk, scaled)

  def _exact(self, x, v, center, chunk, scaled=True):
    idx = np.flatnonzero(v)
    order = np.argsort(x[idx], kind="stable")
    perm = idx[order]
    xs = x[perm]
    mu = xs.mean()
    xc = xs - mu  # shifted for the variance (cancellation-free); thresholds shifted back below
    out = np.empty(self.n_boot)
    for start in range(0, self.n_boot, chunk):
      w = self.counts[start:start + chunk][:, perm].astype(np.float64)
      nstar = w.sum(1)
      m = (w @ xc) / nstar
      var = (w @ (xc * xc) - nstar * m * m) / (nstar - 1)
      s = np.sqrt(np.maximum(var, 0.0))
      shift = (m + mu) if center else np.zeros_like(m)
      if not scaled:
        s, shift = np.ones_like(s), np.zeros_like(m)
      thresholds = GRID[None, :] * s[:, None] + shift[:, None]
      pos = np.searchsorted(xs, thresholds.ravel(), side="left").reshape(thresholds.shape)
      cum = np.concatenate([np.zeros((w.shape[0], 1)), np.cumsum(w, 1)], 1)
      below = np.take_along_axis(cum, pos, 1)
      out[start:start + w.shape[0]] = np.where(
          s > 0, np.abs(below / nstar[:, None] - PHI).sum(1) * STEP, np.nan)
    return out

  def _grouped(self, x, v, center, chunk, scaled=True):
    xv = x[v]
    g = self.group[v]
    mu = xv.mean()
    sd = xv.std() if scaled else 1.0
    c0 = mu if center and scaled else 0.0
    lo, hi = c0 - 7.0 * sd, c0 + 7.0 * sd
    m_bins = self.fine_bins
    width = (hi - lo) / m_bins
    b = np.floor((xv - lo) / width)
    b = np.clip(b, -1, m_bins).astype(np.int64) + 1  # 0 = below lo, m_bins + 1 = above hi
    h = np.bincount(g * (m_bins + 2) + b, minlength=self.groups * (m_bins + 2))
    h = h.reshape(self.groups, m_bins + 2).astype(np.float32)
    xc = xv - mu
    n_g = np.bincount(g, minlength=self.groups).astype(np.float64)
    s1_g = np.bincount(g, xc, minlength=self.groups)
    s2_g = np.bincount(g, xc * xc, minlength=self.groups)
    out = np.empty(self.n_boot)
    for start in range(0, self.n_boot, chunk):
      c = self.counts[start:start + chunk]
      hist = (c.astype(np.float32) @ h).astype(np.float64)
      nstar = c @ n_g
      m = (c @ s1_g) / nstar
      var = (c @ s2_g - nstar * m * m) / (nstar - 1)
      s = np.sqrt(np.maximum(var, 0.0))
      shift = (m + mu) if center else np.zeros_like(m)
      if not scaled:
        s, shift = np.ones_like(s), np.zeros_like(m)
      thresholds = GRID[None, :] * s[:, None] + shift[:, None]
      u = (thresholds - lo) / width
      k = np.clip(np.floor(u), 0, m_bins - 1).astype(np.int64)
      frac = np.clip(u - k, 0.0, 1.0)
      cum = np.cumsum(hist, 1)
      below = np.take_along_axis(cum, k, 1) + frac * np.take_along_axis(hist, k + 1, 1)
      out[start:start + c.shape[0]] = np.where(
          s > 0, np.abs(below / nstar[:, None] - PHI).sum(1) * STEP, np.nan)
    return out


def null_statistics(n: int, n_null: int, rng: np.random.Generator, center: bool,
                    ids: scales_lib.UnitIds | None = None, chunk: int = 64) -> np.ndarray:
  """The statistic of Gaussian changes of the same size and unit structure: its law under the
  hypothesis that the candidate's dual change is Gaussian (i.i.d. up to the unit scales).

  Without unit scales the statistic is scale- and (centred) location-free, so N(0, 1) draws serve
  every candidate. With unit ids each draw goes through the same per-unit normalisation as the
  data. The number of draws is capped so that draws x synapses stays within NULL_BUDGET
  (NULL_BUDGET_UNITS with unit scales), with at least MIN_NULL draws.
  """
  budget = NULL_BUDGET_UNITS if ids is not None else NULL_BUDGET
  n_eff = int(max(MIN_NULL, min(n_null, budget // max(n, 1))))
  out = np.empty(n_eff)
  chunk = int(max(1, min(chunk, 4e6 // max(n, 1))))  # memory: chunk x n values at a time
  for start in range(0, n_eff, chunk):
    rows = min(chunk, n_eff - start)
    z = rng.standard_normal((rows, n))
    if ids is not None:
      z = np.stack([scales_lib.unit_scales(r, ids).z for r in z])
    out[start:start + rows] = delta_cdf_rows(z, np.isfinite(z), center)
  return out


def upper_p_value(null: np.ndarray, observed: float) -> float:
  """(1 + #{null >= observed}) / (1 + #null): uniform under the null, never 0."""
  null = null[np.isfinite(null)]
  return float((1 + np.sum(null >= observed)) / (1 + null.size))


def centred_interval(estimate: float, boot: np.ndarray, level: float,
                     lower_bound: float | None = 0.0) -> list[float]:
  """The bootstrap interval re-centred on the estimate (contains it by construction)."""
  b = boot[np.isfinite(boot)]
  if not np.isfinite(estimate) or b.size < 2:
    return [float("nan"), float("nan")]
  q_lo, med, q_hi = np.percentile(b, [100 * (1 - level) / 2, 50, 100 * (1 + level) / 2])
  lo = estimate - (med - q_lo)
  if lower_bound is not None:
    lo = max(lo, lower_bound)
  return [float(lo), float(estimate + (q_hi - med))]


def paired_comparison(score: np.ndarray, boot: np.ndarray, best: int) -> tuple[np.ndarray,
                                                                             np.ndarray]:
  """For each candidate c: the bootstrap standard error of score_c - score_best over the same
  resamples, and the one-sided p-value that c is no worse than the best (normal approximation:
  p = P(Z > diff / se)). Returns (p_worse, se)."""
  diff = score - score[best]
  db = boot - boot[best][None, :]
  with np.errstate(invalid="ignore"):
    ok = np.isfinite(db)
    cnt = ok.sum(1)
    mean = np.where(cnt > 0, np.where(ok, db, 0.0).sum(1) / np.maximum(cnt, 1), np.nan)
    var = np.where(ok, (db - mean[:, None]) ** 2, 0.0).sum(1) / np.maximum(cnt - 1, 1)
  se = np.sqrt(var)
  with np.errstate(divide="ignore", invalid="ignore"):
    p = stats.norm.sf(diff / se)
  p = np.where(se > 0, p, np.where(diff <= 0, 1.0, 0.0))
  p = np.where(np.isfinite(diff), p, np.nan)
  p[best] = 1.0
  return p, se


def confidence_set_p_values(score: np.ndarray, boot: np.ndarray, n: int) -> np.ndarray:
  """For each candidate c, the p-value of "c is among the best" against all others at once.

  Hansen's test of superior predictive ability, used as a model confidence set: with
  d_ck = score_c - score_k and its bootstrap standard error se_ck over the same resamples,
  t_c = max_k d_ck / se_ck, and its null law is the bootstrap of
  max_k (d*_ck - d_ck + g_ck) / se_ck, where g_ck = d_ck for candidates k that c clearly beats
  (d_ck / se_ck < -sqrt(2 log log n)) and 0 otherwise. Taking the maximum over k accounts for the
  best candidate having been selected from the data (comparing with the observed best alone
  would reject the true candidate too often); g keeps clearly worse candidates from inflating
  the maximum. p_c = (1 + #{t*_c >= t_c}) / (1 + B). Candidates with p_c >= level form the set
  that the data cannot tell apart from the best.
  """
  c_n, b_n = boot.shape
  ok = np.isfinite(boot).all(0)
  boot = boot[:, ok]
  thresh = -np.sqrt(2.0 * np.log(max(np.log(max(n, 3)), 1.0 + 1e-9)))
  p = np.full(c_n, np.nan)
  if boot.shape[1] < 2:
    return p
  for c in range(c_n):
    d = score[c] - score                   # [k]
    db = boot[c][None, :] - boot           # [k, B]
    se = np.std(db, axis=1, ddof=1)
    use = (np.arange(c_n) != c) & (se > 0) & np.isfinite(d)
    if not use.any():
      p[c] = 1.0
      continue
    t = np.max(d[use] / se[use])
    g = np.where(d / np.where(se > 0, se, 1.0) < thresh, d, 0.0)
    tb = np.max((db[use] - d[use, None] + g[use, None]) / se[use, None], axis=0)
    p[c] = (1 + np.sum(tb >= t)) / (1 + tb.size)
  return p
