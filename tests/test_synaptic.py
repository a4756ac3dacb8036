"""Spine-volume models (Fig. 5): loader checks, EM, the exact model densities."""

import os

import jax
import numpy as np
import pytest

from mdgeom import synaptic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data", "microns_l23_v185",
                    "soma_subgraph_synapses_spines_v185.csv")
needs_data = pytest.mark.skipif(
    not os.path.exists(DATA),
    reason=f"the MICrONS v185 table is not in this checkout ({synaptic.DOWNLOAD_HINT})")


@needs_data
def test_loader_on_shared_copy():
  v = synaptic.load_spine_volumes(DATA)
  assert v.size == 1961 and np.all(v > 0)
  x = np.log(v)
  assert abs(x.mean() + 2.913) < 1e-3 and abs(x.std() - 0.836) < 1e-3  # the README's figures


def test_loader_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="3710459"):
    synaptic.load_spine_volumes(str(tmp_path / "missing.csv"))
  f = tmp_path / "t.csv"
  f.write_text("id,vol\n1,0.1\n")
  with pytest.raises(synaptic.SynapticDataError, match="no column 'spine_vol_um3'"):
    synaptic.load_spine_volumes(str(f))
  f.write_text("id,spine_vol_um3\n1,0.1\n2,0\n3,0.2\n")
  with pytest.raises(synaptic.SynapticDataError, match="positive finite"):
    synaptic.load_spine_volumes(str(f), expected_rows=None)
  f.write_text("id,spine_vol_um3\n1,0.1\n2,abc\n")
  with pytest.raises(synaptic.SynapticDataError, match="line 3"):
    synaptic.load_spine_volumes(str(f), expected_rows=None)
  f.write_text("id,spine_vol_um3\n1,0.1\n2,0.3\n")
  with pytest.raises(synaptic.SynapticDataError, match="expected 1961"):
    synaptic.load_spine_volumes(str(f))
  np.testing.assert_allclose(synaptic.load_spine_volumes(str(f), expected_rows=None), [0.1, 0.3])


def test_em_recovers_mixture_and_is_the_ne_model():
  rng = np.random.default_rng(0)
  n = 4000
  low = rng.random(n) < 0.7
  x = np.where(low, -3.3, -1.8) + 0.5 * rng.standard_normal(n)
  fit = synaptic.fit_log_mixture(x, n_starts=4, seed=0)
  assert abs(fit["pi"] - 0.7) < 0.05 and abs(fit["sigma"] - 0.5) < 0.03
  np.testing.assert_allclose(fit["mu"], [-3.3, -1.8], atol=0.07)
  # the negative-entropy model through its mirror map is exactly the mixture
  generic = synaptic.two_point_mirror_logpdf("negative_entropy", x, np.exp(fit["mu"]),
                                             [fit["pi"], 1 - fit["pi"]], fit["sigma"])
  mixture = synaptic.mixture_logpdf(x, fit["pi"], fit["mu"], fit["sigma"])
  np.testing.assert_allclose(generic, mixture, atol=1e-10)


@pytest.mark.parametrize("p,params", [(3.0, (0.6, 0.01, -2.4, 0.8, 1.5e-3)),
                                      (2.0, (0.5, 0.02, -2.5, 0.6, 0.03))])
def test_pnorm_density_is_proper_and_matches_sampling(p, params):
  pi, c, mu0, sigma0, s = params
  z = np.linspace(-14, 2, 20001)
  lp, p_neg = synaptic.pnorm_model_logpdf(z, p, *params)
  assert abs(np.trapezoid(np.exp(lp), z) - 1) < 2e-3  # renormalised over w > 0
  cdf = synaptic.pnorm_model_cdf(z, p, *params)
  assert np.all(np.diff(cdf) >= -1e-12) and cdf[-1] > 0.999
  # Monte Carlo of the generative process: removed fraction and the CDF of kept log weights
  w0, w, kept = synaptic.sample_pnorm_model(jax.random.PRNGKey(0), 200_000, p, *params)
  w, kept = np.asarray(w, np.float64), np.asarray(kept)
  assert abs(1 - kept.mean() - p_neg) < 0.005
  xs = np.log(w[kept])
  for q in (0.1, 0.3, 0.5, 0.7, 0.9):
    t = np.quantile(xs, q)
    assert abs(synaptic.pnorm_model_cdf(np.array([t]), p, *params)[0] - q) < 0.01


def test_goodness_of_fit_against_true_model():
  rng = np.random.default_rng(1)
  x = rng.normal(-3, 0.8, 3000)
  from scipy import stats
  g = synaptic.goodness_of_fit(x, lambda z: stats.norm.cdf(z, -3, 0.8),
                               lambda z: stats.norm.logpdf(z, -3, 0.8))
  assert g["ks"] < 0.03 and g["ks_p_value"] > 0.01 and g["delta_cdf"] < 0.05
  assert abs(g["loglik_per_synapse"] - np.mean(stats.norm.logpdf(x, -3, 0.8))) < 1e-12
