"""Which geometry of plasticity explains weights measured before and after learning?

`infer_geometry(w0, w)` is the front door: it checks and flattens the inputs (arrays of any
shape, parameter pytrees, unit ids of a synapse table, a repeated BEFORE measurement) and runs
one of two methods:

  method="model"      (default) the measurement model (`mdgeom.inference.model`): a likelihood
                      of AFTER given BEFORE for each geometry, with drift, change size, per-unit
                      scales, a gain between the sessions, measurement noise and silent synapses
                      estimated; one interval for p (p = 1: negative entropy);
  method="delta_cdf"  the Delta-CDF of each candidate's dual change, Theorem 1's Gaussianity test
                      as the paper uses it, with centring, unit scales and a known noise level
                      (`mdgeom.inference.delta_cdf`).

docs/inference.md explains both, and benchmarks/inference_calibration.py measures their coverage.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import numpy as np

from mdgeom import analysis
from mdgeom import potentials as potentials_lib
from mdgeom import scales as scales_lib
from mdgeom.inference import delta_cdf, model
from mdgeom.inference.delta_cdf import GeometryInference
from mdgeom.inference.io import MIN_WEIGHTS, InferenceError, check_pair
from mdgeom.inference.report import ModelInference

METHODS = ("model", "delta_cdf")
SCALES = ("auto", "units", "pooled")

__all__ = ["GeometryInference", "ModelInference", "flatten_pair", "infer_geometry"]


def _is_array_like(x) -> bool:
  return isinstance(x, (np.ndarray, jax.Array, list, tuple, float, int, np.generic))


def flatten_pair(w0, w, where=None, names=("BEFORE", "AFTER")) -> tuple[
    np.ndarray, np.ndarray, scales_lib.UnitIds | None, list[str]]:
  """Flat float64 (w0, w), unit ids (None for 1-D data) and leaf names, from arrays of any shape
  or parameter pytrees (dense kernels [in, out], conv kernels [..., in, out]: rows = all input
  axes, columns = outputs)."""
  if _is_array_like(w0) and _is_array_like(w):
    a, b = np.asarray(w0), np.asarray(w)
    check_pair(a, b, min_weights=0, names=names)
    ids = scales_lib.ids_for_shape(a.shape) if a.ndim >= 2 else None
    return a.astype(np.float64).ravel(), b.astype(np.float64).ravel(), ids, ["<array>"]
  try:
    leaf_names, shapes, a, b = analysis.select_leaves(w0, w, where)
  except ValueError as e:
    raise InferenceError(str(e)) from None
  a, b = np.asarray(a), np.asarray(b)
  check_pair(a, b, min_weights=0, names=names)
  ids = scales_lib.concat_ids([scales_lib.ids_for_shape(s) for s in shapes])
  return a.astype(np.float64), b.astype(np.float64), ids, leaf_names


def _units(units, n: int) -> scales_lib.UnitIds:
  """Unit ids from a UnitIds or a (pre, post) pair of label arrays, checked against n."""
  if isinstance(units, scales_lib.UnitIds):
    rows, cols = np.asarray(units.rows), np.asarray(units.cols)
  elif isinstance(units, (tuple, list)) and len(units) == 2:
    try:
      rows = np.unique(np.asarray(units[0]).ravel(), return_inverse=True)[1]
      cols = np.unique(np.asarray(units[1]).ravel(), return_inverse=True)[1]
    except TypeError as e:
      raise InferenceError(f"units: cannot read the two label arrays ({e}).") from None
  else:
    raise InferenceError(f"units={type(units).__name__}: give mdgeom.scales.UnitIds or a pair "
                         "(pre, post) of unit labels, one per synapse.")
  if rows.shape != (n,) or cols.shape != (n,):
    raise InferenceError(f"unit ids cover {rows.size} and {cols.size} synapses but the weights "
                         f"have {n}: one row and one column unit per synapse.")
  if not (np.issubdtype(rows.dtype, np.integer) and np.issubdtype(cols.dtype, np.integer)):
    raise InferenceError("unit ids must be integers (or labels given as a (pre, post) pair).")
  if rows.min(initial=0) < 0 or cols.min(initial=0) < 0:
    raise InferenceError("unit ids must be >= 0 (labels of any kind: pass them as (pre, post)).")
  return scales_lib.UnitIds(rows.astype(np.int64), cols.astype(np.int64))


def _check_int(name, v, lo, hi=None, allow_none=False):
  if v is None and allow_none:
    return None
  if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < lo or (
      hi is not None and v > hi):
    bound = f">= {lo}" + (f" and <= {hi}" if hi is not None else "")
    raise InferenceError(f"{name} = {v!r} must be an integer {bound}.")
  return int(v)


def infer_geometry(
    w0: Any,
    w: Any,
    candidates: Iterable[str | potentials_lib.Potential] | None = None,
    *,
    method: str = "model",
    noise: Any = None,
    gain: Any = "auto",
    repeat: Any = None,
    silent: bool = True,
    scales: str = "auto",
    units=None,
    level: float = 0.05,
    resolution: float = model.RESOLUTION,
    p_max: float = 4.0,
    max_synapses: int | None = model.MAX_SYNAPSES,
    seed: int = 0,
    where=None,
    center: bool = True,
    unchanged: str = "exclude",
    ci_level: float = 0.95,
    n_boot: int = 200,
    n_null: int = 1000,
    n_sim: int = 200,
    p_min: float = 1.1,
    p_step: float = 0.05,
    betas=None,
    grow_p: bool = True,
    min_weights: int = MIN_WEIGHTS,
) -> ModelInference | GeometryInference:
  """Which candidate geometries explain paired weights w0 (before) and w (after learning)?

  Args:
    w0, w: arrays of any shape (2-D: a weight matrix [post, pre]) or parameter pytrees of equal
      structure (`where` filters leaves, as in `rank_potentials`).
    candidates: potentials, names or "package.module:function". Default (method="model"): the
      p-norms as one continuous family over [1, p_max] (p = 1 is negative entropy), hypentropy
      over beta, and every registered potential.
    method: "model" (the measurement model, default) or "delta_cdf" (the paper's statistic with
      centring, unit scales and a known noise level; its own options are below).
    noise: "auto" (estimated; the model's default) or the relative SD of multiplicative
      measurement noise on both measurements (0.05 = 5%; the model then checks it against the
      data). 0 for exact weights, such as a trained network's. The Delta-CDF method's default
      is 0.
    gain: "auto" (a gain between the sessions, estimated and tested against 1) or a fixed value.
    repeat: a second BEFORE measurement of the same synapses (same shape as w0): it measures the
      noise directly, and separates it from a change.
    silent: with noise, a fraction of synapses that did not change is part of the model.
    scales: "auto" = per-unit scales a_i b_j when the data carry units (2-D arrays, pytrees,
      `units`), else pooled; "units" requires them; "pooled": one scale.
    units: the unit of each synapse of flat data: `mdgeom.scales.UnitIds` or (pre, post) labels.
    level: 1 - coverage of the confidence statements.
    resolution: the p interval is widened by it on each side (model; see docs/inference.md).
    max_synapses: the model uses at most this many synapses, drawn at random (None: all).
    seed: every random draw derives from it.
    center, unchanged, ci_level, n_boot, n_null, n_sim, p_min, p_step, betas, grow_p,
    min_weights: the Delta-CDF method's (`mdgeom.inference.delta_cdf.infer_delta_cdf`).

  Returns a ModelInference (method="model") or GeometryInference (method="delta_cdf"), each with
  `.best`, `.summary`, `.table()`, `.to_dict()`, `.ranking`, `.p_estimate`, `.p_interval`.
  """
  if method not in METHODS:
    raise InferenceError(f"method={method!r}: use 'model' (the measurement model) or "
                         "'delta_cdf'.")
  if isinstance(candidates, (str, potentials_lib.Potential)):
    raise InferenceError(f"candidates={candidates!r} is a single candidate: pass a list, e.g. "
                         f"[{candidates!r}] (or several: ['negative_entropy', '2-norm']).")
  seed = _check_int("seed", seed, 0, 2 ** 32 - 1)
  if scales not in SCALES and scales is not None:
    raise InferenceError(f"scales={scales!r}: use 'auto', 'units' or 'pooled'.")
  if not (isinstance(level, (int, float, np.floating)) and 0 < level <= 0.5):
    raise InferenceError(f"level = {level!r} must be in (0, 0.5].")
  a, b, ids, leaves = flatten_pair(w0, w, where)
  if units is not None:
    ids = _units(units, a.size)
  scales = scales or "auto"
  if scales == "units" and ids is None:
    raise InferenceError("scales='units' needs unit structure: a 2-D weight matrix, a parameter "
                         "pytree, or unit ids of each synapse (units=..., --units on the "
                         "command line).")
  use_ids = ids if scales in ("auto", "units") else None
  if method == "delta_cdf":
    if repeat is not None:
      raise InferenceError("repeat= (a repeated baseline) needs the measurement model "
                           "(method='model').")
    return delta_cdf.infer_delta_cdf(
        a, b, use_ids, leaves, candidates, center=center, unchanged=unchanged,
        noise=0.0 if noise is None else noise,
        level=level, ci_level=ci_level, n_boot=n_boot, n_null=n_null, n_sim=n_sim, seed=seed,
        p_min=p_min, p_max=p_max, p_step=p_step, betas=betas, grow_p=grow_p,
        min_weights=min_weights)
  # the Delta-CDF method's own options are errors with the model, not silently ignored
  own = {"center": (center, True), "ci_level": (ci_level, 0.95), "n_boot": (n_boot, 200),
         "n_null": (n_null, 1000), "n_sim": (n_sim, 200), "p_min": (p_min, 1.1),
         "p_step": (p_step, 0.05), "betas": (betas, None), "grow_p": (grow_p, True)}
  given = [k for k, (v, d) in own.items() if not (v is d or (v is not None and d is not None
                                                                and type(v) is type(d)
                                                                and v == d))]
  if given:
    raise InferenceError(f"{', '.join(given)}: option(s) of method='delta_cdf' only; the "
                         "measurement model (method='model') has no such setting. Pass "
                         "method='delta_cdf' to use them.")
  if unchanged != "exclude":
    raise InferenceError(f"unchanged={unchanged!r}: the measurement model leaves exactly "
                         "unchanged synapses out (with noise they are the silent fraction); "
                         "keeping them as zero changes is the Delta-CDF method's option.")
  max_synapses = _check_int("max_synapses", max_synapses, 100, allow_none=True)
  if not (np.isfinite(p_max) and 1.5 <= p_max <= 8):
    raise InferenceError(f"p_max = {p_max!r}: the p scan ends between 1.5 and 8.")
  rep = None
  if repeat is not None:
    rep, _, _, _ = flatten_pair(repeat, w0, where, names=("REPEAT", "BEFORE"))
  if a.size < min_weights:
    raise InferenceError(f"only {a.size} weights: the likelihood needs at least {min_weights}.")
  if not np.any(a != b):
    raise InferenceError("no weight changed between BEFORE and AFTER: there is no change to test.")
  return model.infer_model(a, b, candidates, ids=use_ids, repeat=rep,
                           noise="auto" if noise is None else noise, gain=gain,
                           silent=silent, level=level, resolution=resolution, p_max=p_max,
                           max_synapses=max_synapses, seed=seed, leaves=leaves)
