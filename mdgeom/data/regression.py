"""Inputs of the linear-regression experiment (paper section 4.1): correlated Gaussians by FFT.

Each input is x = g + u with g ~ N(0, T) and u uniform on [-noise, noise]^D (noise = 0.5 in the
paper), independently per entry. T is the D x D Toeplitz correlation matrix

  T_ij = r_|i-j|,   r_k = (-1)^k / (1 + (k / scale)^c),   c in {1, 2}, scale = 1 in the paper,

so the inputs have mean 0 and covariance Cov(x) = T + (noise^2 / 3) I (the uniform noise adds
noise^2 / 3 = 1/12 to every variance and nothing off the diagonal). The labels are +1 or -1 with
equal probability, independent of x.

The authors formed T and its dense Cholesky factor: O(D^2) memory and O(D^3) time. Here T is never
formed. Circulant embedding (Dietrich & Newsam 1997; Wood & Chan 1994): T is the leading D x D
block of the M x M circulant matrix C with first row

  c_j = r(min(j, M - j)),   j = 0..M-1,   M = 2m,   m >= D - 1,

(the minimal embedding m = D - 1 uses only r_0..r_{D-1}; a larger m needs r at lags up to m). A
circulant matrix is diagonalised by the DFT: C = F diag(lambda) F^H / M with F_jk =
exp(-2 pi i jk / M) and lambda = FFT(c), real because c is symmetric. When every lambda_j >= 0,
with a and b independent N(0, I_M),

  z = F (sqrt(lambda / M) * (a + i b)),   E[z z^H] = 2 C,   E[z z^T] = 0,

so Re z and Im z are two independent N(0, C) vectors, and their first D entries are two
independent N(0, T) samples: one complex FFT of length M per two rows, O(M log M) time and O(M)
memory per row. The samples are exact (up to float32 rounding), not an approximation of T.

Validity: the embedding is nonnegative definite iff min_j lambda_j >= 0; rounding makes exact
zeros a few ulps negative, so an embedding is accepted when min lambda >= -tol * max lambda and
those eigenvalues are clipped to 0 (a covariance error of at most tol * max lambda). If the
minimal embedding fails and the correlation is available as a function of the lag, embeddings
with m = 2^g, 2^(g+1), ... (2^g the smallest power of two > D - 1) are tried; if all fail, small
problems (D <= 4096) fall back to the dense Cholesky factor of T with a logged warning, and large
ones raise ValueError.

For the paper's sequences the minimal embedding is valid at every size. The alternating sign
(-1)^k only shifts the spectrum by half a period (M is even, so c_j picks up (-1)^j), so lambda
is a permutation of the eigenvalues for s_k = 1 / (1 + (k / scale)^c), and s is nonnegative,
decreasing and convex for c <= 1, or for any c > 0 when scale = 1; minimal embeddings of such
sequences are nonnegative definite (Dietrich & Newsam 1997). As D grows, min lambda tends to the
spectral density at its minimum: 2 log 2 - 1 = 0.3863 for c = 1, pi / sinh(pi) = 0.2720 for c = 2
(measured at D = 2e4: 0.38629436, 0.27202905; max lambda 19.96 and 3.153).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import operator
import os
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import scipy.fft
import scipy.linalg

from mdgeom import _checks

Array = jax.Array
CorrelationFn = Callable[[np.ndarray], np.ndarray]

logger = logging.getLogger(__name__)

METHODS = ("minimal", "padded", "dense")
DEFAULT_TOL = 1e-10
DEFAULT_MAX_DOUBLINGS = 6
DEFAULT_MAX_DENSE = 4096


# ----------------------------------------------------------------------------------------------
# Correlation functions
# ----------------------------------------------------------------------------------------------


def _count(n, what: str, minimum: int = 1) -> int:
  """n as a Python int >= minimum, else ValueError naming `what`."""
  try:
    n_int = operator.index(n)
  except TypeError:
    raise ValueError(f"{what} must be an integer (got {n!r}).") from None
  if n_int < minimum:
    raise ValueError(f"{what} must be >= {minimum} (got {n_int}).")
  return n_int


def _check_power_scale(power, scale) -> tuple[float, float]:
  power = _checks.real_scalar(power, "the correlation power c", finite=False)
  scale = _checks.real_scalar(scale, "the correlation length scale", finite=False)
  if not (math.isfinite(power) and power > 0):
    raise ValueError(f"the correlation power c must be finite and > 0 (got {power}).")
  if not (math.isfinite(scale) and scale > 0):
    raise ValueError(f"the correlation length scale must be finite and > 0 (got {scale}).")
  return power, scale


def alternating_power_correlation(power: float, scale: float = 1.0) -> CorrelationFn:
  """r(k) = (-1)^k / (1 + (|k| / scale)^power) as a function of integer lags (float64 numpy)."""
  power, scale = _check_power_scale(power, scale)

  def correlation(lags) -> np.ndarray:
    k = np.abs(np.asarray(lags, dtype=np.int64))
    sign = np.where(k % 2 == 0, 1.0, -1.0)
    return sign / (1.0 + (k / scale) ** power)

  return correlation


def correlation_sequence(n: int, power: float, scale: float = 1.0) -> np.ndarray:
  """r_k = (-1)^k / (1 + (k / scale)^power) for k = 0..n-1 (float64 numpy; the paper: scale 1)."""
  n = _count(n, "the sequence length n")
  return alternating_power_correlation(power, scale)(np.arange(n))


# ----------------------------------------------------------------------------------------------
# Circulant embedding
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Embedding:
  """How to sample N(0, T), T = toeplitz(r_0..r_{dim-1}): a circulant embedding or a dense factor.

  Attributes:
    dim: D, the length of each sample.
    method: "minimal" (M = 2(D - 1)), "padded" (a larger M, needs the correlation function) or
      "dense" (Cholesky factor of T; no valid embedding was found and D is small).
    size: M, the size of the circulant embedding (D for "dense").
    eigenvalues: for "minimal"/"padded", the M eigenvalues lambda of the circulant matrix
      (float64, tiny negative ones clipped to 0); None for "dense".
    cholesky: for "dense", the lower Cholesky factor L of T (T = L L^T); None otherwise.
    tried: (M, min lambda / max lambda) for every circulant embedding tried, in order.
  """

  dim: int
  method: str
  size: int
  eigenvalues: Optional[np.ndarray]
  cholesky: Optional[np.ndarray]
  tried: tuple[tuple[int, float], ...]

  def __repr__(self) -> str:
    return f"Embedding(dim={self.dim}, method={self.method!r}, size={self.size})"

  @property
  def min_relative_eigenvalue(self) -> float:
    """min lambda / max lambda of the last embedding tried (>= -tol when it was used)."""
    return self.tried[-1][1]

  def sample(self, key, num: int) -> Array:
    """(num, dim) float32 array with independent N(0, T) rows. Memory O(num * size)."""
    num = _count(num, "the number of samples num")
    if self.method == "dense":
      return _sample_dense(key, jnp.asarray(self.cholesky, jnp.float32), num)
    sqrt_weights = _sqrt_weights(self)
    if not _checks.is_concrete(key) or jax.default_backend() != "cpu":
      return _sample_circulant(key, sqrt_weights, num, self.dim)
    # On the CPU the FFT runs in scipy: XLA:CPU's FFT splits a batch of rows among the threads
    # that are free, so its rounding changed from run to run under load (the inputs of one seed
    # differed in the last bit, and so did everything trained on them); scipy's split is static.
    # The two agree to float32 rounding (~1e-7 relative); each is deterministic on its own.
    w = np.asarray(_circulant_weights(key, sqrt_weights, num))
    z = scipy.fft.fft(w, axis=-1, workers=os.cpu_count() or 1)[:, :self.dim]
    return jnp.asarray(np.concatenate([z.real, z.imag], axis=0)[:num])


def _sqrt_weights(emb: Embedding) -> Array:
  # float64 sqrt, then float32: sqrt(lambda / M) is all the jitted sampler needs.
  return jnp.asarray(np.sqrt(emb.eigenvalues / emb.size), jnp.float32)


def _circulant_eigenvalues(first_row: np.ndarray) -> np.ndarray:
  """Eigenvalues of the symmetric circulant matrix with this first row (real FFT, float64)."""
  half = np.fft.rfft(first_row).real
  m = first_row.size
  # lambda_j = lambda_{M-j}: mirror the half spectrum rather than pay for a complex FFT.
  return np.concatenate([half, half[1:(m + 1) // 2][::-1]])


def next_fast_size(k: int) -> int:
  """The smallest integer >= k with no prime factor above 5 (FFT lengths that run fast)."""
  best = 1 << max(k - 1, 0).bit_length()
  p5 = 1
  while p5 < best:
    p35 = p5
    while p35 < best:
      q = p35
      while q < k:
        q *= 2
      best = min(best, q)
      p35 *= 3
    p5 *= 5
  return best


def _embedding_sizes(n: int, max_doublings: int, fast_first: bool = False):
  """Half-sizes m to try: the minimal m = n - 1 (preceded, with fast_first, by the smallest
  m >= n - 1 whose FFT length 2m has no prime factor above 5), then powers of two above it."""
  if fast_first and next_fast_size(n - 1) != n - 1:
    yield next_fast_size(n - 1)
  yield n - 1
  m = 1 << (n - 1).bit_length()  # smallest power of two > n - 1
  for _ in range(max_doublings):
    yield m
    m *= 2


def circulant_embedding(r, *, correlation: Optional[CorrelationFn] = None,
                        max_doublings: int = DEFAULT_MAX_DOUBLINGS, tol: float = DEFAULT_TOL,
                        max_dense: int = DEFAULT_MAX_DENSE, fast_fft: bool = False) -> Embedding:
  """Finds a way to sample N(0, toeplitz(r)) without forming the matrix when possible.

  Tries, in order: the minimal circulant embedding M = 2(n - 1) built from r alone; embeddings
  M = 2m with m = 2^g, ..., 2^(g + max_doublings - 1) (2^g the smallest power of two > n - 1)
  built from `correlation` at lags 0..m (only when `correlation` is given); the dense Cholesky
  factor of the n x n Toeplitz matrix when n <= max_dense (with a logged warning). An embedding is
  valid when min lambda >= -tol * max lambda.

  Args:
    r: r_0..r_{n-1}, the first row of the Toeplitz matrix (1-D, finite, n >= 1).
    correlation: optional function of integer lags (numpy array) returning r at those lags;
      needed for embeddings larger than the minimal one. Must agree with r on lags 0..n-1.
    max_doublings: how many larger embeddings to try (0: minimal only).
    tol: relative tolerance on negative eigenvalues (rounding).
    max_dense: the largest n for the O(n^2)-memory, O(n^3)-time dense fallback.
    fast_fft: with `correlation`, first try the smallest embedding M = 2m >= 2(n - 1) whose
      length has no prime factor above 5 (M = 2(n - 1) can be a slow FFT length, e.g.
      39998 = 2 * 7 * 2857 for n = 2e4 runs about 4x slower than 40000).

  Raises:
    TypeError: r is complex or not numbers.
    ValueError: r is not a finite 1-D sequence with r_0 > 0; `correlation` disagrees with r; no
      embedding is nonnegative definite and n > max_dense (the message gives the most negative
      eigenvalue); or the dense fallback finds that toeplitz(r) is not positive definite.
  """
  # complex r would lose its imaginary part in the float64 cast, silently
  r = _checks.as_real_array(r, "the correlation sequence r").astype(np.float64)
  if r.ndim != 1 or r.size < 1:
    raise ValueError(f"r must be a non-empty 1-D sequence r_0..r_(n-1) (got shape {r.shape}).")
  if not np.all(np.isfinite(r)):
    raise ValueError(f"r has {int(np.sum(~np.isfinite(r)))} non-finite entries (of {r.size}).")
  if not r[0] > 0:
    raise ValueError(f"r_0 is the variance and must be > 0 (got {r[0]}).")
  max_doublings = _count(max_doublings, "max_doublings", minimum=0)
  n = r.size
  if correlation is not None:
    at_r = np.asarray(correlation(np.arange(n)), np.float64)
    if at_r.shape != r.shape:
      raise ValueError(f"correlation(arange(n)) has shape {at_r.shape}, expected {r.shape}.")
    if not np.allclose(at_r, r, rtol=1e-12, atol=1e-14 * r[0]):
      raise ValueError("correlation(k) must equal r_k for k = 0..n-1 (max |difference| "
                       f"{np.max(np.abs(at_r - r)):.3g}).")
  if n == 1:  # a 1 x 1 "circulant": the variance itself
    return Embedding(1, "minimal", 1, r.copy(), None, ((1, 1.0),))

  tried = []
  min_eig = None  # (most negative eigenvalue, largest, M) of the minimal embedding
  sizes = _embedding_sizes(n, max_doublings if correlation is not None else 0,
                           fast_first=fast_fft and correlation is not None)
  for i, m in enumerate(sizes):
    size = 2 * m
    j = np.arange(size)
    if m == n - 1:
      first_row = r[np.minimum(j, size - j)]
    else:
      first_row = np.asarray(correlation(np.minimum(j, size - j)), np.float64)
    lam = _circulant_eigenvalues(first_row)
    lam_max, lam_min = float(lam.max()), float(lam.min())
    tried.append((size, lam_min / lam_max))
    if lam_min >= -tol * lam_max:
      lam = np.maximum(lam, 0.0)
      lam.flags.writeable = False
      return Embedding(n, "minimal" if m == n - 1 else "padded", size, lam, None, tuple(tried))
    if m == n - 1:
      min_eig = (lam_min, lam_max, size)

  relative = ", ".join(f"{s}: {q:.2e}" for s, q in tried)
  what = (f"the circulant embedding of the {n} x {n} Toeplitz matrix of r is not nonnegative "
          f"definite: its most negative eigenvalue is {min_eig[0]:.4g} (largest {min_eig[1]:.4g}) "
          f"for the minimal size M = {min_eig[2]}, and min/max eigenvalue by size M is "
          f"{{{relative}}} (tolerance -{tol:g})")
  max_dense = _count(max_dense, "max_dense", minimum=0)
  if n > max_dense:
    hint = ("pass correlation= (r as a function of the lag) to try larger embeddings"
            if correlation is None else "try a larger max_doublings")
    raise ValueError(f"{what}; n = {n} is above the dense Cholesky limit max_dense = "
                     f"{max_dense}: {hint}, or check that r is positive definite.")
  logger.warning("%s; falling back to the dense Cholesky factor (O(n^3) = %d^3).", what, n)
  try:
    chol = scipy.linalg.cholesky(scipy.linalg.toeplitz(r), lower=True)
  except np.linalg.LinAlgError:
    raise ValueError(f"{what}, and the dense Cholesky fallback failed: the {n} x {n} Toeplitz "
                     "matrix of r is not positive definite, so r is not a correlation sequence."
                     ) from None
  chol.flags.writeable = False
  return Embedding(n, "dense", n, None, chol, tuple(tried))


@functools.lru_cache(maxsize=32)
def _paper_embedding(dim: int, power: float, scale: float) -> Embedding:
  # Cached: the embedding depends only on (dim, power, scale), and every seed reuses it.
  correlation = alternating_power_correlation(power, scale)
  return circulant_embedding(correlation(np.arange(dim)), correlation=correlation, fast_fft=True)


def embedding_for(dim: int, power: float, scale: float = 1.0) -> Embedding:
  """The (cached) embedding used by `correlated_gaussians` for these arguments."""
  dim = _count(dim, "the input dimension dim")
  power, scale = _check_power_scale(power, scale)
  return _paper_embedding(dim, power, scale)


# ----------------------------------------------------------------------------------------------
# Samplers (jitted inner parts)
# ----------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(2,))
def _circulant_weights(key, sqrt_weights: Array, num: int) -> Array:
  """((num + 1) // 2, M) complex w * sqrt(2 lambda / M), w standard complex normal."""
  half = (num + 1) // 2
  # JAX's complex normal has E|w|^2 = 1 (variance 1/2 per part); a + i b needs 1 per part.
  w = jax.random.normal(key, (half, sqrt_weights.size), jnp.complex64)
  return w * (math.sqrt(2.0) * sqrt_weights)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _sample_circulant(key, sqrt_weights: Array, num: int, dim: int) -> Array:
  """(num, dim) N(0, T) rows from sqrt(lambda / M): first dim entries of Re and Im of F w."""
  z = jnp.fft.fft(_circulant_weights(key, sqrt_weights, num), axis=-1)[:, :dim]
  # Re z and Im z are independent: both halves of every draw are used.
  return jnp.concatenate([z.real, z.imag], axis=0)[:num]


@functools.partial(jax.jit, static_argnums=(2,))
def _sample_dense(key, chol: Array, num: int) -> Array:
  return jax.random.normal(key, (num, chol.shape[0]), jnp.float32) @ chol.T


# ----------------------------------------------------------------------------------------------
# The regression experiment's data
# ----------------------------------------------------------------------------------------------


def correlated_gaussians(key, num: int, dim: int, power: float, scale: float = 1.0) -> Array:
  """(num, dim) float32 array of independent N(0, T) rows, T_ij = r_|i-j| (correlation_sequence).

  Uses the circulant embedding (module docstring): one FFT of length M ~ 2 dim per two rows,
  memory O(num * M), never O(dim^2) unless the dense fallback is taken (dim <= 4096 only).
  """
  num = _count(num, "the number of samples num")
  return embedding_for(dim, power, scale).sample(key, num)


def regression_inputs(key, num: int, dim: int, power: float, scale: float = 1.0,
                      noise: float = 0.5) -> Array:
  """The paper's inputs x = g + u: g ~ N(0, T), u ~ Uniform[-noise, noise]^dim independent.

  Mean 0, covariance T + (noise^2 / 3) I (1 + 1/12 on the diagonal for noise = 0.5).
  """
  noise = _checks.real_scalar(noise, "the uniform noise half-width", finite=False)
  if not (math.isfinite(noise) and noise >= 0):
    raise ValueError(f"the uniform noise half-width must be finite and >= 0 (got {noise}).")
  k_gauss, k_noise = jax.random.split(key)
  g = correlated_gaussians(k_gauss, num, dim, power, scale)
  return g + jax.random.uniform(k_noise, g.shape, jnp.float32, -noise, noise)


def regression_problem(key, num: int, dim: int, power: float, scale: float = 1.0,
                       noise: float = 0.5) -> tuple[Array, Array]:
  """(X, y): X = regression_inputs(...) of shape (num, dim), y in {+1, -1}^num (float32).

  The labels are +1 or -1 with equal probability, independent of X (as in the paper): with
  N < D points a linear model interpolates any labels, and only the weights' change matters.
  """
  k_x, k_y = jax.random.split(key)
  x = regression_inputs(k_x, num, dim, power, scale, noise)
  y = jnp.where(jax.random.bernoulli(k_y, 0.5, (x.shape[0],)), 1.0, -1.0).astype(jnp.float32)
  return x, y
