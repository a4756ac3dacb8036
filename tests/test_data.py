"""Regression data: exact embedding covariance, sample correlations, paper sizes, fallbacks."""

import logging
import math
import time

import jax
import numpy as np
import pytest
from scipy import linalg

from mdgeom import data
from mdgeom.data import regression as R

# Spectral density minima of the paper's sequences (limits of the smallest eigenvalue as D grows):
# sum_k (-1)^k / (1 + |k|) over Z = 2 log 2 - 1, sum_k (-1)^k / (1 + k^2) = pi / sinh(pi).
MIN_EIG = {1: 2 * math.log(2) - 1, 2: math.pi / math.sinh(math.pi)}


def matern32(length):
  """A smooth correlation whose minimal embedding (n = 64, length 16) has negative eigenvalues."""
  return lambda k: (1 + np.abs(k) / length) * np.exp(-np.abs(k) / length)


def implied_covariance(emb):
  """First dim x dim block of F diag(lambda) F^H / M, F_jk = exp(-2 pi i jk / M), in float64."""
  n, size = emb.dim, emb.size
  angle = 2 * np.pi * np.outer(np.arange(n), np.arange(size)) / size
  cos, sin = np.cos(angle), np.sin(angle)
  lam = emb.eigenvalues
  real = ((cos * lam) @ cos.T + (sin * lam) @ sin.T) / size
  imag = ((sin * lam) @ cos.T - (cos * lam) @ sin.T) / size
  return real, imag


def assert_covariance(x, cov, n_se=6.0):
  """Sample covariance of zero-mean rows within n_se standard errors of `cov`, entrywise."""
  x = np.asarray(x, np.float64)
  num = x.shape[0]
  sample = x.T @ x / num
  se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / num)  # Gaussian (Isserlis)
  z = np.abs(sample - cov) / se
  assert z.max() < n_se, f"entry {np.unravel_index(z.argmax(), z.shape)} off by {z.max():.1f} SE"


def lag_statistics(x, max_lag):
  """Per-row averages of x_i x_(i+k) (iid over rows): mean and standard error for each lag."""
  x = np.asarray(x, np.float64)
  per_row = np.stack([np.mean(x[:, :x.shape[1] - k] * x[:, k:], axis=1)
                      for k in range(max_lag + 1)], axis=1)
  return per_row.mean(0), per_row.std(0, ddof=1) / math.sqrt(x.shape[0])


def test_correlation_sequence_values():
  np.testing.assert_allclose(data.correlation_sequence(5, 1), [1, -1 / 2, 1 / 3, -1 / 4, 1 / 5],
                             rtol=1e-15)
  np.testing.assert_allclose(data.correlation_sequence(4, 2), [1, -1 / 2, 1 / 5, -1 / 10],
                             rtol=1e-15)
  np.testing.assert_allclose(data.correlation_sequence(3, 2, scale=2.0), [1, -0.8, 0.5],
                             rtol=1e-15)
  assert data.correlation_sequence(1, 1).dtype == np.float64


@pytest.mark.parametrize("power", [1, 2])
@pytest.mark.parametrize("n", [1, 2, 5, 64, 1000])
def test_embedding_covariance_is_exactly_toeplitz(power, n):
  r = data.correlation_sequence(n, power)
  emb = data.circulant_embedding(r)
  assert emb.method == "minimal" and emb.size == max(2 * (n - 1), 1)
  assert emb.eigenvalues.shape == (emb.size,) and emb.eigenvalues.min() > 0
  real, imag = implied_covariance(emb)
  np.testing.assert_allclose(real, linalg.toeplitz(r), rtol=0, atol=1e-12)
  np.testing.assert_allclose(imag, 0, atol=1e-12)
  if n == 1000:  # the smallest eigenvalue is already at its D -> infinity limit
    assert abs(emb.eigenvalues.min() - MIN_EIG[power]) < 1e-6


@pytest.mark.parametrize("power", [1, 2])
def test_sample_correlations_match_sequence(power):
  num, dim, max_lag = 20_000, 64, 6
  x = data.correlated_gaussians(jax.random.key(power), num, dim, power)
  assert x.shape == (num, dim) and x.dtype == np.float32
  r = data.correlation_sequence(max_lag + 1, power)
  mean, se = lag_statistics(x, max_lag)
  assert np.all(np.abs(mean - r) < 5 * se), (mean, r, se)
  assert_covariance(x, linalg.toeplitz(data.correlation_sequence(dim, power)))
  # the Re and Im halves of each complex draw are independent samples (both are used)
  half = num // 2
  cross = np.mean(np.asarray(x[:half], np.float64) * np.asarray(x[half:], np.float64), axis=1)
  assert abs(cross.mean()) < 5 * cross.std() / math.sqrt(half)


@pytest.mark.parametrize("power", [1, 2])
def test_regression_inputs_add_uniform_variance(power):
  num, dim, max_lag = 20_000, 64, 6
  x = data.regression_inputs(jax.random.key(10 + power), num, dim, power)
  r = data.correlation_sequence(max_lag + 1, power)
  r[0] += 0.5**2 / 3  # uniform on [-0.5, 0.5] adds 1/12 to the variance only
  mean, se = lag_statistics(x, max_lag)
  assert np.all(np.abs(mean - r) < 5 * se), (mean, r, se)
  cov = linalg.toeplitz(data.correlation_sequence(dim, power)) + np.eye(dim) / 12
  assert_covariance(x, cov)
  x0 = data.regression_inputs(jax.random.key(0), 2000, 8, power, noise=0.0)
  np.testing.assert_allclose(x0, data.correlated_gaussians(jax.random.split(jax.random.key(0))[0],
                                                           2000, 8, power))


@pytest.mark.parametrize("power", [1, 2])
@pytest.mark.parametrize("dim", [20_000, 50_000])
def test_paper_sizes_use_the_minimal_embedding(power, dim):
  start = time.perf_counter()
  emb = data.circulant_embedding(data.correlation_sequence(dim, power))
  assert time.perf_counter() - start < 5.0  # O(D log D): milliseconds, not a D x D factorisation
  assert emb.method == "minimal" and emb.size == 2 * (dim - 1)
  assert abs(emb.eigenvalues.min() - MIN_EIG[power]) < 1e-6  # valid with a wide margin
  # the sampler's embedding: the smallest FFT-friendly size (2^a 3^b 5^c) >= the minimal one
  fast = data.embedding_for(dim, power)
  assert fast.size == 2 * data.next_fast_size(dim - 1) >= emb.size
  assert fast.method == ("minimal" if fast.size == emb.size else "padded")
  assert abs(fast.eigenvalues.min() - MIN_EIG[power]) < 1e-3
  rows = 8
  x = np.asarray(data.correlated_gaussians(jax.random.key(dim + power), rows, dim, power))
  assert x.shape == (rows, dim) and np.all(np.isfinite(x))
  # each row is long: lag averages along it are accurate to ~sqrt(3 / (rows * dim)) < 0.01
  mean, _ = lag_statistics(x, 3)
  np.testing.assert_allclose(mean, data.correlation_sequence(4, power), atol=0.02)
  # no artefact at the far end of the row (where the embedding wraps around)
  tail = x[:, -2000:]
  np.testing.assert_allclose(np.mean(tail * tail), 1.0, atol=0.1)
  np.testing.assert_allclose(np.mean(tail[:, :-1] * tail[:, 1:]), -0.5, atol=0.1)


def test_next_fast_size():
  for k in [1, 2, 7, 97, 1000, 19_999, 39_998, 11_099]:
    m = data.next_fast_size(k)
    assert m >= k
    q = m
    for p in (2, 3, 5):
      while q % p == 0:
        q //= p
    assert q == 1
    # no smaller 5-smooth number in [k, m)
    for c in range(k, m):
      q = c
      for p in (2, 3, 5):
        while q % p == 0:
          q //= p
      assert q != 1
  assert data.next_fast_size(19_999) == 20_000


def test_padded_embedding_when_minimal_is_negative():
  n, fn = 64, matern32(16.0)
  r = fn(np.arange(n))
  assert np.linalg.eigvalsh(linalg.toeplitz(r)).min() > 0  # a valid correlation...
  emb = data.circulant_embedding(r, correlation=fn)
  assert emb.tried[0][0] == 2 * (n - 1) and emb.tried[0][1] < -1e-5  # ...not minimally embeddable
  assert emb.method == "padded" and emb.size == 512  # m = 64, 128 fail; m = 256 works
  assert [s for s, _ in emb.tried] == [126, 128, 256, 512]
  real, _ = implied_covariance(emb)
  np.testing.assert_allclose(real, linalg.toeplitz(r), rtol=0, atol=1e-12)
  assert_covariance(emb.sample(jax.random.key(3), 20_000), linalg.toeplitz(r))


def test_tolerance_clips_rounding_sized_negative_eigenvalues():
  n, fn = 64, matern32(16.0)
  r = fn(np.arange(n))
  # m = 128 has min/max ~ -1e-6: accepted under tol = 1e-5, its negative eigenvalues set to 0
  emb = data.circulant_embedding(r, correlation=fn, tol=1e-5)
  assert emb.method == "padded" and emb.size == 256 and -1e-5 < emb.tried[-1][1] < 0
  assert emb.eigenvalues.min() == 0.0
  real, _ = implied_covariance(emb)
  err = np.abs(real - linalg.toeplitz(r)).max()
  assert 1e-12 < err < 1e-5 * emb.eigenvalues.max()


def test_dense_fallback_with_warning(caplog):
  n, fn = 64, matern32(16.0)
  r = fn(np.arange(n))
  with caplog.at_level(logging.WARNING, logger=R.__name__):
    emb = data.circulant_embedding(r)  # no correlation function: the minimal embedding only
  assert emb.method == "dense" and emb.eigenvalues is None
  assert "not nonnegative definite" in caplog.text and "dense Cholesky" in caplog.text
  np.testing.assert_allclose(emb.cholesky @ emb.cholesky.T, linalg.toeplitz(r), atol=1e-12)
  x = emb.sample(jax.random.key(4), 20_000)
  assert x.shape == (20_000, n) and x.dtype == np.float32
  assert_covariance(x, linalg.toeplitz(r))


def test_no_valid_embedding_above_dense_limit_raises():
  n, fn = 64, matern32(16.0)
  with pytest.raises(ValueError, match=r"not nonnegative definite.*most negative eigenvalue is "
                                       r"-\d.*M = 126.*max_dense = 16"):
    data.circulant_embedding(fn(np.arange(n)), correlation=fn, max_doublings=1, max_dense=16)


def test_sequence_that_is_not_positive_definite_raises(caplog):
  # 1 / (1 + (k / s)^4) is not a positive definite function: no embedding, no Cholesky
  with caplog.at_level(logging.WARNING, logger=R.__name__):
    with pytest.raises(ValueError, match="not positive definite"):
      data.correlated_gaussians(jax.random.key(0), 4, 64, power=4, scale=8)
  assert "falling back to the dense Cholesky" in caplog.text
  with pytest.raises(ValueError, match="above the dense Cholesky limit"):
    data.correlated_gaussians(jax.random.key(0), 4, 5000, power=4, scale=8)
  with pytest.raises(ValueError, match="not positive definite"):
    data.circulant_embedding([1.0, 0.9, 0.0])  # eigenvalue 1 - 0.9 sqrt(2) < 0


@pytest.mark.parametrize("call, match", [
    (lambda: data.correlation_sequence(5, 0), "power c must be finite and > 0"),
    (lambda: data.correlation_sequence(5, -1.0), "power c must be finite and > 0"),
    (lambda: data.correlation_sequence(5, float("nan")), "power c must be finite and > 0"),
    (lambda: data.correlation_sequence(5, 1, scale=0), "length scale must be finite and > 0"),
    (lambda: data.correlation_sequence(0, 1), r"sequence length n must be >= 1 \(got 0\)"),
    (lambda: data.correlation_sequence(2.5, 1), "sequence length n must be an integer"),
    (lambda: data.correlated_gaussians(jax.random.key(0), 4, 0, 1), "dimension dim must be >= 1"),
    (lambda: data.correlated_gaussians(jax.random.key(0), 4, 8, 0.0), "power c"),
    (lambda: data.correlated_gaussians(jax.random.key(0), 0, 8, 1), "number of samples num"),
    (lambda: data.regression_inputs(jax.random.key(0), 4, 8, 1, noise=-1), "noise half-width"),
    (lambda: data.regression_problem(jax.random.key(0), 4, -3, 2), "dimension dim must be >= 1"),
    (lambda: data.circulant_embedding([]), "non-empty 1-D"),
    (lambda: data.circulant_embedding([1.0, np.nan]), "non-finite"),
    (lambda: data.circulant_embedding([0.0, 0.0]), "r_0 is the variance"),
    (lambda: data.circulant_embedding([1.0, 0.5], correlation=matern32(2.0)),
     "correlation\\(k\\) must equal r_k"),
])
def test_invalid_arguments(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_labels_and_reproducibility():
  num, dim = 4001, 100  # odd: the last complex draw contributes only its real part
  x, y = data.regression_problem(jax.random.key(7), num, dim, 1)
  assert x.shape == (num, dim) and y.shape == (num,)
  assert x.dtype == np.float32 and y.dtype == np.float32
  y = np.asarray(y)
  assert set(np.unique(y)) == {-1.0, 1.0}
  assert abs(y.mean()) < 5 / math.sqrt(num)  # equal probabilities
  x2, y2 = data.regression_problem(jax.random.key(7), num, dim, 1)
  np.testing.assert_array_equal(x, x2)
  np.testing.assert_array_equal(y, y2)
  x3, y3 = data.regression_problem(jax.random.key(8), num, dim, 1)
  assert not np.any(np.asarray(x3) == np.asarray(x)) and np.any(np.asarray(y3) != y)


def test_sampler_is_jittable():
  emb = data.embedding_for(32, 2)
  key = jax.random.key(5)
  np.testing.assert_allclose(jax.jit(lambda k: emb.sample(k, 9))(key), emb.sample(key, 9),
                             rtol=1e-6, atol=1e-6)
  batched = jax.vmap(lambda k: R._sample_circulant(k, R._sqrt_weights(emb), 3, 32))(
      jax.random.split(key, 4))
  assert batched.shape == (4, 3, 32)
