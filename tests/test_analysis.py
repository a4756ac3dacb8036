"""Analysis: Delta-CDF against brute force and numerical integration, dual change, ranking."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import integrate, stats

import mdgeom
from mdgeom import analysis as A
from mdgeom import potentials as P

GRID = np.linspace(-5, 5, 1000)


def brute_force_grid(x):
  """The authors' computation: an n x 1000 comparison matrix (float64)."""
  x = np.asarray(x, np.float64)
  xs = x / np.std(x, ddof=1)
  empirical = (GRID[:, None] > xs[None, :]).mean(axis=-1)
  return np.abs(empirical - stats.norm.cdf(GRID)).sum() * (GRID[1] - GRID[0])


def quad_w1(x):
  """int |F_n - Phi| over the real line by adaptive quadrature between sample points."""
  z = np.sort(np.asarray(x, np.float64) / np.std(np.asarray(x, np.float64), ddof=1))
  f = lambda t: abs(np.searchsorted(z, t, side="right") / z.size - stats.norm.cdf(t))
  pts = np.concatenate([[min(z[0], 0) - 40], z, [max(z[-1], 0) + 40]])
  return sum(integrate.quad(f, a, b, epsabs=1e-13)[0] for a, b in zip(pts[:-1], pts[1:]) if b > a)


samples = hnp.arrays(np.float64, st.integers(2, 300),
                     elements=st.floats(-1e3, 1e3, allow_subnormal=False))


@given(samples)
def test_grid_equals_brute_force(x):
  if np.std(x, ddof=1) <= 1e-9 * np.max(np.abs(x)):
    return  # constant up to rounding: the scale is rounding noise (constant raises, tested below)
  with jax.enable_x64(True):
    np.testing.assert_allclose(A.delta_cdf(x), brute_force_grid(x), rtol=0, atol=1e-12)
  # float32 input: the same value up to float32 scaling of the sample, for a spread whose square
  # is a normal float32 (below it the variance underflows and the constant-sample error is right)
  x32 = x.astype(np.float32)
  if np.std(x32.astype(np.float64), ddof=1) > np.sqrt(np.finfo(np.float32).tiny):
    np.testing.assert_allclose(A.delta_cdf(x32), brute_force_grid(x32), atol=1e-5)


def test_float32_sample_with_subnormal_spread_raises_the_constant_sample_error():
  # [0, 1.4e-45] in float32: its spread is a subnormal that the CPU flushes to zero.
  x32 = np.array([0.0, 1.4e-45], np.float32)
  with pytest.raises(ValueError, match="standard deviation is 0.0"):
    A.delta_cdf(x32)


@pytest.mark.parametrize("scale", [1e-25, 1e-18, 1e18, 1e30])
def test_float32_statistic_is_scale_free_where_the_variance_would_under_or_overflow(scale):
  # Changes of 1e-25 are float32 numbers, but their variance (1e-50) is not: the sample is put
  # near 1 by a power of two before its spread is computed.
  x = np.random.default_rng(0).standard_normal(5000).astype(np.float32)
  for center in (False, True):
    ref = A.delta_cdf(x, center=center)
    assert A.delta_cdf(x * np.float32(scale), center=center) == pytest.approx(ref, abs=2e-6)
    batch = A.delta_cdf_batch(np.stack([x, x * np.float32(scale)]), center=center)
    np.testing.assert_allclose(batch, [ref, ref], atol=2e-6)


def test_grid_equals_brute_force_heavy_tails_and_ties():
  rng = np.random.default_rng(0)
  cases = [rng.standard_cauchy(3000), rng.exponential(size=2000), np.repeat([1.0, -2.0, 3.0], 50),
           rng.standard_normal(4000) * 1e-20, np.round(rng.standard_normal(1000), 1)]
  for x in cases:
    with jax.enable_x64(True):
      np.testing.assert_allclose(A.delta_cdf(x), brute_force_grid(x), atol=1e-12)


@pytest.mark.parametrize("seed,n", [(0, 2), (1, 5), (2, 50), (3, 400)])
def test_exact_equals_numerical_integration(seed, n):
  x = np.random.default_rng(seed).standard_normal(n) * 2 + 0.5
  np.testing.assert_allclose(A.delta_cdf(x, method="exact"), quad_w1(x), rtol=1e-7, atol=1e-9)


def test_exact_is_wasserstein_distance_to_normal_quantiles():
  """W1 between the scaled sample and N(0, 1) by scipy, with N(0, 1) represented by 2e6 of its
  quantiles (an independent computation)."""
  x = np.random.default_rng(4).exponential(size=300)
  z = x / np.std(x, ddof=1)
  q = stats.norm.ppf((np.arange(2_000_000) + 0.5) / 2_000_000)
  np.testing.assert_allclose(A.delta_cdf(x, "exact"), stats.wasserstein_distance(z, q), atol=2e-4)


def test_grid_and_exact_agree_for_large_samples():
  x = np.random.default_rng(5).laplace(size=200_000)
  assert abs(A.delta_cdf(x, "grid") - A.delta_cdf(x, "exact")) < 2e-3


def test_gaussian_sample_has_small_delta_cdf_and_scaling_invariance():
  x = np.random.default_rng(6).standard_normal(100_000)
  assert A.delta_cdf(x) < 0.01
  np.testing.assert_allclose(A.delta_cdf(x * 37.5), A.delta_cdf(x), atol=1e-6)
  # not centred: a shifted Gaussian is penalised, unless center=True
  assert A.delta_cdf(x + 3.0) > 0.5
  np.testing.assert_allclose(A.delta_cdf(x + 3.0, center=True), A.delta_cdf(x - x.mean()),
                             atol=1e-5)


def test_delta_cdf_batch_matches_rows():
  x = np.random.default_rng(7).standard_normal((3, 4, 500)) ** 3
  batch = A.delta_cdf_batch(x)
  assert batch.shape == (3, 4)
  for idx in np.ndindex(3, 4):
    np.testing.assert_allclose(batch[idx], brute_force_grid(x[idx]), atol=1e-5)


def test_delta_cdf_errors():
  with pytest.raises(ValueError, match="NaN"):
    A.delta_cdf(np.array([1.0, np.nan, 2.0]))
  with pytest.raises(A.DegenerateChangeError, match="constant"):
    A.delta_cdf(np.zeros(10))
  with pytest.raises(ValueError, match="at least 2"):
    A.delta_cdf(np.array([1.0]))
  with pytest.raises(ValueError, match="method"):
    A.delta_cdf(np.arange(4.0), method="kde")


def test_dual_change_and_magnitude_formulas():
  rng = np.random.default_rng(8)
  w0 = rng.uniform(0.1, 1, 100) * rng.choice([-1, 1], 100)
  w = w0 * np.exp(0.05 * rng.standard_normal(100))  # multiplicative: no sign change
  for name, fp in [("2-norm", lambda v: v), ("3-norm", lambda v: np.sign(v) * v**2),
                   ("negative_entropy", lambda v: np.sign(v) * (np.log(np.abs(v)) + 1))]:
    d = A.dual_change(name, w0, w)
    np.testing.assert_allclose(d, fp(w) - fp(w0), rtol=1e-4, atol=1e-6)
    mag = A.change_magnitude(name, w0, w)
    np.testing.assert_allclose(mag, np.linalg.norm(fp(w) - fp(w0)) / np.linalg.norm(fp(w0)),
                               rtol=1e-4)


def test_unchanged_zero_weights_give_zero_not_nan():
  w0 = np.array([0.0, 0.5, -0.3, 0.0])
  w = np.array([0.0, 0.6, -0.2, 0.0])
  d = A.dual_change("negative_entropy", w0, w)
  assert np.all(np.isfinite(d)) and d[0] == 0 and d[3] == 0


def test_sign_flips_rule_out_negative_entropy():
  w0 = np.array([0.5, -0.3, 0.2, 0.1])
  w = np.array([0.4, 0.3, 0.0, 0.2])
  with pytest.raises(mdgeom.SignFlipError, match="1 weights changed sign and 1 reached") as e:
    A.dual_change("negative_entropy", w0, w)
  assert e.value.n_flips == 1 and e.value.n_zero == 1
  d = A.dual_change("negative_entropy", w0, w, allow_sign_flips=True)
  np.testing.assert_allclose(d[1], (np.log(0.3) + 1) - (-(np.log(0.3) + 1)), rtol=1e-6)
  A.dual_change("2-norm", w0, w)  # fine for a p-norm


def test_dual_change_input_errors():
  with pytest.raises(ValueError, match="shape mismatch"):
    A.dual_change("2-norm", np.ones(3), np.ones(4))
  with pytest.raises(ValueError, match="NaN"):
    A.dual_change("2-norm", np.ones(3), np.array([1.0, np.nan, 1.0]))
  with pytest.raises(ValueError, match="unknown potential"):
    A.dual_change("banana", np.ones(3), np.ones(3))


def synthetic(true, n=20_000, seed=0, scale=0.1):
  rng = np.random.default_rng(seed)
  w0 = rng.lognormal(-3, 0.5, n) * rng.choice([-1.0, 1.0], n)
  pot = P.get(true)
  y0 = np.asarray(pot.mirror_map(w0))
  xi = rng.standard_normal(n)
  w = np.asarray(pot.inverse_mirror_map(y0 + scale * np.std(y0) * xi, sign=np.sign(w0)))
  return w0.astype(np.float32), w.astype(np.float32)


@pytest.mark.parametrize("true,accept", [("negative_entropy", {"negative_entropy", "1.1-norm"}),
                                         ("2-norm", {"1.9-norm", "2-norm", "2.1-norm"}),
                                         ("3-norm", {"2.9-norm", "3-norm"})])
def test_rank_potentials_recovers_the_true_geometry(true, accept):
  w0, w = synthetic(true, scale=0.05)
  ranking = mdgeom.rank_potentials(w0, w)
  assert ranking.best.name in accept, ranking.table()
  names = [r.name for r in ranking.results]
  assert len(names) == 21 and ranking.n_weights == w0.size


def test_rank_potentials_on_pytrees_with_filter_and_unchanged_weights():
  w0, w = synthetic("2-norm", n=10_000, seed=1, scale=0.05)
  rng = np.random.default_rng(2)
  tree0 = {"conv": {"kernel": w0[:6000].reshape(60, 100)}, "dense": {"kernel": w0[6000:]},
           "head": {"bias": rng.standard_normal(10)}}
  tree1 = {"conv": {"kernel": w[:6000].reshape(60, 100)}, "dense": {"kernel": w[6000:]},
           "head": {"bias": rng.standard_normal(10) * 100}}  # garbage that the filter drops
  keep = mdgeom.exclude_paths("bias")
  r = mdgeom.rank_potentials(tree0, tree1, ["2-norm", "3-norm", "negative_entropy"], where=keep)
  assert r.leaves == ["['conv']['kernel']", "['dense']['kernel']"]
  assert r.n_weights == 10_000 and r.best.name == "2-norm"
  flat = mdgeom.rank_potentials(w0, w, ["2-norm"])
  np.testing.assert_allclose(r.best.delta_cdf, flat.best.delta_cdf, rtol=1e-6)

  # dead inputs: 3000 weights never change (and some are exactly zero)
  w0d, wd = w0.copy(), w.copy()
  wd[:3000] = w0d[:3000]
  w0d[:500] = wd[:500] = 0.0
  with_spike = mdgeom.rank_potentials(w0d, wd, ["2-norm", "negative_entropy"])
  assert with_spike.n_unchanged == 3000
  assert all(np.isfinite(c.delta_cdf) for c in with_spike.results)  # zeros: no NaN
  without = mdgeom.rank_potentials(w0d, wd, ["2-norm", "negative_entropy"], exclude_unchanged=True)
  assert without.n_weights == 7000
  assert without.results[0].name == "2-norm"
  ref = A.delta_cdf(np.asarray(A.dual_change("2-norm", w0d[3000:], wd[3000:])))
  np.testing.assert_allclose(without.results[0].delta_cdf, ref, atol=1e-6)


def test_rank_potentials_rules_out_negative_entropy_on_sign_flips():
  w0, w = synthetic("2-norm", n=5000, seed=3, scale=0.3)
  flips = int(np.sum(np.sign(w0) != np.sign(w)))
  assert flips > 0
  r = mdgeom.rank_potentials(w0, w, ["negative_entropy", "2-norm", "3-norm"])
  ne = [c for c in r.results if c.name == "negative_entropy"][0]
  assert ne.ruled_out and ne.n_sign_flips == flips and str(flips) in ne.reason
  assert r.results[-1].name == "negative_entropy"  # ruled out: listed last
  assert np.isfinite(ne.delta_cdf)  # the signed value is still reported, as in the paper


def test_rank_potentials_exact_method_and_normality():
  w0, w = synthetic("3-norm", n=3000, seed=4, scale=0.05)
  r = mdgeom.rank_potentials(w0, w, ["3-norm", "2-norm"], method="exact", normality=True)
  assert r.best.name == "3-norm"
  np.testing.assert_allclose(r.best.delta_cdf,
                             A.delta_cdf(np.asarray(A.dual_change("3-norm", w0, w)), "exact"),
                             rtol=1e-6)
  assert set(r.best.normality) == {"shapiro", "dagostino", "anderson", "ks_zero_mean"}
  assert r.best.normality["ks_zero_mean"]["p_value"] > r.results[1].normality["ks_zero_mean"]["p_value"]


def test_normality_tests_detect_non_gaussian_and_handle_limits():
  rng = np.random.default_rng(9)
  gauss = mdgeom.normality_tests(rng.standard_normal(2000), n_mc=199)
  expo = mdgeom.normality_tests(rng.exponential(size=2000), n_mc=199)
  for k in ("shapiro", "dagostino", "anderson", "ks_zero_mean"):
    assert expo[k]["p_value"] <= 0.01  # tables and Monte Carlo floor p there
    assert gauss[k]["p_value"] > expo[k]["p_value"]
  big = mdgeom.normality_tests(rng.standard_normal(20_000), n_mc=99)
  assert big["shapiro"]["n"] == 5000 and big["dagostino"]["n"] == 20_000
  small = mdgeom.normality_tests(rng.standard_normal(6), n_mc=99)
  assert "skipped" in small["dagostino"] and "skipped" in small["anderson"]


def test_ks_zero_mean_p_value_is_calibrated_under_the_null():
  """Estimating the scale invalidates the textbook KS p-value; the Monte Carlo one is uniform."""
  rng = np.random.default_rng(10)
  p = np.array([mdgeom.normality_tests(rng.standard_normal(60) * 3, n_mc=199, seed=i)
                ["ks_zero_mean"]["p_value"] for i in range(150)])
  assert stats.kstest(p, "uniform").pvalue > 1e-3
  assert 0.01 <= np.mean(p < 0.1) <= 0.2


def test_dual_distance_formula():
  rng = np.random.default_rng(11)
  w0 = rng.uniform(0.1, 1, 50)
  w_ref = w0 * np.exp(0.1 * rng.standard_normal(50))
  traj = w_ref * np.exp(0.01 * rng.standard_normal((4, 50)))
  fp = lambda v: np.log(v) + 1  # negative entropy on positive weights
  expected = np.linalg.norm(fp(traj) - fp(w_ref), axis=-1) / np.linalg.norm(fp(w_ref) - fp(w0))
  np.testing.assert_allclose(A.dual_distance("negative_entropy", traj, w_ref, w0), expected,
                             rtol=1e-10)
  np.testing.assert_allclose(A.dual_distance("2-norm", w_ref, w_ref, w0), 0.0, atol=0)
  assert np.isnan(A.dual_distance("2-norm", np.full(50, np.nan), w_ref, w0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constant_changes_are_degenerate_never_a_number(dtype):
  """A constant sample used to give 5.005 (its float32 spread is rounding); a uniform
  multiplicative change under negative entropy used to rank NE last. Both are degenerate now."""
  with pytest.raises(A.DegenerateChangeError, match="zero spread"):
    A.delta_cdf(np.full(100, 0.3, dtype))
  with pytest.raises(A.DegenerateChangeError):
    A.delta_cdf(np.full(100, 0.3, dtype), center=True)
  with pytest.raises(A.DegenerateChangeError):
    mdgeom.normality_tests(np.full(50, -2.0, dtype))
  w0 = np.exp(np.random.default_rng(0).normal(-2, 0.5, 500)).astype(dtype)
  r = mdgeom.rank_potentials(w0, dtype(1.2) * w0, ["negative_entropy", "2-norm", "3-norm"])
  assert r.best.name == "negative_entropy" and r.best.degenerate
  assert np.isnan(r.best.delta_cdf) and "uniform change" in r.best.reason
  assert not any(x.degenerate for x in r.results[1:])
  assert "DEGENERATE" in r.table()


def test_small_and_bad_inputs_raise_named_errors():
  with pytest.raises(ValueError, match="only 1 weights to analyse"):
    mdgeom.rank_potentials(np.array([0.1, 0.2, 0.3]), np.array([0.1, 0.2, 0.35]),
                           exclude_unchanged=True)
  with pytest.raises(ValueError, match="all zero"):
    mdgeom.change_magnitude("2-norm", np.zeros(5), np.ones(5))
  with pytest.raises(ValueError, match="not a valid regular expression"):
    mdgeom.exclude_paths("(")
  with pytest.raises(TypeError, match="complex"):
    A.delta_cdf(np.arange(5) + 1j)
