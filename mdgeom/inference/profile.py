"""Profile likelihoods of the shape parameter, their robust intervals, and comparisons between
families of geometries.

For a family (the p-norms with p = 1 for negative entropy, or hypentropy's beta) the profile
log-likelihood l(theta) maximises the measurement likelihood over every nuisance (drift, change
size, gain, noise, per-unit scales) at each theta. It is evaluated on a grid from the middle
outwards (each fit starts from its neighbour's optimum), refined by golden-section search around
its maximum, and the interval

    { theta : 2 (l(theta_hat) - l(theta)) / kappa <= chi2_1(1 - level) }

is found by bisection at both ends. kappa = (sandwich variance) / (model variance) of theta,
never below 1: under an exact model the likelihood-ratio interval, and when the Gaussian model
is only approximately right (trained networks, correlated synapses) an interval widened by the
factor the data themselves measure (the adjusted profile likelihood of Chandler and Bate 2007).
The interval is the hull of every point that passes, so it is contiguous by construction.

Families are compared by Vuong's test for non-nested models on the per-synapse log-likelihoods
at each family's optimum, with the variance of the summed difference clustered by units and one
log-likelihood unit charged per shape parameter (AIC).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy import stats

from mdgeom.inference import likelihood as lik
from mdgeom.inference import mle

ROUGH_STEPS = 20   # Newton steps (BHHH) of a rough fit
MAX_STEPS = 8      # Newton steps on theta for the maximum and for each end
THETA_TOL = 2e-3   # precision of the maximum and of the ends in theta
END_TOL = 0.03     # |sqrt(LR) - sqrt(chi2 quantile)| at which an end is found


@dataclasses.dataclass
class Profile:
  """A family's profile likelihood and what is read off it (theta in the family's own units:
  p - 1 for p-norms, log beta for hypentropy)."""

  family: str
  thetas: np.ndarray        # every theta at which the profile was evaluated, sorted
  loglik: np.ndarray        # the profile there
  params: list              # the optimal parameter vector at each
  theta_hat: float
  loglik_hat: float
  x_hat: np.ndarray
  kappa: float              # robust / model variance of theta at the maximum (>= 1 used)
  se_model: float
  se_robust: float
  interval: tuple[float, float]
  critical: float           # the threshold of 2 (l_hat - l) / kappa
  exact: np.ndarray         # whether each value is an exact fit (else a rough one: a lower
  #                           bound of the profile, used only far from the interval)
  per_synapse: np.ndarray   # log-likelihood of every synapse at the maximum
  at_edge: str = ""         # "upper"/"lower" when the interval reaches the end of the scan
  bounds: tuple = (-np.inf, np.inf)  # the range theta was scanned in
  scan: object = dataclasses.field(default=None, repr=False)  # the fits, for exact_value

  def exact_value(self, theta: float) -> float:
    """The profile at theta by an exact fit (from the nearest exact fit, moved along its
    tangent, with its Hessian updated by BFGS)."""
    return float(self.scan.exact(theta).loglik)

  def lr(self, theta: float) -> float:
    """The adjusted likelihood-ratio statistic 2 (l_hat - l(theta)) / kappa at an evaluated
    theta (NaN if it was not evaluated)."""
    k = np.flatnonzero(np.isclose(self.thetas, theta, rtol=0, atol=1e-9))
    if not k.size:
      return float("nan")
    return float(2.0 * (self.loglik_hat - self.loglik[k[0]]) / self.kappa)

  def p_value(self, theta: float) -> float:
    v = self.lr(theta)
    return float(stats.chi2.sf(max(v, 0.0), 1)) if np.isfinite(v) else float("nan")

  def params_at(self, theta: float) -> np.ndarray:
    k = int(np.argmin(np.abs(self.thetas - theta)))
    return self.params[k]


class _Scan:
  """The fits of one profile, theta -> mle.Fit. Rough fits (BHHH Hessian, loose tolerance)
  locate the maximum; exact fits (exact Hessian with theta's row, tight tolerance) give every
  value an interval or p-value is read from, with the profile's slope and curvature, and start
  from the nearest exact fit moved along its tangent (implicit function theorem)."""

  def __init__(self, spec, pairs, free, init, bounds):
    self.spec, self.pairs, self.free, self.init, self.bounds = spec, pairs, free, init, bounds
    self.fits: dict[float, mle.Fit] = {}
    self.is_exact: dict[float, bool] = {}

  def _run(self, theta, starts, exact, curvature=None):
    best = None
    for x0 in starts:
      x = np.array(x0, np.float64)
      x[mle.THETA] = theta
      if exact:
        fit = mle.maximise(self.spec, x, self.pairs, self.free, with_theta=True,
                           curvature=curvature)
      else:
        fit = mle.maximise(self.spec, x, self.pairs, self.free, exact=False, tol=1e-5,
                           max_iter=ROUGH_STEPS)
      if best is None or fit.loglik > best.loglik:
        best = fit
    theta = float(theta)
    if exact or theta not in self.fits or best.loglik > self.fits[theta].loglik:
      self.fits[theta] = best
      self.is_exact[theta] = exact
    return best

  def rough(self, theta, starts):
    return self._run(theta, starts, False)

  def exact(self, theta) -> mle.Fit:
    theta = float(min(max(theta, self.bounds[0]), self.bounds[1]))
    if self.is_exact.get(theta):
      return self.fits[theta]
    starts = []
    curvature = None
    done = [t for t in self.fits if self.is_exact[t]]
    if done:
      near = min(done, key=lambda t: abs(t - theta))
      tangent = self.fits[near].tangent()
      x = np.array(self.fits[near].x)
      if tangent is not None and abs(theta - near) < 0.5:
        starts.append(x + (theta - near) * tangent)
      starts.append(x)
      curvature = self.fits[near].curvature
    if theta in self.fits:
      starts.append(self.fits[theta].x)
    if not starts:
      near = min(self.fits, key=lambda t: abs(t - theta))
      starts.append(self.fits[near].x)
    starts = [x for x in starts if np.all(np.isfinite(x))]
    valid = [x for x in starts
             if np.isfinite(mle.total(self.spec, _with_theta(x, theta), self.pairs))]
    return self._run(theta, valid or starts, True, curvature)

  def value(self, theta):
    return self.fits[float(theta)].loglik

  def thetas(self):
    return np.array(sorted(self.fits))


def _with_theta(x, theta):
  x = np.array(x, np.float64)
  x[mle.THETA] = theta
  return x


def _newton_max(scan, t0, lower, upper):
  """The profile's maximum by Newton's method on theta (slope and curvature from each exact fit),
  kept in [lower, upper] and safeguarded by halving steps that lose likelihood."""
  t = t0
  fit = scan.exact(t)
  for _ in range(MAX_STEPS):
    slope, curv = fit.profile_slope(), fit.profile_curvature()
    if not (np.isfinite(slope) and np.isfinite(curv) and curv > 0):
      break
    step = float(np.clip(slope / curv, -0.5, 0.5))
    new = min(max(t + step, lower), upper)
    if abs(new - t) < THETA_TOL:
      break
    trial = scan.exact(new)
    halvings = 0
    while trial.loglik < fit.loglik - 1e-9 and halvings < 4:
      new = t + 0.5 * (new - t)
      trial = scan.exact(new)
      halvings += 1
    if trial.loglik < fit.loglik:
      break
    flat = trial.loglik - fit.loglik < 0.01
    t, fit = new, trial
    if flat:  # a flat profile: no point in walking along it
      break
  return t, fit


def _end(scan, lr, t_hat, direction, width, crit, kappa, bound):
  """One end of the interval: Newton's method on g = sqrt(lr) - sqrt(crit) (nearly linear in
  theta; g' = -slope / (kappa sqrt(lr)) from each fit), kept inside the bracket of the farthest
  point known inside and the nearest known outside."""
  inside, outside = t_hat, None
  t = float(np.clip(t_hat + direction * width, min(t_hat, bound), max(t_hat, bound)))
  for _ in range(MAX_STEPS):
    if t == inside:
      break
    value = lr(t)
    root = np.sqrt(max(value, 1e-12))
    g = root - np.sqrt(crit)
    if value <= crit:
      inside = t
    else:
      outside = t
    if abs(g) < END_TOL or (value <= crit and t == bound):
      return t if value <= crit or abs(g) < END_TOL else inside
    dg = -scan.fits[float(t)].profile_slope() / (kappa * root)
    new = t - g / dg if np.isfinite(dg) and dg * direction > 0 else t + direction * width
    lo_b, hi_b = sorted((inside, outside if outside is not None else bound))
    if not lo_b < new < hi_b:
      new = 0.5 * (inside + outside) if outside is not None else bound
    if outside is not None and abs(outside - inside) < THETA_TOL:
      break
    t = float(new)
  return inside


def profile(spec: mle.Spec, pairs: lik.Pairs, free: np.ndarray, grid: Sequence[float],
            init, start: float, level: float = 0.05, clusters: bool = True,
            extra: Sequence[float] = (), lower: float = -np.inf, upper: float = np.inf,
            name: str = "", interval: bool = True, rough_pairs=None) -> Profile:
  """The profile of theta over [lower, upper]: its maximum and robust interval.

  `free` marks the nuisance parameters fitted at each theta (theta itself is fixed in each fit);
  `init(theta, pairs, noise_first=False)` gives starting values by moments. The grid (and `extra`
  points) is first scanned with rough fits from the middle outwards, each from its neighbour's
  optimum, from `init` and (with noise) from `init(..., noise_first=True)`, the best kept: the
  likelihood can have a second mode, 'little change, much noise', against 'a change and little
  noise'. The maximum is then found by Newton's method on theta with exact
  fits, and each end of the interval by Newton's method on sqrt(LR) - sqrt(chi2 quantile),
  bracketed by points known to be inside and outside. interval=False stops after the maximum.
  `rough_pairs`: a random subset of the synapses for the rough scan (its log-likelihood
  differences are scaled to all synapses where they are reported).
  """
  grid = np.unique(np.concatenate([np.asarray(grid, np.float64), np.asarray(extra, np.float64)]))
  grid = grid[(grid >= lower) & (grid <= upper)]
  free = np.asarray(free, bool).copy()
  free[mle.THETA] = False
  # the rough scan, on a random subset of the synapses when there are many
  sub = pairs if rough_pairs is None else rough_pairs
  rough = _Scan(spec, sub, free, lambda t: init(t, sub), (lower, upper))
  i0 = int(np.argmin(np.abs(grid - start)))

  def alt(i):  # the noise mode, at the start and at both ends (the warm starts carry it on)
    return [init(grid[i], sub, noise_first=True)] if spec.noisy and i in (
        i0, 0, grid.size - 1) else []

  rough.rough(grid[i0], [rough.init(grid[i0])] + alt(i0))
  for order in (range(i0 + 1, grid.size), range(i0 - 1, -1, -1)):
    prev = grid[i0]
    for i in order:
      rough.rough(grid[i], [rough.fits[float(prev)].x, rough.init(grid[i])] + alt(i))
      prev = grid[i]
  scale = pairs.l0.shape[0] / sub.l0.shape[0]  # rough log-likelihood differences -> all synapses

  scan = _Scan(spec, pairs, free, init, (lower, upper))
  ts = rough.thetas()
  t0 = float(ts[int(np.argmax([rough.value(t) for t in ts]))])
  scan.fits[t0] = rough.fits[t0]  # the start of the exact phase
  scan.is_exact[t0] = False
  t_hat, best = _newton_max(scan, t0, lower, upper)
  rough_top = max(rough.value(t) for t in ts)

  def rough_lr(theta):
    return 2.0 * (rough_top - rough.value(theta)) * scale

  crit = float(stats.chi2.ppf(1.0 - level, 1))
  free_t = free.copy()
  free_t[mle.THETA] = True
  for _ in range(3):
    # the maximum over every exact fit so far: the search for the interval's ends can find a
    # higher point than Newton's maximum (a flat or bumpy profile); then the ends are redone
    exact_ts = [t for t in scan.fits if scan.is_exact[t]]
    t_hat = max(exact_ts, key=scan.value)
    best = scan.fits[t_hat]
    x_hat, l_hat = best.x, best.loglik
    rob = mle.robust_variance(spec, x_hat, pairs, free_t, clusters)
    kappa = max(rob.kappa, 1.0) if np.isfinite(rob.kappa) else 1.0

    def lr(theta, l_hat=l_hat, kappa=kappa):
      return 2.0 * max(l_hat - scan.exact(theta).loglik, 0.0) / kappa

    ends = [t_hat, t_hat]
    if not interval:
      break
    curv = best.profile_curvature()
    width = np.sqrt(crit * kappa / curv) if np.isfinite(curv) and curv > 0 else 0.25
    for k, direction in enumerate((-1.0, 1.0)):
      ends[k] = _end(scan, lr, t_hat, direction, width, crit, kappa,
                     lower if direction < 0 else upper)
    # grid points near the ends, refitted exactly, join the interval if they pass (hull)
    for t in ts:
      if rough_lr(t) / kappa < 3.0 * crit and lr(t) <= crit:
        ends = [min(ends[0], t), max(ends[1], t)]
    top = max((t for t in scan.fits if scan.is_exact[t]), key=scan.value)
    if scan.value(top) <= l_hat + 1e-6:
      break
  # the profile as reported: exact values, and the rough scan's where no exact fit was made
  # (shifted to the exact maximum and scaled to all synapses; marked as not exact)
  for t in ts:
    if float(t) not in scan.fits:
      scan.fits[float(t)] = mle.Fit(rough.fits[float(t)].x, l_hat - 0.5 * rough_lr(t), 0)
      scan.is_exact[float(t)] = False
  ts = scan.thetas()
  lo, hi = ends
  edge = ("upper" if interval and hi >= upper - 1e-9 else
          "lower" if interval and lo <= lower + 1e-9 else "")
  return Profile(
      family=name or spec.family.name, thetas=ts, loglik=np.array([scan.value(t) for t in ts]),
      params=[scan.fits[t].x for t in ts], theta_hat=float(t_hat), loglik_hat=float(l_hat),
      x_hat=x_hat, kappa=float(kappa), se_model=float(np.sqrt(max(rob.model_var, 0.0))),
      se_robust=float(np.sqrt(max(rob.robust_var, 0.0))) if rob.model_var > 0 else float("nan"),
      interval=(float(lo), float(hi)), critical=crit,
      exact=np.array([scan.is_exact[t] for t in ts]),
      per_synapse=np.asarray(mle.per_synapse(spec, x_hat, pairs)), at_edge=edge,
      bounds=(float(lower), float(upper)), scan=scan)


def clustered_variance(x: np.ndarray, rows: np.ndarray | None, cols: np.ndarray | None) -> float:
  """Variance of sum(x) for per-synapse terms x, clustered by row and column units (two-way,
  Cameron-Gelbach-Miller, kept >= each one-way variance) or, without units, independent."""
  xc = x - x.mean()
  het = float(np.sum(xc * xc))
  if rows is None:
    return het
  vr = float(np.sum(np.bincount(rows, xc) ** 2))
  vc = float(np.sum(np.bincount(cols, xc) ** 2))
  return max(vr + vc - het, vr, vc, het)


def vuong(ll_best: np.ndarray, ll_other: np.ndarray, k_best: int, k_other: int,
          rows: np.ndarray | None = None, cols: np.ndarray | None = None) -> tuple[float, float]:
  """One-sided p-value that `other` fits no worse than `best` (Vuong 1989), and the AIC-corrected
  log-likelihood difference. Two models that coincide on these data (difference below one
  log-likelihood unit) are not told apart (p = 1)."""
  d = np.asarray(ll_best, np.float64) - np.asarray(ll_other, np.float64)
  diff = float(np.sum(d)) - (k_best - k_other)
  if abs(diff) < 1.0:
    return 1.0, diff
  var = clustered_variance(d, rows, cols)
  if not var > 0:
    return (1.0 if diff <= 0 else 0.0), diff
  return float(stats.norm.sf(diff / np.sqrt(var))), diff
