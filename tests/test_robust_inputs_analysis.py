"""Bad inputs to the analysis and inference entry points: each gets an exception of a documented
type whose message names the problem, never a number (hypothesis over the kinds of bad input)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mdgeom
from mdgeom import analysis
from mdgeom.inference import InferenceError, infer_geometry

KINDS = ["nan", "inf", "empty", "constant", "mismatched", "complex"]


def good_pair(n, seed):
  rng = np.random.default_rng(seed)
  w0 = np.exp(rng.normal(-2, 0.5, n))
  return w0, w0 * np.exp(0.1 * rng.standard_normal(n))


def corrupt(kind, w0, w):
  """(w0, w, expected exception type, regex the message must match)."""
  if kind == "nan":
    w = w.copy()
    w[len(w) // 2] = np.nan
    return w0, w, ValueError, "NaN"
  if kind == "inf":
    w0 = w0.copy()
    w0[0] = np.inf
    return w0, w, ValueError, "Inf"
  if kind == "empty":
    return w0[:0], w[:0], ValueError, "at least|no weight|only 0"
  if kind == "constant":
    return w0, w0.copy(), ValueError, "no weight changed|none of the|zero spread|constant"
  if kind == "mismatched":
    return w0, w[:-1], ValueError, "shape|paired one to one"
  return w0 + 0j, w, TypeError, "complex"


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(KINDS), st.sampled_from([40, 120]), st.integers(0, 1000))
def test_rank_potentials_and_dual_change(kind, n, seed):
  w0, w, exc, msg = corrupt(kind, *good_pair(n, seed))
  with pytest.raises(exc, match=msg):
    mdgeom.rank_potentials(w0, w, ["negative_entropy", "2-norm"])
  if kind not in ("constant", "empty"):
    with pytest.raises(exc, match=msg):
      mdgeom.dual_change("2-norm", w0, w)
    with pytest.raises(exc, match=msg):
      mdgeom.change_magnitude("2-norm", w0, w)


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(KINDS), st.sampled_from([40, 120]), st.integers(0, 1000))
def test_infer_geometry(kind, n, seed):
  w0, w, exc, msg = corrupt(kind, *good_pair(n, seed))
  exc = InferenceError if exc is ValueError else (InferenceError, TypeError)
  with pytest.raises(exc, match=msg.replace("zero spread|constant", "no weight changed")):
    infer_geometry(w0, w, ["negative_entropy", "2-norm"], method="delta_cdf", n_boot=20,
                   n_null=20)
  with pytest.raises(exc, match=msg.replace("zero spread|constant", "no weight changed")):
    infer_geometry(w0, w, ["negative_entropy", "2-norm"])


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(["nan", "inf", "empty", "constant", "complex", "single"]),
       st.sampled_from([25, 100]), st.integers(0, 1000), st.sampled_from(["grid", "exact"]),
       st.booleans())
def test_delta_cdf_and_normality_tests(kind, n, seed, method, center):
  x = np.random.default_rng(seed).standard_normal(n)
  if kind == "nan":
    x[3], exc, msg = np.nan, ValueError, "NaN"
  elif kind == "inf":
    x[0], exc, msg = -np.inf, ValueError, "Inf"
  elif kind == "empty":
    x, exc, msg = x[:0], ValueError, "at least 2"
  elif kind == "single":
    x, exc, msg = x[:1], ValueError, "at least 2"
  elif kind == "constant":
    x, exc, msg = np.full(n, x[0]), analysis.DegenerateChangeError, "constant"
  else:
    x, exc, msg = x + 1j, TypeError, "complex"
  with pytest.raises(exc, match=msg):
    mdgeom.delta_cdf(x, method, center=center)
  with pytest.raises(exc, match=msg):
    mdgeom.normality_tests(x, n_mc=20)


def test_bad_settings_name_the_setting():
  w0, w = good_pair(100, 0)
  for kwargs, msg in (({"noise": float("nan")}, "noise"), ({"level": 2.0}, "level"),
                      ({"n_boot": 3}, "n_boot"), ({"unchanged": "drop"}, "unchanged"),
                      ({"scales": "rows"}, "scales"), ({"center": "yes"}, "center")):
    with pytest.raises(InferenceError, match=msg):
      infer_geometry(w0, w, ["2-norm"], method="delta_cdf", **kwargs)
  # the Delta-CDF method's options are refused by the model, never silently ignored
  for kwargs in ({"n_boot": 50}, {"center": False}, {"betas": [0.1]}, {"p_step": 0.1}):
    with pytest.raises(InferenceError, match="method='delta_cdf' only"):
      infer_geometry(w0, w, ["2-norm"], **kwargs)
  for kwargs, msg in (({"noise": float("nan")}, "noise"), ({"level": 2.0}, "level"),
                      ({"unchanged": "drop"}, "unchanged"), ({"scales": "rows"}, "scales"),
                      ({"gain": -1.0}, "gain"), ({"resolution": 2.0}, "resolution")):
    with pytest.raises(InferenceError, match=msg):
      infer_geometry(w0, w, ["2-norm"], **kwargs)
  with pytest.raises(ValueError, match="unknown Delta-CDF method"):
    mdgeom.rank_potentials(w0, w, method="kde")
