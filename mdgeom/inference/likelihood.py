"""The measurement model: the likelihood of the AFTER measurements given the BEFORE ones.

For a candidate potential psi, Theorem 1 (docs/theory.md) makes the learned change Gaussian in
psi's dual space, and real measurements add a gain between the sessions and measurement noise:

    psi'(w) = psi'(w0) + u (mu + s z),   z ~ N(0, 1)               (true weights, Eq. 5)
    v0 = w0 e0,   v = g w e1,   log e ~ N(-sigma^2 / 2, sigma^2)    (what is measured)

with u = a_i b_j the per-unit scale of the synapse (1 without unit structure), mu a drift, s the
size of the change, g a gain (imaging brightness, global potentiation) and sigma the
multiplicative measurement noise. Given v0 and a flat prior on log|w0| (the weight population is
far broader than the noise), the density of v is

    p(v | v0) = E_{t0, t1}[ phi((D - mu u) / (s u)) J / (s u) ] / |v|,
    D = h(v e^{-t1} / g) - h(v0 e^{-t0}),   J = h'(w1) |w1| at w1 = v e^{-t1} / g,

where h is psi's mirror map (any positive multiple of it: the scale is absorbed by s and mu) and
t0, t1 are the log noise factors. Without noise (sigma = 0) it is the change of variables
w -> psi'(w) with its Jacobian psi''(w), as in Box-Cox estimation of a transformation, so the
likelihood of every candidate is a density of the same data and candidates compare by it.

The expectation over (t0, t1) is computed by adaptive Gauss-Hermite quadrature: D is linearised
in t at the posterior mean (twice), which gives a Gaussian posterior of t per synapse, and a
K x K product rule is placed on it (exact as sigma -> 0; tests check it against brute-force
integration). A repeated BEFORE measurement v0' = w0 e0' multiplies in the density of
r = log|v0'/v0| ~ N(0, 2 sigma^2) and sharpens the posterior of t0 to N(m - r / 2, sigma^2 / 2).

Families (`PNORM`, `HYPENTROPY`, `fixed(pot)`) give (D, log J) from log-magnitudes and signs, in
a form that is smooth in the shape parameter: the p-norms use h(w) = sign(w) |w|^(p-1) / (p-1),
whose limit at p = 1 is negative entropy's mirror map up to a constant, so p = 1 *is* negative
entropy and one continuous parameter spans negative entropy, the 2-norm and the 3-norm.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

LOG2PI = float(np.log(2 * np.pi))
SIGMA_MIN = 1e-4  # the smallest noise SD the fit uses (sigma = SIGMA_MIN + exp(rho))
FLIP_LAMBDA = 1e-12


class Family:
  """A set of potentials indexed by one shape parameter theta (or none): `dual` maps signs and
  log-magnitudes of (before, after) to the dual change D and log J = log(h'(w1) |w1|)."""

  name: str = ""
  has_shape: bool = True
  sign_preserving: bool = False

  def dual(self, theta, s0, s1, l0, l1):
    raise NotImplementedError

  def mirror(self, theta, w):
    """h(w), the family's (scaled) mirror map."""
    raise NotImplementedError

  def inverse(self, theta, y, sign0):
    """h^-1(y); sign0: the sign of the weight y came from (for sign-preserving potentials)."""
    raise NotImplementedError


def _expm1_ratio(lam, d):
  """expm1(lam d) / lam, smooth through lam = 0 (where it is d)."""
  small = jnp.abs(lam * d) < 1e-7
  safe = jnp.where(small, 1.0, lam)
  return jnp.where(small, d * (1.0 + 0.5 * lam * d), jnp.expm1(lam * d) / safe)


class _PNorm(Family):
  """theta = lambda = p - 1 >= 0; h(w) = sign(w) |w|^lambda / lambda (negative entropy at 0)."""

  name = "pnorm"

  def dual(self, theta, s0, s1, l0, l1):
    lam = theta
    same = s0 * jnp.exp(lam * l0) * _expm1_ratio(lam, l1 - l0)
    # a sign flip crosses h's jump of 2 / lambda: impossible for negative entropy (lambda = 0)
    flip = s1 * (jnp.exp(lam * l1) + jnp.exp(lam * l0)) / jnp.maximum(lam, FLIP_LAMBDA)
    return jnp.where(s0 == s1, same, flip), lam * l1

  def mirror(self, theta, w):
    lam = jnp.maximum(theta, 0.0)
    a = jnp.abs(w)
    return jnp.where(lam > 0, jnp.sign(w) * a ** lam / jnp.where(lam > 0, lam, 1.0),
                     jnp.sign(w) * jnp.log(a))

  def inverse(self, theta, y, sign0):
    lam = jnp.maximum(theta, 0.0)
    pos = jnp.sign(y) * jnp.abs(lam * y) ** (1.0 / jnp.where(lam > 0, lam, 1.0))
    return jnp.where(lam > 0, pos, sign0 * jnp.exp(sign0 * y))

  def __hash__(self):
    return hash("pnorm")

  def __eq__(self, other):
    return isinstance(other, _PNorm)


class _Hypentropy(Family):
  """theta = log beta; h(w) = arcsinh(w / beta): the 2-norm for |w| << beta, negative entropy for
  |w| >> beta, and sign changes allowed (Ghai et al. 2020)."""

  name = "hypentropy"

  def dual(self, theta, s0, s1, l0, l1):
    d = jnp.arcsinh(s1 * jnp.exp(l1 - theta)) - jnp.arcsinh(s0 * jnp.exp(l0 - theta))
    return d, -0.5 * jnp.log1p(jnp.exp(2.0 * (theta - l1)))

  def mirror(self, theta, w):
    return jnp.arcsinh(w / jnp.exp(theta))

  def inverse(self, theta, y, sign0):
    return jnp.exp(theta) * jnp.sinh(y)

  def __hash__(self):
    return hash("hypentropy")

  def __eq__(self, other):
    return isinstance(other, _Hypentropy)


@dataclasses.dataclass(frozen=True, eq=False)
class Fixed(Family):
  """One potential without a shape parameter (a user's or a registered potential)."""

  potential: Any = None
  has_shape = False

  @property
  def name(self):  # type: ignore[override]
    return self.potential.name

  @property
  def sign_preserving(self):  # type: ignore[override]
    return bool(self.potential.sign_preserving)

  def dual(self, theta, s0, s1, l0, l1):
    w0, w1 = s0 * jnp.exp(l0), s1 * jnp.exp(l1)
    d = self.potential.mirror_map(w1) - self.potential.mirror_map(w0)
    return d, jnp.log(self.potential.hessian_diag(w1)) + l1

  def mirror(self, theta, w):
    return self.potential.mirror_map(w)

  def inverse(self, theta, y, sign0):
    return self.potential.inverse_mirror_map(y, sign=sign0)

  def __hash__(self):
    return hash(("fixed", id(self.potential)))

  def __eq__(self, other):
    return isinstance(other, Fixed) and other.potential is self.potential


PNORM = _PNorm()
HYPENTROPY = _Hypentropy()


@functools.lru_cache(maxsize=None)
def fixed(pot) -> Fixed:
  """The Family of one potential (cached, so jit compiles once per potential)."""
  return Fixed(pot)


class Pairs(NamedTuple):
  """The synapses of the likelihood as float64 arrays [n]: signs and log-magnitudes of BEFORE
  and AFTER, and of a repeated BEFORE (rb = log|v0'| - log|v0|, lb = log|v0'|; zeros and
  has_repeat = False without one), and the unit of each synapse (rows, cols: int32)."""

  s0: jax.Array
  s1: jax.Array
  l0: jax.Array
  l1: jax.Array
  rb: jax.Array
  lb: jax.Array
  rows: jax.Array
  cols: jax.Array
  pop_mean: Any = None   # mean and variance of log|BEFORE| over all synapses (per synapse, for
  pop_var: Any = None    # subsetting); None: a flat prior on log|w0|


@functools.lru_cache(maxsize=None)
def gauss_hermite(k: int):
  """Nodes (x0, x1) and log weights of the K x K product rule for N(0, I_2)."""
  x, w = np.polynomial.hermite_e.hermegauss(k)
  w = w / np.sqrt(2.0 * np.pi)
  a, b = np.meshgrid(x, x, indexing="ij")
  return a.ravel(), b.ravel(), np.log(np.outer(w, w).ravel())


def sigma_of(rho):
  """The noise SD from its unconstrained parameter rho (sigma >= SIGMA_MIN)."""
  return SIGMA_MIN + jnp.exp(rho)


def loglik_exact(family, theta, mu, logs, logg, logu, pairs: Pairs):
  """log p(v | v0) per synapse without measurement noise (sigma = 0)."""
  d, logj = family.dual(theta, pairs.s0, pairs.s1, pairs.l0, pairs.l1 - logg)
  u = jnp.exp(logu)
  tau = jnp.exp(logs) * u
  z = (d - mu * u) / tau
  return -0.5 * z * z - 0.5 * LOG2PI - jnp.log(tau) + logj - pairs.l1


def noise_prior(rho, pairs: Pairs, repeat: bool):
  """The noise's moments given the BEFORE measurement: (sigma^2, m, m0, v0, v1, extra) with
  t0 | v0 ~ N(m0, v0), t1 ~ N(m, v1) and `extra` the repeat's own density term.

  t0's prior N(m, sigma^2) is sharpened by a repeated baseline to N(m - r / 2, sigma^2 / 2), and
  by the population of weights: log|w0| ~ N(a, A) with A = var(log|v0|) - sigma^2 (floored at a
  tenth of it) makes log|v0| = log|w0| + t0 carry information on t0. Without this a large
  BEFORE is more often one measured high, and the regression to the mean that follows would read
  as a change that depends on the weight, i.e. as a geometry."""
  sig = sigma_of(rho)
  s2 = sig * sig
  m = -0.5 * s2
  ones = jnp.ones_like(pairs.l0)
  if repeat:
    m0, v0 = m - 0.5 * pairs.rb, 0.5 * s2 * ones
    extra = -0.25 * pairs.rb ** 2 / s2 - 0.5 * jnp.log(4.0 * jnp.pi * s2) - pairs.lb
  else:
    m0, v0 = m * ones, s2 * ones
    extra = 0.0
  if pairs.pop_var is not None:
    big_a = jnp.maximum(pairs.pop_var - s2, 0.1 * pairs.pop_var)
    t_pop = pairs.l0 - (pairs.pop_mean - m)  # t0 = log|v0| - log|w0|, E log|w0| = mean - m
    prec = 1.0 / v0 + 1.0 / big_a
    m0, v0 = (m0 / v0 + t_pop / big_a) / prec, 1.0 / prec
  return s2, m, m0, v0, s2 * ones, extra


def _placement(family, ref, pairs: Pairs, repeat: bool):
  """Where the quadrature nodes go: the mean and Cholesky factor of the Gaussian posterior of
  (t0, t1) obtained by linearising the dual change in t (twice), at the parameters `ref`."""
  theta, mu, logs, logg, rho, logu = ref
  _, m, m0, v0, v1, _ = noise_prior(rho, pairs, repeat)
  u = jnp.exp(logu)
  tau2 = (jnp.exp(logs) * u) ** 2
  mu_u = mu * u
  dt = jnp.result_type(pairs.l0, m0, m)  # one dtype for jvp's primals and tangents
  ones = jnp.ones(jnp.shape(pairs.l0), dt)

  def dual_at(t0, t1):
    return family.dual(theta, pairs.s0, pairs.s1, pairs.l0 - t0, pairs.l1 - logg - t1)

  t0, t1 = (m0 * ones).astype(dt), (m * ones).astype(dt)
  for _ in range(2):  # linearise at the prior mean, then at the first posterior mean
    (d, _), (c0, _) = jax.jvp(dual_at, (t0, t1), (ones, jnp.zeros_like(t1)))
    _, (c1, j1) = jax.jvp(dual_at, (t0, t1), (jnp.zeros_like(t0), ones))
    den = tau2 + v0 * c0 * c0 + v1 * c1 * c1
    c00 = v0 - v0 * v0 * c0 * c0 / den
    c11 = v1 - v1 * v1 * c1 * c1 / den
    c01 = -v0 * v1 * c0 * c1 / den
    r = mu_u - d + c0 * t0 + c1 * t1
    b0 = m0 / v0 + c0 * r / tau2
    b1 = m / v1 + c1 * r / tau2 + j1  # the Jacobian's slope in t1 shifts the posterior too
    t0, t1 = c00 * b0 + c01 * b1, c01 * b0 + c11 * b1
  l11 = jnp.sqrt(c00)
  l21 = c01 / l11
  l22 = jnp.sqrt(jnp.maximum(c11 - l21 * l21, 1e-300))
  return t0, t1, l11, l21, l22


def loglik_noisy(family, theta, mu, logs, logg, rho, logu, pairs: Pairs, repeat: bool,
                 k: int = 5, silent_logit=None, ref=None):
  """log p(v | v0) per synapse (and of v0' | v0 with a repeated baseline), the noise integrated
  by adaptive Gauss-Hermite quadrature on a K x K grid. With `silent_logit` (the logit of the
  fraction pi of silent synapses) each synapse is a mixture: with probability pi it did not
  change, and its two measurements differ by the noise and the gain alone.

  The nodes are placed at the parameters `ref` (default: the parameters themselves), with no
  derivative through the placement: a fit holds `ref` fixed within a Newton step, so that the
  value, its gradient and its Hessian belong to one function, and moves it with every step."""
  s2, m, m0, v0, v1, extra = noise_prior(rho, pairs, repeat)
  u = jnp.exp(logu)
  tau = jnp.exp(logs) * u
  mu_u = mu * u
  if ref is None:
    ref = (theta, mu, logs, logg, rho, logu)
  t0, t1, l11, l21, l22 = _placement(family, tuple(jax.lax.stop_gradient(r) for r in ref),
                                     pairs, repeat)
  x0, x1, logw = (jnp.asarray(a, pairs.l0.dtype) for a in gauss_hermite(k))
  n0 = _col(t0) + _col(l11) * x0
  n1 = _col(t1) + _col(l21) * x0 + _col(l22) * x1
  d, logj = family.dual(_col(theta), _col(pairs.s0), _col(pairs.s1), _col(pairs.l0) - n0,
                        _col(pairs.l1 - logg) - n1)
  z = (d - _col(mu_u)) / _col(tau)
  log_prior = (-0.5 * (n0 - _col(m0)) ** 2 / _col(v0) - 0.5 * (n1 - _col(m)) ** 2 / _col(v1)
               - LOG2PI - 0.5 * _col(jnp.log(v0 * v1)))
  log_f = log_prior - 0.5 * z * z - 0.5 * LOG2PI - _col(jnp.log(tau)) + logj
  log_q = -0.5 * (x0 * x0 + x1 * x1) - LOG2PI - _col(jnp.log(l11 * l22))
  out = jax.scipy.special.logsumexp(logw + log_f - log_q, axis=-1) - pairs.l1
  if silent_logit is not None:
    # unchanged: log|v| - log|v0| - log g = t1 - t0 ~ N(m - m0, v0 + v1), the same sign
    r = pairs.l1 - pairs.l0 - logg - (m - m0)
    var = v0 + v1
    still = jnp.where(pairs.s0 == pairs.s1,
                      -0.5 * r * r / var - 0.5 * jnp.log(2.0 * jnp.pi * var) - pairs.l1, -jnp.inf)
    out = jnp.logaddexp(jax.nn.log_sigmoid(-silent_logit) + out,
                        jax.nn.log_sigmoid(silent_logit) + still)
  return out + extra


def _col(x):
  """x as a column against the quadrature nodes (scalars stay scalars)."""
  return x[..., None] if jnp.ndim(x) else x


def loglik(family, theta, mu, logs, logg, rho, silent_logit, logu, pairs: Pairs, noisy: bool,
           repeat: bool, silent: bool, k: int = 5, ref=None):
  """log p(v | v0) per synapse [n]: exact (noisy=False, sigma = 0) or with the noise integrated
  (and, with `silent`, a fraction of unchanged synapses); `ref`: see `loglik_noisy`."""
  if noisy:
    return loglik_noisy(family, theta, mu, logs, logg, rho, logu, pairs, repeat, k,
                        silent_logit if silent else None, ref)
  return loglik_exact(family, theta, mu, logs, logg, logu, pairs)
