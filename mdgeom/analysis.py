"""Gaussianity of weight changes in dual space (docs/theory.md, "Delta-CDF").

Given weights before (w0) and after (w) learning and a hypothesised potential psi:

  dual change       delta_psi = grad psi(w) - grad psi(w0)
  change magnitude  ||delta_psi|| / ||grad psi(w0)||        (small = lazy regime, where the theory holds)
  Delta-CDF         int |F_n(x) - Phi(x)| dx, F_n the empirical CDF of delta_psi / std(delta_psi)
                    (scaled, NOT centred: the change is predicted to be zero-mean)

Under the true potential the change is Gaussian (Theorem 1); the geometry is inferred by ranking
candidate potentials by the Gaussianity of their dual change (`rank_potentials`).

Two Delta-CDF methods:
  "grid"  the paper's value exactly: F(t) = mean(x < t) on 1000 points in [-5, 5], Riemann sum
          with the grid spacing. Computed by bucketing each point once (O(n)), never with an
          n x 1000 comparison matrix.
  "exact" the Wasserstein-1 distance between the scaled sample and N(0, 1), in closed form over
          the sorted sample (O(n log n), no grid, no truncation at +-5).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special, stats

from mdgeom import _checks
from mdgeom import potentials as potentials_lib
from mdgeom import scales as scales_lib

PotentialLike = Union[str, potentials_lib.Potential]

# The paper's grid (authors' code: np.linspace(-5, 5, 1000), spacing points[1] - points[0]).
GRID = np.linspace(-5.0, 5.0, 1000)
GRID_STEP = float(GRID[1] - GRID[0])
GRID_NORMAL_CDF = special.ndtr(GRID)
_N_GRID = GRID.size


def paper_candidates() -> list[str]:
  """The hypothesised potentials of the paper's Fig. 3B: negative entropy and p = 1.1, ..., 3.0."""
  return ["negative_entropy"] + [f"{p / 10:g}-norm" for p in range(11, 31)]


# ----------------------------------------------------------------------------------------------
# Delta-CDF
# ----------------------------------------------------------------------------------------------


def scaled_grid_counts(x, valid, center=False, scale=True):
  """For one 1-D sample: below[j] = #{i valid: (x_i - c) / s < t_j}, the count n, and s (ddof=1);
  c is the sample mean when `center`, else 0 (the paper's statistic). With scale=False the sample
  is compared with the grid as it is (s = 1, c = 0): for values already standardised by a model.

  Each point goes to the bucket k = min{j : t_j > x/s} (first estimated from the uniform grid,
  then corrected against the grid values themselves, so the comparison is the brute force's);
  cumulative bucket counts give F at every grid point.
  """
  dtype = x.dtype
  n = jnp.sum(valid)
  xv = jnp.where(valid, x, 0.0)
  # The statistic is scale-free: divide by the power of two nearest the largest |x| first
  # (exact), so a tiny or huge sample's variance neither underflows nor overflows.
  e = jnp.frexp(jnp.max(jnp.abs(xv)))[1] if scale else jnp.zeros((), jnp.int32)
  xv = jnp.ldexp(xv, -e)
  mean = jnp.sum(xv) / n
  var = jnp.sum(jnp.where(valid, (xv - mean) ** 2, 0.0)) / (n - 1)
  s = jnp.sqrt(var)
  if not scale:
    s = jnp.where(n >= 2, jnp.ones_like(s), s)
    xs = xv
  else:
    xs = (xv - mean) / s if center else xv / s
  t = jnp.asarray(GRID, dtype)
  k = jnp.floor((xs - t[0]) / jnp.asarray(GRID_STEP, dtype))
  k = jnp.clip(jnp.where(jnp.isfinite(k), k, 0.0), -1, _N_GRID).astype(jnp.int32) + 1
  k = jnp.clip(k, 0, _N_GRID)
  k = jnp.where((k > 0) & (t[jnp.clip(k - 1, 0, _N_GRID - 1)] > xs), k - 1, k)
  k = jnp.where((k < _N_GRID) & (t[jnp.clip(k, 0, _N_GRID - 1)] <= xs), k + 1, k)
  k = jnp.where(valid, k, _N_GRID + 1)  # invalid points go to a bucket that is never counted
  counts = jnp.bincount(k, length=_N_GRID + 2)
  below = jnp.cumsum(counts[:_N_GRID])
  return below, n, jnp.ldexp(s, e)  # (s in the sample's units)


@functools.partial(jax.jit, static_argnums=2)
def batched_grid_counts(x, valid, center=False):
  flat_x = x.reshape(-1, x.shape[-1])
  flat_v = valid.reshape(-1, x.shape[-1])
  below, n, s = jax.vmap(lambda a, b: scaled_grid_counts(a, b, center))(flat_x, flat_v)
  lead = x.shape[:-1]
  return below.reshape(lead + (_N_GRID,)), n.reshape(lead), s.reshape(lead)


def delta_cdf_from_counts(below, n) -> np.ndarray:
  """sum_j |F(t_j) - Phi(t_j)| dt in float64 from the counts of points below each t_j."""
  below = np.asarray(below, np.float64)
  n = np.asarray(n, np.float64)[..., None]
  return np.sum(np.abs(below / n - GRID_NORMAL_CDF), axis=-1) * GRID_STEP


def _normal_partial_expectation(t):
  """G(t) = int_{-inf}^t Phi(s) ds = t Phi(t) + phi(t)."""
  return t * special.ndtr(t) + np.exp(-0.5 * t * t) / np.sqrt(2.0 * np.pi)


def wasserstein1_to_normal(z_sorted: np.ndarray) -> float:
  """Exact W1 = int |F_n(x) - Phi(x)| dx between a sorted sample and N(0, 1), in float64.

  On [z_i, z_{i+1}) the empirical CDF is the constant c = i/n; with G' = Phi and m = Phi^{-1}(c)
  clipped into the interval, int |c - Phi| = c(m - a) - (G(m) - G(a)) + (G(b) - G(m)) - c(b - m).
  The tails give G(z_1) and G(z_n) - z_n.
  """
  z = np.asarray(z_sorted, np.float64)
  n = z.size
  if n < 2:
    raise ValueError("the exact Wasserstein distance needs at least 2 points.")
  g = _normal_partial_expectation
  a, b = z[:-1], z[1:]
  c = np.arange(1, n, dtype=np.float64) / n
  m = np.clip(special.ndtri(c), a, b)
  gm, ga, gb = g(m), g(a), g(b)
  inner = c * (m - a) - (gm - ga) + (gb - gm) - c * (b - m)
  return float(g(z[0]) + np.sum(inner) + (g(z[-1]) - z[-1]))


class DegenerateChangeError(ValueError):
  """A change with zero spread: every value equal (up to rounding), so there is no shape to test.

  What it means (docs/theory.md, "Degenerate changes"): a Gaussian of zero variance, e.g. a
  uniform change in this geometry (AFTER = 1.2 x BEFORE under negative entropy). No Delta-CDF is
  defined, so none is returned: dividing by a rounding-level standard deviation would give an
  arbitrary number (about 5 on the paper's grid).
  """


DEGENERATE_ULPS = 64  # spread within this many rounding units of the largest |value|: constant


def _check_sample(x, what: str = "sample") -> np.ndarray:
  _checks.check_real(x, what)
  x = jnp.ravel(jnp.asarray(x))
  if x.size < 2:
    raise ValueError(f"Delta-CDF needs at least 2 values, got {x.size}.")
  _checks.check_finite(x, what)
  eps = float(jnp.finfo(x.dtype).eps) if jnp.issubdtype(x.dtype, jnp.floating) else 0.0
  _check_spread(np.asarray(x, np.float64), what, eps)
  return x


def _check_spread(xn: np.ndarray, what: str, eps: float) -> None:
  """Raises DegenerateChangeError when the values have no spread beyond rounding in their own
  precision (a float32 constant computed from logs differs from itself by float32 rounding)."""
  spread = float(np.max(xn) - np.min(xn)) if xn.size else 0.0
  scale = float(np.max(np.abs(xn))) if xn.size else 0.0
  if not spread > DEGENERATE_ULPS * eps * scale:
    value = f"{xn.flat[0]:.6g}" if xn.size else "?"
    raise DegenerateChangeError(
        f"the {what} is constant ({xn.size} values equal to {value} up to rounding): a change "
        "with zero spread has no shape to test. It is a Gaussian of zero variance, e.g. a "
        "uniform change in this geometry; no Delta-CDF or normality test is defined for it.")


def delta_cdf(x, method: str = "grid", *, center: bool = False) -> float:
  """Delta-CDF of a sample against N(0, 1) (docs/theory.md, "Delta-CDF").

  The sample is divided by its standard deviation (ddof=1) and, unlike a standardisation, not
  centred (set center=True to subtract the mean first, as the authors' "centred" variant).

  Args:
    x: the sample (any shape; flattened). NaN/Inf raise.
    method: "grid" (the paper's 1000-point Riemann sum over [-5, 5], O(n)) or "exact" (the
      Wasserstein-1 distance to N(0, 1) in closed form, O(n log n)).
  """
  x = _check_sample(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  if center:
    x = x - jnp.mean(x)
  if method == "grid":
    below, n, s = batched_grid_counts(x[None, :], jnp.ones((1, x.size), bool), False)
    _check_scale(float(s[0]))
    return float(delta_cdf_from_counts(below, n)[0])
  if method == "exact":
    xn = np.asarray(x, np.float64)
    s = float(np.std(xn, ddof=1))
    _check_scale(s)
    return wasserstein1_to_normal(np.sort(xn) / s)
  raise ValueError(f"unknown Delta-CDF method {method!r}: use 'grid' or 'exact'.")


def delta_cdf_batch(x, valid=None, *, center: bool = False) -> np.ndarray:
  """The grid Delta-CDF of every row x[..., :] at once (jit + vmap over leading axes).

  `valid` (same shape, bool) marks the entries to use; default all. Rows whose standard deviation
  is zero give NaN (nothing to scale). `center` subtracts each row's mean first.
  """
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  if valid is None:
    valid = jnp.ones(x.shape, bool)
  below, n, s = batched_grid_counts(x, valid, bool(center))
  out = delta_cdf_from_counts(below, n)
  return np.where(np.asarray(s) > 0, out, np.nan)


def _check_scale(s: float) -> None:
  if not s > 0 or not np.isfinite(s):
    raise ValueError(f"the sample's standard deviation is {s}: Delta-CDF needs a sample that is "
                     "not constant (did any weight change at all?).")


# ----------------------------------------------------------------------------------------------
# Normality tests
# ----------------------------------------------------------------------------------------------


def normality_tests(x, *, max_n: int = 5000, n_mc: int = 999, seed: int = 0) -> dict:
  """Standard normality tests of the scaled dual change, reported beside Delta-CDF.

  - shapiro: Shapiro-Wilk (estimated mean and variance). scipy's p-value is accurate for
    3 <= n <= 5000, so larger samples are tested on a random subsample of `max_n` points.
  - dagostino: D'Agostino-Pearson K^2 on all points (needs n >= 20 for the kurtosis test).
  - anderson: Anderson-Darling with estimated mean and variance (Stephens' case 3), p-value
    interpolated from scipy's tables.
  - ks_zero_mean: Kolmogorov-Smirnov against N(0, s^2) with the mean fixed at 0 (the theory's
    null) and s estimated; estimating s invalidates the textbook KS p-value, so the p-value is a
    parametric Monte Carlo one (scipy.stats.goodness_of_fit) on at most `max_n` points.

  Each entry: {"statistic", "p_value", "n"} or {"skipped": reason}.
  """
  xa = np.asarray(_check_sample(x), np.float64)
  n = xa.size
  rng = np.random.default_rng(seed)
  sub = xa if n <= max_n else rng.choice(xa, size=max_n, replace=False)
  out: dict[str, Any] = {}
  if n >= 3:
    r = stats.shapiro(sub)
    out["shapiro"] = {"statistic": float(r.statistic), "p_value": float(r.pvalue), "n": sub.size}
  else:
    out["shapiro"] = {"skipped": "needs n >= 3"}
  if n >= 20:
    r = stats.normaltest(xa)
    out["dagostino"] = {"statistic": float(r.statistic), "p_value": float(r.pvalue), "n": n}
  else:
    out["dagostino"] = {"skipped": "the kurtosis test needs n >= 20"}
  if n >= 8:
    r = stats.anderson(xa, "norm", method="interpolate")
    out["anderson"] = {"statistic": float(r.statistic), "p_value": float(r.pvalue), "n": n}
  else:
    out["anderson"] = {"skipped": "needs n >= 8"}
  if n >= 5:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)
      r = stats.goodness_of_fit(stats.norm, sub, known_params={"loc": 0.0}, statistic="ks",
                                n_mc_samples=n_mc, rng=rng)
    out["ks_zero_mean"] = {"statistic": float(r.statistic), "p_value": float(r.pvalue),
                           "n": sub.size}
  else:
    out["ks_zero_mean"] = {"skipped": "needs n >= 5"}
  return out


# ----------------------------------------------------------------------------------------------
# Dual change and magnitude
# ----------------------------------------------------------------------------------------------


def _as_pair(w0, w):
  _checks.check_real(w0, "initial weights w0")
  _checks.check_real(w, "final weights w")
  w0, w = jnp.asarray(w0), jnp.asarray(w)
  _checks.check_same_shape(w0, w, "w0", "w")
  _checks.check_finite(w0, "initial weights w0")
  _checks.check_finite(w, "final weights w")
  dt = jnp.promote_types(jnp.promote_types(w0.dtype, w.dtype), jnp.float32)
  return w0.astype(dt), w.astype(dt)


def sign_changes(w0, w) -> tuple[int, int]:
  """(number of weights whose sign flipped, number that reached or left exactly zero)."""
  a, b = np.asarray(w0), np.asarray(w)
  changed = a != b
  flips = int(np.sum(changed & (np.sign(a) * np.sign(b) < 0)))
  zero = int(np.sum(changed & ((a == 0) | (b == 0))))
  return flips, zero


def _check_signs(pot: potentials_lib.Potential, w0, w) -> None:
  flips, zero = sign_changes(w0, w)
  if flips or zero:
    raise potentials_lib.SignFlipError(
        f"{flips} weights changed sign and {zero} reached or left zero between w0 and w (of "
        f"{np.size(w0)}). {pot.name} keeps every weight on its half-line, so these data rule it "
        "out. Pass allow_sign_flips=True to compute the signed dual change anyway (as the paper's "
        "Fig. 7A does); entries at zero have no dual coordinate and stay NaN.",
        n_flips=flips, n_zero=zero)


def dual_change_raw(potential: potentials_lib.Potential, w0, w) -> jax.Array:
  """grad psi(w) - grad psi(w0) without checks: pure, jit/vmap-able, for arrays of any shape.

  Unchanged weights give exactly 0, even where grad psi is undefined (an unchanged zero under
  negative entropy). Sign flips under a sign-preserving potential give the signed change.
  """
  d = potential.mirror_map(w) - potential.mirror_map(w0)
  return jnp.where(w == w0, jnp.zeros_like(d), d)


def change_magnitude_raw(potential: potentials_lib.Potential, w0, w, axis=-1) -> jax.Array:
  """||grad psi(w) - grad psi(w0)|| / ||grad psi(w0)|| along `axis`, without checks (jit/vmap-able).

  Entries without a dual coordinate (non-finite, e.g. zeros under negative entropy) are left out
  of both norms.
  """
  d = dual_change_raw(potential, w0, w)
  y0 = potential.mirror_map(w0)
  ok = jnp.isfinite(d) & jnp.isfinite(y0)
  num = jnp.sum(jnp.where(ok, d, 0.0) ** 2, axis=axis)
  den = jnp.sum(jnp.where(ok, y0, 0.0) ** 2, axis=axis)
  return jnp.sqrt(num / den)


_dual_change_kernel = jax.jit(dual_change_raw, static_argnums=0)
_change_magnitude_kernel = jax.jit(change_magnitude_raw, static_argnums=(0, 3))


def dual_change(potential: PotentialLike, w0, w, *, allow_sign_flips: bool = False) -> jax.Array:
  """delta_psi = grad psi(w) - grad psi(w0) elementwise (docs/theory.md, "Delta-CDF").

  Unchanged weights give exactly 0. Under a sign-preserving potential (negative entropy), weights
  that changed sign or reached/left zero raise SignFlipError (they rule the potential out) unless
  allow_sign_flips=True.
  """
  pot = potentials_lib.get(potential)
  w0, w = _as_pair(w0, w)
  if pot.sign_preserving and not allow_sign_flips and _checks.is_concrete(w):
    _check_signs(pot, w0, w)
  return _dual_change_kernel(pot, w0, w)


def change_magnitude(potential: PotentialLike, w0, w, *, allow_sign_flips: bool = False) -> float:
  """||grad psi(w) - grad psi(w0)|| / ||grad psi(w0)|| (docs/theory.md, "Delta-CDF").

  Weights without a dual coordinate (exact zeros under negative entropy) are left out of both
  norms.
  """
  pot = potentials_lib.get(potential)
  w0, w = _as_pair(w0, w)
  if pot.sign_preserving and not allow_sign_flips and _checks.is_concrete(w):
    _check_signs(pot, w0, w)
  value = float(_change_magnitude_kernel(pot, jnp.ravel(w0), jnp.ravel(w), -1))
  if not np.isfinite(value):
    y0 = np.asarray(pot.mirror_map(jnp.ravel(w0)))
    if not np.any(y0[np.isfinite(y0)] != 0):
      raise ValueError(f"the dual weights grad psi(w0) of {pot.name} are all zero (w0 = 0 for a "
                       "p-norm?): the change magnitude ||delta|| / ||grad psi(w0)|| is undefined.")
  return value


def dual_distance(potential: PotentialLike, w, w_ref, w0) -> np.ndarray:
  """||grad psi(w) - grad psi(w_ref)|| / ||grad psi(w_ref) - grad psi(w0)|| along the last axis.

  How far weights w (e.g. trained, or a training trajectory with leading axes) are from reference
  weights w_ref (e.g. the closed-form solution, Eq. 8/13) in the dual space, relative to the size
  of the reference's dual change from w0. Float64; non-finite w (a diverged run) gives NaN.
  """
  pot = potentials_lib.get(potential)
  with jax.enable_x64(True):
    dual = lambda v: np.asarray(pot.mirror_map(jnp.asarray(v, jnp.float64)))
    y, y_ref, y0 = dual(w), dual(w_ref), dual(w0)
  with np.errstate(invalid="ignore", over="ignore"):
    return np.linalg.norm(y - y_ref, axis=-1) / np.linalg.norm(y_ref - y0, axis=-1)


# ----------------------------------------------------------------------------------------------
# Ranking candidate geometries
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class CandidateResult:
  """One hypothesised potential's verdict on a pair of weight sets."""

  name: str
  delta_cdf: float
  magnitude: float
  ruled_out: bool = False
  reason: str = ""
  n_sign_flips: int = 0
  n_zero_crossings: int = 0
  normality: dict | None = None
  degenerate: bool = False

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass
class Ranking:
  """Candidates sorted best first (lowest Delta-CDF; ruled-out candidates last)."""

  results: list[CandidateResult]
  n_weights: int
  n_unchanged: int
  unchanged_excluded: bool
  leaves: list[str]
  center: bool = False
  scales: str = "pooled"

  @property
  def best(self) -> CandidateResult:
    return self.results[0]

  def to_dict(self) -> dict:
    return {"n_weights": self.n_weights, "n_unchanged": self.n_unchanged,
            "unchanged_excluded": self.unchanged_excluded, "leaves": self.leaves,
            "center": self.center, "scales": self.scales,
            "ranking": [r.to_dict() for r in self.results]}

  def table(self) -> str:
    lines = [f"{'potential':<20} {'Delta-CDF':>10} {'magnitude':>10}  note"]
    for r in self.results:
      note = ("RULED OUT: " + r.reason) if r.ruled_out else (
          "DEGENERATE: " + r.reason) if r.degenerate else ""
      lines.append(f"{r.name:<20} {r.delta_cdf:>10.4f} {r.magnitude:>10.4g}  {note}")
    lines.append(f"{self.n_weights} weights, {self.n_unchanged} unchanged "
                 f"({'excluded' if self.unchanged_excluded else 'included as exact zeros'})")
    return "\n".join(lines)


def exclude_paths(*patterns: str) -> Callable[[str, Any], bool]:
  """A leaf filter for `rank_potentials(where=...)` that drops leaves whose path matches any
  regular expression (case-insensitive), e.g. the paper's exclusion (biases, batch-norm
  parameters, the readout) for the zoo's ResNets, whose batch-norm parameters are the leaves named
  "scale" and "bias": `exclude_paths("bias", "scale", "readout")`. For zoo models
  `where=model.analysed` is that filter, written once per model."""
  compiled = []
  for p in patterns:
    if not isinstance(p, str):
      raise TypeError(f"exclude_paths takes regular expressions as strings, got {p!r}.")
    try:
      compiled.append(re.compile(p, re.IGNORECASE))
    except re.error as e:
      raise ValueError(f"exclude_paths: {p!r} is not a valid regular expression ({e}); escape "
                       "special characters, e.g. re.escape(name).") from None

  def keep(path: str, leaf) -> bool:
    return not any(c.search(path) for c in compiled)

  return keep


def select_leaves(w0, w, where):
  p0 = jax.tree_util.tree_leaves_with_path(w0)
  p1 = jax.tree_util.tree_leaves_with_path(w)
  s0 = jax.tree_util.tree_structure(w0)
  s1 = jax.tree_util.tree_structure(w)
  if s0 != s1:
    raise ValueError(f"w0 and w have different pytree structures:\n{s0}\nvs\n{s1}")
  names, shapes, a, b = [], [], [], []
  for (path, x0), (_, x1) in zip(p0, p1):
    name = jax.tree_util.keystr(path) or "<array>"
    if where is not None and not where(name, x0):
      continue
    _checks.check_same_shape(x0, x1, f"w0{name}", f"w{name}")
    _checks.check_real(x0, f"w0{name}")
    _checks.check_real(x1, f"w{name}")
    names.append(name)
    shapes.append(tuple(int(k) for k in np.shape(x0)))
    a.append(jnp.ravel(jnp.asarray(x0)))
    b.append(jnp.ravel(jnp.asarray(x1)))
  if not names:
    raise ValueError("the leaf filter selected no weights.")
  a = a[0] if len(a) == 1 else jnp.concatenate(a)
  b = b[0] if len(b) == 1 else jnp.concatenate(b)
  return names, tuple(shapes), a, b


def split_leaves(x, shapes):
  """The flat concatenation of leaves back into arrays of the leaves' shapes."""
  out, start = [], 0
  for shape in shapes:
    size = int(np.prod(shape)) if shape else 1
    out.append(x[start:start + size].reshape(shape))
    start += size
  return out


def _unit_normalise(d, valid, shapes):
  """Each leaf's change divided by its rank-1 per-unit scale (mdgeom.scales), concatenated."""
  parts = [scales_lib.unit_scales_dense(dl, vl).ravel()
           for dl, vl in zip(split_leaves(d, shapes), split_leaves(valid, shapes))]
  return parts[0] if len(parts) == 1 else jnp.concatenate(parts)


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6))
def _candidate_kernel(pot, w0, w, keep, return_change, center=False, unit_shapes=None):
  changed = w != w0
  y0 = pot.mirror_map(w0)
  d = dual_change_raw(pot, w0, w)
  valid = keep & jnp.isfinite(d)
  x = d if unit_shapes is None else _unit_normalise(d, valid, unit_shapes)
  valid_x = valid & jnp.isfinite(x)
  below, n, s = scaled_grid_counts(x, valid_x, center)
  num = jnp.sum(jnp.where(valid, d, 0.0) ** 2)
  den = jnp.sum(jnp.where(valid & jnp.isfinite(y0), y0, 0.0) ** 2)
  flips = jnp.sum(keep & changed & (jnp.sign(w0) * jnp.sign(w) < 0))
  zero = jnp.sum(keep & changed & ((w0 == 0) | (w == 0)))
  # degenerate: the change varies by no more than the rounding of the dual weights it is the
  # difference of (a uniform change in this geometry)
  y1 = pot.mirror_map(w)
  size = jnp.max(jnp.where(valid, jnp.maximum(jnp.abs(y0), jnp.abs(y1)), 0.0))
  spread = (jnp.max(jnp.where(valid_x, x, -jnp.inf)) - jnp.min(jnp.where(valid_x, x, jnp.inf)))
  if unit_shapes is None:
    degenerate = spread <= DEGENERATE_ULPS * jnp.finfo(d.dtype).eps * size
  else:  # (unit-scaled values are relative: compare with their own size)
    degenerate = spread <= DEGENERATE_ULPS * jnp.finfo(d.dtype).eps * jnp.max(
        jnp.where(valid_x, jnp.abs(x), 0.0))
  stats_ = dict(below=below, n=n, s=s, magnitude=jnp.sqrt(num / den), flips=flips, zero=zero,
                degenerate=degenerate)
  return stats_, (jnp.where(valid_x, x, jnp.nan) if return_change else None)


def rank_potentials(
    w0,
    w,
    candidates: Iterable[PotentialLike] | None = None,
    *,
    where: Callable[[str, Any], bool] | None = None,
    exclude_unchanged: bool = False,
    method: str = "grid",
    normality: bool = False,
    seed: int = 0,
    center: bool = False,
    scales: str | None = None,
) -> Ranking:
  """Ranks hypothesised potentials by the Gaussianity (Delta-CDF) of the dual change.

  Args:
    w0, w: weights before and after learning: arrays or parameter pytrees of equal structure.
    candidates: potentials or names (default: `paper_candidates()`).
    where: leaf filter (path, leaf) -> keep, e.g. `exclude_paths("bias", "batchnorm", "readout")`.
    exclude_unchanged: drop weights with w == w0 (dead units, always-zero inputs). They put a
      spike at exactly zero into every geometry's dual change; their count is always reported.
    method: Delta-CDF method, "grid" (the paper's) or "exact" (Wasserstein-1).
    normality: also run `normality_tests` on each candidate's dual change.
    center: subtract the mean of the (scaled) change before the statistic: robust to a net drift
      of the change (e.g. net potentiation), which the paper's uncentred statistic counts as
      non-Gaussianity. Default False: the paper's statistic.
    scales: None or "pooled" (the paper: one scale for all weights), or "units": each leaf's change
      is divided by its rank-1 per-unit scale a_i b_j (rows = all input axes, columns = output
      units; `mdgeom.scales`), which removes the scale mixture that unequal unit activity levels
      put into the pooled change (docs/theory.md, "Per-unit scales").

  A sign-preserving candidate (negative entropy) is ruled out when any weight changed sign or
  reached/left zero (with the counts); its signed Delta-CDF is still reported, as the paper does.
  A candidate whose dual change is the same at every weight (up to the rounding of the dual
  weights) is marked `degenerate`, with NaN for its Delta-CDF and listed first: a uniform change in
  that geometry is a Gaussian of zero variance (docs/theory.md, "Degenerate changes").
  """
  if method not in ("grid", "exact"):
    raise ValueError(f"unknown Delta-CDF method {method!r}: use 'grid' or 'exact'.")
  if scales not in (None, "pooled", "units"):
    raise ValueError(f"unknown scales {scales!r}: use None/'pooled' (the paper's) or 'units'.")
  names, shapes, a, b = select_leaves(w0, w, where)
  unit_shapes = shapes if scales == "units" else None
  a, b = _as_pair(a, b)
  if a.size == 0:
    raise ValueError("no weights to analyse: w0 and w are empty (or every selected leaf is).")
  changed = a != b
  n_unchanged = int(a.size - jnp.sum(changed))
  if n_unchanged == a.size:
    raise ValueError(f"none of the {a.size} selected weights changed: there is no dual change.")
  keep = changed if exclude_unchanged else jnp.ones(a.shape, bool)
  n_keep = int(jnp.sum(keep))
  if n_keep < 3:
    raise ValueError(f"only {n_keep} weights to analyse ({n_unchanged} of {a.size} unchanged"
                     f"{' and excluded' if exclude_unchanged else ''}): the Delta-CDF of a dual "
                     "change needs at least 3.")
  pots = [potentials_lib.checked(c) if isinstance(c, potentials_lib.Potential) else
          potentials_lib.get(c)
          for c in (paper_candidates() if candidates is None else candidates)]
  if not pots:
    raise ValueError("no candidate potentials given.")
  results = []
  for pot in pots:
    need_change = method == "exact" or normality
    st, d = _candidate_kernel(pot, a, b, keep, need_change, bool(center), unit_shapes)
    flips, zero = int(st["flips"]), int(st["zero"])
    n = int(st["n"])
    degenerate = n >= 2 and bool(st["degenerate"])
    if n < 2 or degenerate or not float(st["s"]) > 0:
      value = float("nan")
    elif method == "grid":
      value = float(delta_cdf_from_counts(st["below"][None], st["n"][None])[0])
    else:
      dn = np.asarray(d, np.float64)
      dn = dn[np.isfinite(dn)]
      dn = dn - dn.mean() if center else dn
      value = wasserstein1_to_normal(np.sort(dn) / np.std(dn, ddof=1))
    res = CandidateResult(name=pot.name, delta_cdf=value, magnitude=float(st["magnitude"]),
                          n_sign_flips=flips, n_zero_crossings=zero, degenerate=degenerate)
    if pot.sign_preserving and (flips or zero):
      res.ruled_out = True
      res.reason = (f"{flips} weights changed sign and {zero} reached or left zero; "
                    f"{pot.name} never changes a weight's sign")
    elif degenerate:
      res.reason = ("the dual change is the same at every weight (zero spread): a uniform change "
                    "in this geometry, a Gaussian of zero variance; no Delta-CDF is defined")
    if normality and n >= 2 and not degenerate:
      dn = np.asarray(d, np.float64)
      res.normality = normality_tests(dn[np.isfinite(dn)], seed=seed)
    results.append(res)
  # degenerate candidates first (a zero-variance Gaussian fits exactly), ruled-out ones last
  results.sort(key=lambda r: (r.ruled_out, not r.degenerate, np.isnan(r.delta_cdf),
                              r.delta_cdf))
  return Ranking(results=results, n_weights=int(jnp.sum(keep)), n_unchanged=n_unchanged,
                 unchanged_excluded=exclude_unchanged, leaves=names, center=bool(center),
                 scales="units" if scales == "units" else "pooled")


def leaf_statistics(potential: PotentialLike, w0, w, *, where=None,
                    exclude_unchanged: bool = False) -> dict:
  """Per leaf (layer) of a parameter pytree: the Gaussianity of one potential's dual change.

  For each selected leaf: {"n": weights used, "delta_cdf": the paper's statistic on this leaf
  alone, "delta_cdf_centered", "delta_cdf_units": after the leaf's per-unit scales
  (`mdgeom.scales`), "kurtosis" and "kurtosis_units": excess kurtosis (0 for a Gaussian) of the
  change before and after the per-unit scales}. Leaves with fewer than 3 usable weights give NaN.
  Which layers are far from Gaussian, and whether the per-unit scales bring them back, shows where
  a pooled statistic's non-Gaussianity comes from.
  """
  pot = potentials_lib.get(potential)
  names, shapes, a, b = select_leaves(w0, w, where)
  a, b = _as_pair(a, b)
  out = {}
  start = 0
  for name, shape in zip(names, shapes):
    size = int(np.prod(shape)) if shape else 1
    a_l, b_l = a[start:start + size], b[start:start + size]
    start += size
    with jax.enable_x64(True):
      d = np.asarray(dual_change_raw(pot, jnp.asarray(a_l, jnp.float64),
                                     jnp.asarray(b_l, jnp.float64)), np.float64)
    keep = (np.asarray(a_l) != np.asarray(b_l)) if exclude_unchanged else np.ones(size, bool)
    valid = keep & np.isfinite(d)
    z = scales_lib.unit_scales(d, scales_lib.ids_for_shape(shape), valid).z
    row = {"n": int(valid.sum())}
    for key, x in (("", d[valid]), ("_units", z[np.isfinite(z)])):
      ok = x.size >= 3 and np.std(x) > 0
      row["delta_cdf" + key] = float(delta_cdf(x)) if ok else float("nan")
      row["kurtosis" + key] = float(stats.kurtosis(x)) if ok else float("nan")
      if key == "":
        row["delta_cdf_centered"] = float(delta_cdf(x, center=True)) if ok else float("nan")
    out[name] = row
  return out
