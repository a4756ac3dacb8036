"""Bad input to mdgeom.scales and to every entry point of a potential (issue: no silent answers).

Each case must raise an error that names the problem, never return a number."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdgeom import potentials, scales
from mdgeom.inference import InferenceError, design, infer_geometry


def _block(seed=0, shape=(20, 30)):
  return np.random.default_rng(seed).normal(size=shape)


@pytest.mark.parametrize("call,exc,msg", [
    (lambda d, ids: scales.unit_scales_dense(d, estimator="banana"), ValueError,
     "unknown estimator 'banana'"),
    (lambda d, ids: scales.unit_scales(d, ids, max_iter=0), ValueError, "max_iter = 0"),
    (lambda d, ids: scales.unit_scales(d, ids, estimator="rms", noise_var=-np.ones(d.size)),
     ValueError, "negative"),
    (lambda d, ids: scales.unit_scales_dense(d + 1j), TypeError, "complex"),
    (lambda d, ids: scales.unit_scales(d + 1j, ids), TypeError, "complex"),
    (lambda d, ids: scales.unit_scales_dense(np.zeros((0, 3))), ValueError, "empty"),
    (lambda d, ids: scales.unit_scales(np.zeros(0), scales.UnitIds(np.zeros(0, int),
                                                                   np.zeros(0, int))),
     ValueError, "empty"),
    (lambda d, ids: scales.unit_scales(d.ravel(), None), TypeError, "UnitIds"),
    (lambda d, ids: scales.unit_scales(d.ravel(), scales.UnitIds(ids.rows - 1, ids.cols)),
     ValueError, "must be >= 0"),
    (lambda d, ids: scales.unit_scales(d.ravel(), scales.UnitIds(ids.rows + 0.5, ids.cols)),
     TypeError, "integers"),
])
def test_scales_name_the_problem(call, exc, msg):
  d = _block()
  with pytest.raises(exc, match=msg):
    call(d, scales.ids_for_shape(d.shape))


def test_scales_accept_a_plain_pair_of_id_arrays():
  d = _block()
  ids = scales.ids_for_shape(d.shape)
  a = scales.unit_scales(d.ravel(), ids)
  b = scales.unit_scales(d.ravel(), (ids.rows, ids.cols))
  np.testing.assert_array_equal(a.z, b.z)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(-2, 2), st.floats(-2, 2))
def test_unit_scales_are_equivariant(seed, log_row, log_col):
  """Scaling one row and one column of the change leaves the normalised change unchanged (up to
  the overall constant that the normalisation fixes)."""
  rng = np.random.default_rng(seed)
  d = rng.normal(size=(25, 30)) * np.exp(rng.normal(0, 0.5, (25, 1)))
  ids = scales.ids_for_shape(d.shape)
  s = d.copy()
  s[3] *= np.exp(log_row)
  s[:, 7] *= np.exp(log_col)
  z0 = scales.unit_scales(d.ravel(), ids, min_count=5).z
  z1 = scales.unit_scales(s.ravel(), ids, min_count=5).z
  np.testing.assert_allclose(z1 / np.median(np.abs(z1)), z0 / np.median(np.abs(z0)), rtol=1e-4,
                             atol=1e-6)


def _concave(w):
  return -w * w


def _nan(w):
  return w * np.nan


@pytest.mark.parametrize("spec,msg", [
    ("builtins:abs", "f' takes the same value"),
    ("collections:OrderedDict", "evaluating it on weights failed"),
    ("tests.test_robust_inputs_scales:_concave", "not convex"),
    ("tests.test_robust_inputs_scales:_nan", "nan"),
])
def test_import_paths_are_checked_as_potentials(spec, msg):
  with pytest.raises(ValueError, match=msg):
    potentials.get(spec)


def test_potential_objects_are_checked_where_they_enter():
  concave = potentials.potential(_concave, name="concave")
  w0 = 0.1 * np.exp(np.random.default_rng(0).normal(0, 0.5, 200))
  w = w0 * np.exp(np.random.default_rng(1).normal(0, 0.1, 200))
  with pytest.raises(InferenceError, match="'concave' is not a usable potential.*not convex"):
    infer_geometry(w0, w, ["2-norm", concave], noise=0)
  with pytest.raises(InferenceError, match="not a usable potential"):
    design.identification_power(["2-norm"], ["2-norm", concave], n_synapses=(100,),
                                noise=(0.0,), n_rep=2)
  with pytest.raises(ValueError, match="not a usable potential"):
    import mdgeom
    mdgeom.rank_potentials(w0, w, ["2-norm", concave])
  with pytest.raises(InferenceError, match="tests.test_robust_inputs_scales:_nan"):
    infer_geometry(w0, w, ["tests.test_robust_inputs_scales:_nan"], noise=0)
