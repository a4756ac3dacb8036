"""The measurement model of geometry inference (infer_geometry's default method).

The likelihood is checked against independent computations (numerical integration over the
AFTER measurement and over the noise, the negative-entropy limit of the p-norms), the fit against
data of known geometry, gain, noise and silent fraction, and the output against what the issue
asks of it (one contiguous interval, statuses that agree with it, rows in the order the header
names, negative entropy / 2-norm / 3-norm always named). Coverage and informativeness per class
of data are measured by benchmarks/inference_calibration.py; the tests below hold fixed seeds of
each class (the slow ones run with -m slow).
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate

import mdgeom
from mdgeom import cli, potentials, scales, synthetic
from mdgeom.inference import InferenceError, infer_geometry, io, measured, mle
from mdgeom.inference import likelihood as lik

P = {"negative_entropy": 1.0, "2-norm": 2.0, "3-norm": 3.0}


def pair(true, shape=(2000,), seed=0, gain=1.0, **kw):
  w0, w = synthetic.weight_pair(jax.random.PRNGKey(seed), potentials.get(true), shape, **kw)
  return np.asarray(w0, np.float64), gain * np.asarray(w, np.float64)


def pairs_of(v0, v, vb=None):
  v0, v = np.atleast_1d(np.asarray(v0, np.float64)), np.atleast_1d(np.asarray(v, np.float64))
  l0, l1 = np.log(np.abs(v0)), np.log(np.abs(v))
  lb = np.log(np.abs(vb)) if vb is not None else np.zeros_like(l0)
  rb = lb - l0 if vb is not None else np.zeros_like(l0)
  z = np.zeros(v0.size, np.int32)
  with jax.enable_x64(True):
    return lik.Pairs(*(jnp.asarray(a) for a in (np.sign(v0), np.sign(v), l0, l1, rb, lb)),
                     jnp.asarray(z), jnp.asarray(z))


# ----------------------------------------------------------------------------------------------
# The likelihood against independent computations
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family,theta", [(lik.PNORM, 2.0), (lik.PNORM, 1.0), (lik.PNORM, 0.0),
                                          (lik.HYPENTROPY, np.log(0.05))])
def test_noise_free_likelihood_is_a_density_of_after(family, theta):
  """Without noise, exp(log p(v | v0)) integrates to 1 over v (the Jacobian is right), for v
  on both sides of zero where the geometry allows sign changes."""
  v0, mu, logs, logg = 0.08, 0.01, np.log(0.05), np.log(1.1)
  with jax.enable_x64(True):
    def dens(v):
      p = pairs_of(v0, v)
      return float(np.exp(lik.loglik_exact(family, theta, mu, logs, logg, 0.0, p)[0]))

    pos, _ = integrate.quad(dens, 1e-12, 5.0, limit=400, points=[0.05, 0.08, 0.1, 0.2])
    neg = 0.0
    if not (family is lik.PNORM and theta == 0.0):  # negative entropy keeps the sign
      neg, _ = integrate.quad(dens, -5.0, -1e-12, limit=400)
  assert pos + neg == pytest.approx(1.0, abs=2e-4)


def test_p_norms_tend_to_negative_entropy():
  """p -> 1 of the scaled p-norm family is negative entropy's likelihood (same-sign pairs)."""
  w0, w = pair("negative_entropy", (300,), seed=1, noise=0.05)
  p = pairs_of(w0, w)
  ne = lik.fixed(potentials.negative_entropy())
  with jax.enable_x64(True):
    for noisy in (False, True):
      # mu, log s, log g, rho, silent logit, log u, pairs, noisy, repeat, silent, K
      args = (0.003, np.log(0.1), 0.02, np.log(0.04), 0.0, 0.0, p, noisy, False, False, 5)
      a = np.asarray(lik.loglik(lik.PNORM, 1e-9, *args))
      b = np.asarray(lik.loglik(ne, 0.0, *args))
      # (|w|^lam - 1) / lam cancels to ~eps / lam in the dual: 1e-5 of an O(1) log-density
      np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def _brute(family, theta, mu, logs, logg, sig, v0, v, vb=None):
  """log p(v | v0) (times the repeat's density) by direct 2-D integration over the noise."""
  m = -0.5 * sig ** 2
  s0, s1, l0, l1 = np.sign(v0), np.sign(v), np.log(abs(v0)), np.log(abs(v))
  if vb is not None:  # t0's prior sharpened by the repeat, times the repeat's own density
    rb = np.log(abs(vb)) - l0
    m0, v0_ = m - 0.5 * rb, 0.5 * sig ** 2
    extra = -0.25 * rb ** 2 / sig ** 2 - 0.5 * np.log(4 * np.pi * sig ** 2) - np.log(abs(vb))
  else:
    m0, v0_, extra = m, sig ** 2, 0.0
  tau = np.exp(logs)
  # a dense product grid over +-8 SD: the trapezoid rule converges geometrically for smooth
  # integrands that vanish at the ends (one vectorised call instead of scipy's 10^5 scalar ones)
  t0 = m0 + 8 * np.sqrt(v0_) * np.linspace(-1, 1, 801)
  t1 = m + 8 * sig * np.linspace(-1, 1, 801)
  T0, T1 = np.meshgrid(t0, t1, indexing="ij")
  with jax.enable_x64(True):
    d, logj = family.dual(theta, s0, s1, l0 - T0, l1 - logg - T1)
  z = (np.asarray(d) - mu) / tau
  f = (np.exp(-0.5 * (T0 - m0) ** 2 / v0_ - 0.5 * (T1 - m) ** 2 / sig ** 2) /
       (2 * np.pi * np.sqrt(v0_) * sig) * np.exp(-0.5 * z * z) / (np.sqrt(2 * np.pi) * tau)
       * np.exp(np.asarray(logj)))
  val = np.trapezoid(np.trapezoid(f, t1, axis=1), t0)
  return np.log(val) - l1 + extra


@pytest.mark.parametrize("family,theta,sig,logs", [
    (lik.PNORM, 2.0, 0.05, np.log(5e-4)), (lik.PNORM, 2.0, 0.15, np.log(5e-4)),
    (lik.PNORM, 1.0, 0.1, np.log(0.01)), (lik.PNORM, 0.0, 0.1, np.log(0.13)),
    (lik.HYPENTROPY, np.log(0.1), 0.08, np.log(0.05))])
@pytest.mark.parametrize("repeat", [False, True])
def test_noise_integral_matches_brute_force(family, theta, sig, logs, repeat):
  rng = np.random.default_rng(3)
  v0 = 0.1 * np.exp(rng.normal(0, 0.5, 3))
  v = v0 * np.exp(rng.normal(0, 0.15, 3))
  vb = v0 * np.exp(rng.normal(0, sig, 3)) if repeat else None
  with jax.enable_x64(True):
    got = np.asarray(lik.loglik_noisy(family, theta, 0.0, logs, 0.02,
                                      np.log(sig - lik.SIGMA_MIN), 0.0, pairs_of(v0, v, vb),
                                      repeat, k=5))
  want = [_brute(family, theta, 0.0, logs, 0.02, sig, a, b, None if vb is None else c)
          for a, b, c in zip(v0, v, vb if vb is not None else v0)]
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-3)


@given(st.floats(0.0, 2.5), st.floats(-3.0, 1.0), st.integers(0, 2 ** 16))
def test_noisy_likelihood_tends_to_the_exact_one(theta, log_change, seed):
  """As the noise vanishes the integral becomes the noise-free density."""
  rng = np.random.default_rng(seed)
  v0 = 0.1 * np.exp(rng.normal(0, 0.5, 5))
  v = v0 * np.exp(rng.normal(0, 0.1, 5))
  p = pairs_of(v0, v)
  logs = log_change + theta * np.log(0.1)  # the change's scale in the dual space
  with jax.enable_x64(True):
    exact = np.asarray(lik.loglik_exact(lik.PNORM, theta, 0.0, logs, 0.0, 0.0, p))
    noisy = np.asarray(lik.loglik_noisy(lik.PNORM, theta, 0.0, logs, 0.0,
                                        mle.RHO_BOUNDS[0], 0.0, p, False, k=5))
  ok = np.isfinite(exact) & (exact > -1e6)
  np.testing.assert_allclose(noisy[ok], exact[ok], rtol=1e-3, atol=1e-3)


def test_silent_mixture():
  """pi -> 0 gives the change model; pi -> 1 the density of 'nothing changed': the log-ratio is
  N(log g, 2 sigma^2) (no repeat)."""
  rng = np.random.default_rng(0)
  v0 = 0.1 * np.exp(rng.normal(0, 0.5, 20))
  v = 1.1 * v0 * np.exp(rng.normal(0, 0.1, 20))
  p = pairs_of(v0, v)
  sig, logg = 0.07, np.log(1.1)
  rho = np.log(sig - lik.SIGMA_MIN)
  with jax.enable_x64(True):
    change = lik.loglik_noisy(lik.PNORM, 1.0, 0.0, np.log(0.01), logg, rho, 0.0, p, False, 5)
    low = lik.loglik_noisy(lik.PNORM, 1.0, 0.0, np.log(0.01), logg, rho, 0.0, p, False, 5, -40.0)
    high = lik.loglik_noisy(lik.PNORM, 1.0, 0.0, np.log(0.01), logg, rho, 0.0, p, False, 5, 40.0)
  np.testing.assert_allclose(low, change, atol=1e-9)
  r = np.log(v / v0) - logg
  want = -0.5 * r ** 2 / (2 * sig ** 2) - 0.5 * np.log(2 * np.pi * 2 * sig ** 2) - np.log(v)
  np.testing.assert_allclose(high, want, atol=1e-9)


# ----------------------------------------------------------------------------------------------
# Fits of data with known nuisances
# ----------------------------------------------------------------------------------------------


def test_fit_recovers_geometry_gain_noise_and_silent_fraction():
  w0, w = pair("3-norm", (5000,), seed=2, noise=0.06, silent=0.15, gain=1.15)
  res = infer_geometry(w0, w)
  nz = res.nuisances
  assert res.p_interval[0] <= 3.0 <= res.p_interval[1], res.table()
  assert abs(res.p_estimate - 3.0) < 0.1
  assert nz["gain"] == pytest.approx(1.15, rel=0.01)
  assert nz["gain_interval"][0] <= 1.15 <= nz["gain_interval"][1]
  assert nz["gain_p_value"] < 1e-6  # g = 1 rejected
  assert nz["noise"] == pytest.approx(0.06, rel=0.1)
  assert nz["noise_interval"][0] <= 0.06 <= nz["noise_interval"][1]
  assert nz["silent"] == pytest.approx(0.15, abs=0.04)
  assert res.status("negative_entropy") == "ruled out"
  assert res.status("2-norm") == "worse"


def test_a_known_noise_level_is_checked_and_a_repeat_measures_it():
  w0, w = pair("2-norm", (3000,), seed=4)
  noise = 0.08
  k = jax.random.split(jax.random.PRNGKey(9), 3)
  before = np.asarray(synthetic.measurement_noise(k[0], w0, noise))
  repeat = np.asarray(synthetic.measurement_noise(k[1], w0, noise))
  after = np.asarray(synthetic.measurement_noise(k[2], w, noise))
  res = infer_geometry(before, after, repeat=repeat)
  assert res.nuisances["noise"] == pytest.approx(noise, rel=0.1)
  assert res.p_interval[0] <= 2.0 <= res.p_interval[1], res.table()
  wrong = infer_geometry(before, after, noise=0.02)  # the data contradict it
  assert any("contradict" in n for n in wrong.notes), wrong.table()


@pytest.mark.xfail(strict=True, reason=(
    "known open problem: on pure-noise data the p-norm family near p = 1 with little noise "
    "explains the regression to the mean of a noisy BEFORE better than the no-change model, so "
    "a change is 'detected' (no-change LR ~20); see docs/inference.md, 'Limits'"))
@pytest.mark.slow  # (run with -m slow; kept out of the default run's 20 min)
def test_pure_noise_is_not_read_as_a_geometry():
  """AFTER = gain x BEFORE up to noise: no change is detectable and every geometry fits."""
  w0 = 0.1 * np.exp(np.random.default_rng(0).normal(0, 0.7, 3000))
  k = jax.random.split(jax.random.PRNGKey(1), 2)
  before = np.asarray(synthetic.measurement_noise(k[0], w0, 0.05))
  after = 0.9 * np.asarray(synthetic.measurement_noise(k[1], w0, 0.05))
  res = infer_geometry(before, after, ["negative_entropy", "2-norm", "3-norm"])
  assert not res.change_detected, res.table()
  assert "no change beyond the measurement noise" in res.summary
  for name in ("negative_entropy", "2-norm", "3-norm"):
    assert res.status(name) in ("best", "indistinguishable")


# ----------------------------------------------------------------------------------------------
# Coverage of each class, fixed seeds
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("true", ["negative_entropy", "2-norm", "3-norm"])
def test_unknown_noise_gain_and_silent_synapses_together(true):
  w0, w = pair(true, (60, 50), seed=21, unit_spread=0.5, drift=0.3, silent=0.15, noise=0.05,
               gain=1.1)
  res = infer_geometry(w0, w)
  lo, hi = res.p_interval
  assert lo <= P[true] <= hi, res.table()
  assert not (lo <= 1.0 and hi >= 3.0)  # negative entropy and the 3-norm told apart
  assert res.nuisances["gain"] == pytest.approx(1.1, rel=0.03)


@pytest.mark.parametrize("true", ["negative_entropy", "2-norm", "3-norm"])
def test_trained_linear_regression(true):
  """Weights trained with mdgeom.mirror_descent (the paper's Fig. 3A protocol, D = 2,000,
  N = D^0.5): exact measurements, so noise=0."""
  from mdgeom import linear
  from mdgeom.data import regression

  d = 2000
  kx, kw = jax.random.split(jax.random.PRNGKey(5))
  x, y = regression.regression_problem(kx, int(round(d ** 0.5)), d, 1.0)
  w0 = jax.random.normal(kw, (d,)) / np.sqrt(d)
  s = linear.search_learning_rate(x, y, w0, [true], np.logspace(-7, -1, 16))[0]
  w = linear.fit(x, y, w0, [true], [s.learning_rate], [s.num_steps]).weights.reshape(-1)
  res = infer_geometry(np.asarray(w0, np.float64), np.asarray(w, np.float64), noise=0)
  lo, hi = res.p_interval
  assert lo <= P[true] <= hi, res.table()
  assert not (lo <= 1.0 and hi >= 3.0)
  assert res.nuisances["gain"] < 1.0  # the interpolating solution shrinks w0 (N/D of it)


# ----------------------------------------------------------------------------------------------
# The output
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example():
  w0, w = pair("3-norm", (1, 2000), seed=7, noise=0.04)
  return infer_geometry(w0, w)


def test_table_reads_as_it_says(example):
  res = example
  lls = [r.loglik for r in res.rows]
  assert lls == sorted(lls, reverse=True)  # "ranked by log-likelihood"
  lo, hi = res.p_interval
  for r in res.rows:
    if r.family == "pnorm" and not r.estimate and r.status != "ruled out":
      inside = lo <= r.p <= hi
      assert (r.status in ("best", "indistinguishable")) == inside
      assert (r.p_value >= res.level) == inside
  for words in ("negative entropy", "the 2-norm", "the 3-norm"):
    assert words in res.summary
  text = res.table()
  assert "ranked by log-likelihood" in text and "verdict:" in text
  assert "analysed as one pool" in text  # a [1, D] weight is flat
  if any(r.family == "hypentropy" for r in res.rows):
    assert "hypentropy, f(w) = w arcsinh" in text
  assert res.p_interval[0] < res.p_interval[1]
  d = res.to_dict()
  json.dumps(d)
  assert d["p_interval"] == res.p_interval and d["method"] == "model"


def test_interval_text_never_collapses():
  from mdgeom.inference.report import interval_text, range_text

  assert interval_text(1.1, 1.1004) != "[1.10, 1.10]"
  assert interval_text(1.1, 1.1004).startswith("[1.100")
  assert range_text(1.0901, 1.0949) == "[1.09, 1.095]"


def test_figure(example, tmp_path):
  from mdgeom.inference import figures

  out = figures.plot_inference(example, str(tmp_path / "f.png"))
  assert os.path.getsize(out) > 10_000


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def test_bad_inputs_name_the_problem():
  w0, w = pair("2-norm", (300,))
  with pytest.raises(InferenceError, match="single candidate: pass a list"):
    infer_geometry(w0, w, "2-norm")
  with pytest.raises(InferenceError, match="seed = -1"):
    infer_geometry(w0, w, seed=-1)
  with pytest.raises(InferenceError, match="noise='banana'"):
    infer_geometry(w0, w, noise="banana")
  with pytest.raises(InferenceError, match="gain = -1"):
    infer_geometry(w0, w, gain=-1)
  with pytest.raises(InferenceError, match="resolution"):
    infer_geometry(w0, w, resolution=2)
  with pytest.raises(InferenceError, match="unchanged='keep'"):
    infer_geometry(w0, w, unchanged="keep")
  with pytest.raises(InferenceError, match="REPEAT has shape"):
    infer_geometry(w0, w, repeat=w0[:-1])
  with pytest.raises(InferenceError, match="method="):
    infer_geometry(w0, w, method="magic")
  with pytest.raises(InferenceError, match="unit ids cover"):
    infer_geometry(w0, w, units=(np.zeros(5), np.zeros(5)))


def test_unit_labels_as_a_pair_of_arrays():
  w0, w = pair("2-norm", (30, 40), seed=3, unit_spread=0.5)
  pre = np.repeat([f"n{i}" for i in range(30)], 40)
  post = np.tile([f"m{j}" for j in range(40)], 30)
  res = infer_geometry(w0.ravel(), w.ravel(), ["2-norm", "3-norm"], units=(pre, post), noise=0)
  assert res.prep.n_rows == 30 and res.prep.n_cols == 40


def test_misaligned_csv_pairs_by_row_and_by_id(tmp_path):
  before = tmp_path / "b.csv"
  after = tmp_path / "a.csv"
  before.write_text("id,v\n1,0.5\n2,\n3,0.7\n4,0.8\n")
  after.write_text("id,v\n1,0.55\n2,0.61\n3,\n4,0.9\n")
  pair_ = io.read_pair(str(before), str(after), "v", "v")
  np.testing.assert_array_equal(pair_.w0, [0.5, 0.8])  # rows 2 and 3 dropped from both
  np.testing.assert_array_equal(pair_.w, [0.55, 0.9])
  assert pair_.n_missing == 2
  after.write_text("id,v\n4,0.9\n1,0.55\n5,1.0\n")
  by_id = io.read_pair(str(before), str(after), "v", "v", id_column="id")
  np.testing.assert_array_equal(by_id.w0, [0.5, 0.8])
  np.testing.assert_array_equal(by_id.w, [0.55, 0.9])
  assert by_id.n_unmatched == 3  # 2, 3 in BEFORE only; 5 in AFTER only
  with pytest.raises(InferenceError, match="different numbers of synapses"):
    io.read_pair(str(before), str(after), "v", "v")
  with pytest.raises(InferenceError, match="--before-column NAME --after-column NAME"):
    io.read_pair(str(before), str(before), "v", "v")


def test_cli_worked_example_with_repeat_and_gain(tmp_path, capsys):
  from examples import make_synapse_table

  table = str(tmp_path / "syn.csv")
  make_synapse_table.main([table])
  code = cli.main(["infer", table, table, "--before-column", "volume_before", "--after-column",
                   "volume_after", "--repeat-column", "volume_before_repeat", "--units",
                   "pre,post", "--json", str(tmp_path / "r.json"), "--no-figure"])
  out = capsys.readouterr().out
  assert code == 0, out
  res = json.loads((tmp_path / "r.json").read_text())
  lo, hi = res["p_interval"]
  assert lo <= 1.0 <= hi and hi < 2.0, out  # negative entropy, the 2-norm rejected
  assert res["nuisances"]["gain"] == pytest.approx(1.1, rel=0.03)
  assert res["nuisances"]["noise"] == pytest.approx(0.08, rel=0.15)
  assert "gain" in out and "noise" in out


def test_cli_help_defines_every_column(capsys):
  with pytest.raises(SystemExit):
    cli.main(["infer", "--help"])
  text = capsys.readouterr().out
  for word in ("log-lik", "vs best", "LR", "p-value", "status", "(default: auto)"):
    assert word in text
