"""Per-unit scales: the alternating RMS normalisation, its invariances, and its use in
rank_potentials."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdgeom import analysis, potentials, scales, synthetic


def rank1_matrix(seed, rows=30, cols=20, spread=1.0):
  rng = np.random.default_rng(seed)
  a = np.exp(spread * rng.standard_normal(rows))
  b = np.exp(spread * rng.standard_normal(cols))
  return a[:, None] * b[None, :] * rng.standard_normal((rows, cols)), a, b


@given(st.integers(0, 10 ** 6), st.floats(0.1, 2.0))
def test_invariant_to_row_and_column_rescaling(seed, spread):
  """z is unchanged when each row and column is multiplied by a positive factor: the model
  absorbs exactly the a_i b_j structure."""
  d, _, _ = rank1_matrix(seed)
  rng = np.random.default_rng(seed + 1)
  r = np.exp(spread * rng.standard_normal(d.shape[0]))
  c = np.exp(spread * rng.standard_normal(d.shape[1]))
  ids = scales.ids_for_shape(d.shape)
  z1 = scales.unit_scales(d.ravel(), ids).z
  z2 = scales.unit_scales((r[:, None] * d * c[None, :]).ravel(), ids).z
  np.testing.assert_allclose(z1, z2, rtol=1e-5, atol=1e-9)


def test_fixed_point_rows_and_columns_have_unit_rms_and_scales_are_recovered():
  d, a, _ = rank1_matrix(0, rows=200, cols=150)
  for estimator, stat in (("rms", lambda z, ax: np.sqrt(np.mean(z ** 2, ax))),
                          ("abs", lambda z, ax: np.mean(np.abs(z), ax))):
    res = scales.unit_scales(d.ravel(), scales.ids_for_shape(d.shape), estimator=estimator)
    z = res.z.reshape(d.shape)
    np.testing.assert_allclose(stat(z, 1), 1.0, atol=1e-5)
    np.testing.assert_allclose(stat(z, 0), 1.0, atol=1e-5)
    est = res.row_scale.reshape(d.shape)[:, 0]
    assert np.corrcoef(np.log(est), np.log(a))[0, 1] > 0.97
  with pytest.raises(ValueError, match="estimator='rms'"):
    scales.unit_scales(d.ravel(), scales.ids_for_shape(d.shape), noise_var=np.ones(d.size))


def test_dense_jax_equals_ids_numpy_with_invalid_entries_and_small_units():
  d, _, _ = rank1_matrix(3, rows=40, cols=25)
  valid = np.random.default_rng(4).random(d.shape) > 0.2
  valid[0, :20] = False  # row 0 keeps 5 entries: below MIN_COUNT, shares the pooled scale
  ids = scales.ids_for_shape(d.shape)
  for estimator in ("abs", "rms"):
    z_ids = scales.unit_scales(d.ravel(), ids, valid.ravel(), estimator=estimator).z
    z_ids = z_ids.reshape(d.shape)
    with jax.enable_x64(True):
      z_dense = np.asarray(scales.unit_scales_dense(jnp.asarray(d), jnp.asarray(valid),
                                                    estimator=estimator))
    np.testing.assert_allclose(z_dense, z_ids, rtol=1e-6, equal_nan=True)
    assert np.all(np.isnan(z_ids[~valid]))


def test_conv_kernel_ids_rows_are_all_input_axes():
  ids = scales.ids_for_shape((3, 3, 4, 8))
  assert ids.n_rows == 36 and ids.n_cols == 8
  one_d = scales.ids_for_shape((10,))
  assert one_d.n_rows == 1 and one_d.n_cols == 1
  with pytest.raises(ValueError, match="every synapse needs"):
    scales.unit_scales(np.ones(5), one_d)


def test_rank_potentials_units_and_center_options():
  w0, w = synthetic.weight_pair(jax.random.PRNGKey(0), potentials.get("2-norm"), (60, 80),
                                unit_spread=0.7, drift=0.6)
  cands = ["1.5-norm", "2-norm", "3-norm"]
  paper = analysis.rank_potentials(w0, w, cands)
  new = analysis.rank_potentials(w0, w, cands, center=True, scales="units")
  assert paper.scales == "pooled" and not paper.center
  assert new.scales == "units" and new.center
  by_paper = {r.name: r.delta_cdf for r in paper.results}
  by_new = {r.name: r.delta_cdf for r in new.results}
  assert by_new["2-norm"] < 0.3 * by_paper["2-norm"]
  assert new.best.name == "2-norm"
  # the centred, unit-scaled statistic equals delta_cdf of the normalised change
  z = scales.unit_scales(np.asarray(w - w0, np.float64).ravel(),
                         scales.ids_for_shape(w0.shape)).z  # (default estimator, as there)
  assert abs(analysis.delta_cdf(z, center=True) - by_new["2-norm"]) < 2e-3
  with pytest.raises(ValueError, match="unknown scales"):
    analysis.rank_potentials(w0, w, cands, scales="rows")
