"""Per-unit scales of a dual change: the rank-1 model a_i b_j of a weight matrix.

Why (docs/theory.md, "Per-unit scales"). For a weight matrix W (post-synaptic unit j, presynaptic
unit i) trained to interpolate, Eq. 13 gives the dual change of one weight as a sum over data points

    grad phi(W*)_ij - grad phi(W0)_ij = (X^T lambda)_ij = sum_n x_i^(n) delta_j^(n),

the product of the presynaptic activity x_i and a postsynaptic error signal delta_j, summed over
the N data points. Theorem 1 makes this sum Gaussian, but its variance is
Var = sum_n E[x_i^2] E[delta_j^2] ~ a_i^2 b_j^2 when activities of different units are not
normalised: each presynaptic unit has its own activity level a_i, each postsynaptic unit its own
error level b_j. Pooled over the matrix, the change is then a Gaussian *scale mixture* (heavy
tailed) even under the true potential, and the paper's pooled statistic sees non-Gaussianity
that has nothing to do with the geometry. Dividing each entry by an estimate of a_i b_j removes it.

The estimate: alternating normalisation (Sinkhorn scaling) by mean absolute values,

    a_i <- mean_j |d_ij / b_j|,    b_j <- mean_i |d_ij / a_i|,

repeated to a fixed point where every row and column of |d_ij / (a_i b_j)| has mean 1 (or by
root mean squares, estimator="rms"; for a Gaussian both estimate a_i b_j up to a constant, and
the statistic is scale-free). It uses
only the change itself (no activities are needed), works on any set of synapses that carry a
presynaptic and a postsynaptic unit id (a dense matrix, a conv kernel with rows = all input axes
and columns = output channels, or a connectomics synapse table), and leaves out entries marked
invalid (unchanged or non-finite). Units with fewer than `min_count` valid synapses cannot have a
scale of their own; they share one pooled scale.

Two layouts:
  - `unit_scales(d, rows, cols, valid)` on unit ids (numpy, any sparsity pattern);
  - `unit_scales_dense(d, valid)` on a dense [rows, cols] block (jax, jit-able), for parameter
    pytrees with millions of weights.
Both return the normalised change z_ij = d_ij / (a_i b_j) (NaN where invalid).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

MIN_COUNT = 20  # valid synapses a unit needs for a scale of its own (fewer: too noisy an
#                estimate; its error would itself make the normalised change a scale mixture)
MAX_ITER = 100
TOL = 1e-7      # relative change of the scales at which the alternation stops
NOISE_FLOOR = 0.1  # noise-corrected mean squares are kept >= this fraction of the raw ones


class UnitIds(NamedTuple):
  """The presynaptic (row) and postsynaptic (column) unit of every synapse of a flat vector."""

  rows: np.ndarray  # int, [n]
  cols: np.ndarray  # int, [n]

  @property
  def n_rows(self) -> int:
    return int(self.rows.max()) + 1 if self.rows.size else 0

  @property
  def n_cols(self) -> int:
    return int(self.cols.max()) + 1 if self.cols.size else 0


def _check_change(d, what: str = "change") -> np.ndarray:
  """d as a real float64 array with at least one entry, or a ValueError/TypeError naming it."""
  arr = np.asarray(d)
  if np.iscomplexobj(arr):
    raise TypeError(f"the {what} is complex: unit scales need real changes (take .real or "
                    "abs() explicitly if that is what you mean).")
  if arr.size == 0:
    raise ValueError(f"the {what} is empty: unit scales need at least one synapse.")
  return arr.astype(np.float64)


def _check_ids(ids, n: int) -> "UnitIds":
  if not isinstance(ids, UnitIds):
    if isinstance(ids, tuple) and len(ids) == 2:
      ids = UnitIds(np.asarray(ids[0]), np.asarray(ids[1]))
    else:
      raise TypeError(f"ids must be mdgeom.scales.UnitIds(rows, cols) (or a (rows, cols) pair of "
                      f"integer arrays), not {type(ids).__name__}; for a weight matrix use "
                      "mdgeom.scales.ids_for_shape(w.shape).")
  rows, cols = np.asarray(ids.rows), np.asarray(ids.cols)
  for name, x in (("rows", rows), ("cols", cols)):
    if x.size and not np.issubdtype(x.dtype, np.integer):
      raise TypeError(f"unit ids ({name}) must be integers, not {x.dtype}.")
    if x.size and x.min() < 0:
      raise ValueError(f"unit ids ({name}) must be >= 0; found {int(x.min())}.")
  return UnitIds(rows.ravel(), cols.ravel())


def ids_for_shape(shape, offset_rows: int = 0, offset_cols: int = 0) -> UnitIds:
  """Unit ids of a dense array, flattened in C order: rows = all leading axes, columns = the last.

  A 2-D matrix gives rows = axis 0 and columns = axis 1. Flax kernels are [in, out] (dense) and
  [kh, kw, in, out] (conv), so rows are the inputs (all input axes) and columns the output units.
  A 1-D array has no unit structure: one row, one column per entry... which would give every entry
  its own scale, so it is treated as a single unit (rows = columns = 0).
  """
  shape = tuple(int(s) for s in shape)
  n = int(np.prod(shape)) if shape else 1
  if len(shape) < 2:
    zeros = np.zeros(n, np.int64)
    return UnitIds(zeros + offset_rows, zeros + offset_cols)
  n_cols = shape[-1]
  n_rows = n // n_cols
  r = np.repeat(np.arange(n_rows), n_cols) + offset_rows
  c = np.tile(np.arange(n_cols), n_rows) + offset_cols
  return UnitIds(r, c)


def concat_ids(parts: list[UnitIds]) -> UnitIds:
  """Ids of several blocks laid end to end; each block's units are its own (offsets added)."""
  rows, cols, r0, c0 = [], [], 0, 0
  for p in parts:
    rows.append(p.rows + r0)
    cols.append(p.cols + c0)
    r0 += p.n_rows
    c0 += p.n_cols
  return UnitIds(np.concatenate(rows), np.concatenate(cols))


def merge_small_units(ids: np.ndarray, valid: np.ndarray,
                      min_count: int = MIN_COUNT) -> tuple[np.ndarray, int]:
  """Relabels units with fewer than min_count valid entries into one shared unit (the last id);
  returns the new ids and the number of units."""
  counts = np.bincount(ids[valid], minlength=int(ids.max()) + 1 if ids.size else 0)
  small = counts < min_count
  if not small.any():
    return ids, counts.size
  new = np.cumsum(~small) - 1
  shared = int((~small).sum())
  mapping = np.where(small, shared, new)
  return mapping[ids], shared + 1


class Scales(NamedTuple):
  z: np.ndarray          # d / (a_row b_col), NaN where invalid
  row_scale: np.ndarray  # a per valid entry's row unit (after merging small units)
  col_scale: np.ndarray
  iterations: int
  n_row_units: int
  n_col_units: int


def unit_scales(d, ids: UnitIds, valid=None, *, estimator: str = "abs", noise_var=None,
                min_count: int = MIN_COUNT, max_iter: int = MAX_ITER, tol: float = TOL) -> Scales:
  """Alternating row/column RMS normalisation of a flat change `d` with unit ids (numpy, float64).

  Returns the normalised change and the scales. Invalid entries (valid=False or non-finite d) are
  left out of every mean and come back as NaN. Rows or columns whose change is exactly zero
  everywhere keep scale 1 (their normalised change stays 0). `noise_var` (per entry): the
  variance that measurement noise adds to each d; the scales are then fitted to the noise-free
  part, d^2 - noise_var (a unit's activity scales its learning, not its measurement noise);
  this needs estimator="rms".

  estimator: "abs" (default) fits the scales to mean absolute values, "rms" to root mean
  squares. Both estimate a_i b_j consistently for a Gaussian change; mean absolute values are
  pulled less by the heavy tails that a wrong geometry puts into its change, so the unit model
  absorbs less of the evidence against it (benchmarks/unit_scales_study.py: on finetuned
  networks "abs" gives both a lower Delta-CDF under the trained potential and a wider margin to
  the runner-up than "rms").
  """
  if estimator not in ("abs", "rms"):
    raise ValueError(f"unknown estimator {estimator!r}: use 'abs' or 'rms'.")
  if noise_var is not None and estimator != "rms":
    raise ValueError("noise_var corrects mean squares: use estimator='rms' with it.")
  if not (isinstance(max_iter, (int, np.integer)) and max_iter >= 1):
    raise ValueError(f"max_iter = {max_iter!r}: the alternation needs at least 1 iteration.")
  if noise_var is not None:
    nv = np.asarray(noise_var, np.float64)
    if np.any(nv[np.isfinite(nv)] < 0):
      raise ValueError("noise_var holds negative values: it is a variance (>= 0).")
  d = _check_change(d).ravel()
  ids = _check_ids(ids, d.size)
  if ids.rows.shape != d.shape or ids.cols.shape != d.shape:
    raise ValueError(f"unit ids have {ids.rows.size} and {ids.cols.size} entries but the change "
                     f"has {d.size}: every synapse needs a row and a column unit.")
  v = np.isfinite(d) if valid is None else (np.asarray(valid, bool).ravel() & np.isfinite(d))
  if noise_var is not None:
    v &= np.isfinite(np.asarray(noise_var, np.float64).ravel())
  rows, n_r = merge_small_units(ids.rows, v, min_count)
  cols, n_c = merge_small_units(ids.cols, v, min_count)
  d2 = np.where(v, d, 0.0) ** 2 if estimator == "rms" else np.abs(np.where(v, d, 0.0))
  raw = d2
  if noise_var is not None:
    d2 = d2 - np.where(v, np.asarray(noise_var, np.float64).ravel(), 0.0)
  cnt_r = np.maximum(np.bincount(rows, v.astype(np.float64), minlength=n_r), 1.0)
  cnt_c = np.maximum(np.bincount(cols, v.astype(np.float64), minlength=n_c), 1.0)
  a = np.ones(n_r)
  b = np.ones(n_c)
  it = 0
  power = 2.0 if estimator == "rms" else 1.0

  def rms(ids_, other, n_units, cnt):
    # noise-corrected mean square, kept >= NOISE_FLOOR x the uncorrected one: a unit whose
    # change is mostly noise gets a small scale, never zero or negative
    m = np.bincount(ids_, d2 / other ** power, minlength=n_units) / cnt
    if noise_var is not None:
      m = np.maximum(m, NOISE_FLOOR * np.bincount(ids_, raw / other ** power, minlength=n_units)
                     / cnt)
    m = np.maximum(m, 0.0) ** (1.0 / power)
    return np.where(m > 0, m, 1.0)

  for it in range(1, max_iter + 1):
    a_new = rms(rows, b[cols], n_r, cnt_r)
    b_new = rms(cols, a_new[rows], n_c, cnt_c)
    # the product a_i b_j is what matters (a -> a t, b -> b / t leaves it unchanged)
    g = np.exp(np.mean(np.log(b_new)))
    a_new, b_new = a_new * g, b_new / g
    change = max(np.max(np.abs(a_new / a - 1.0)), np.max(np.abs(b_new / b - 1.0)))
    a, b = a_new, b_new
    if change < tol:
      break
  z = np.where(v, d / (a[rows] * b[cols]), np.nan)
  return Scales(z, a[rows], b[cols], it, n_r, n_c)


@functools.partial(jax.jit, static_argnums=3)
def _dense_scales(d, valid, min_count, estimator="abs"):
  v = valid & jnp.isfinite(d)
  power = 2.0 if estimator == "rms" else 1.0
  d2 = jnp.abs(jnp.where(v, d, 0.0)) ** power
  vf = v.astype(d.dtype)
  cnt_r, cnt_c = vf.sum(1), vf.sum(0)
  small_r, small_c = cnt_r < min_count, cnt_c < min_count

  def unit_mean(other, axis, cnt, small):
    # mean of |d|^power over each unit along `axis` (other units divided out); units with too
    # few synapses share one pooled value
    s = (d2 / jnp.expand_dims(other ** power, axis)).sum(1 - axis)
    pooled = jnp.sum(jnp.where(small, s, 0.0)) / jnp.maximum(jnp.sum(jnp.where(small, cnt, 0.0)),
                                                             1.0)
    m = jnp.where(small, pooled, s / jnp.maximum(cnt, 1.0)) ** (1.0 / power)
    return jnp.where(m > 0, m, 1.0)

  row_rms = lambda b: unit_mean(b, 0, cnt_r, small_r)
  col_rms = lambda a: unit_mean(a, 1, cnt_c, small_c)

  def body(c):
    a, b, _, it = c
    a_new = row_rms(b)
    b_new = col_rms(a_new)
    g = jnp.exp(jnp.mean(jnp.log(b_new)))
    a_new, b_new = a_new * g, b_new / g
    change = jnp.maximum(jnp.max(jnp.abs(a_new / a - 1.0)), jnp.max(jnp.abs(b_new / b - 1.0)))
    return a_new, b_new, change, it + 1

  def cond(c):
    return (c[2] >= TOL) & (c[3] < MAX_ITER)

  a0 = jnp.ones(d.shape[0], d.dtype)
  b0 = jnp.ones(d.shape[1], d.dtype)
  a, b, _, it = jax.lax.while_loop(cond, body, (a0, b0, jnp.asarray(jnp.inf, d.dtype), 0))
  z = jnp.where(v, d / (a[:, None] * b[None, :]), jnp.nan)
  return z, it


def _checks_concrete(d) -> bool:
  return not isinstance(d, jax.core.Tracer)


def unit_scales_dense(d, valid=None, *, min_count: int = MIN_COUNT, estimator: str = "abs"):
  """The same normalisation on a dense block of any rank (rows = leading axes, columns = the last
  axis; a 1-D block is one unit), in jax: returns z of d's shape (NaN where invalid)."""
  if estimator not in ("abs", "rms"):
    raise ValueError(f"unknown estimator {estimator!r}: use 'abs' or 'rms'.")
  if _checks_concrete(d):
    _check_change(d)
  d = jnp.asarray(d)
  shape = d.shape
  d2 = d.reshape(1, -1) if d.ndim < 2 else d.reshape(-1, shape[-1])
  if d.ndim < 2:
    d2 = d2.reshape(-1, 1)  # one column: every entry in one column unit, rows pooled below
    v = jnp.ones(d2.shape, bool) if valid is None else jnp.asarray(valid).reshape(d2.shape)
    z, _ = _dense_scales(d2, v, d2.shape[0] + 1, estimator)  # no row gets a scale of its own
    return z.reshape(shape)
  v = jnp.ones(d2.shape, bool) if valid is None else jnp.asarray(valid).reshape(d2.shape)
  z, _ = _dense_scales(d2, v, min_count, estimator)
  return z.reshape(shape)


def normalise(d, ids: UnitIds | None, valid=None, **kwargs) -> np.ndarray:
  """d / (a_i b_j) with unit ids, or d itself (NaN where invalid) when ids is None."""
  if ids is None:
    d = np.asarray(d, np.float64)
    v = np.isfinite(d) if valid is None else (np.asarray(valid, bool) & np.isfinite(d))
    return np.where(v, d, np.nan)
  return unit_scales(d, ids, valid, **kwargs).z
