"""Spine volumes as synaptic weights: the data of paper section 4.4 (Fig. 5) and three models.

Every model says the same thing about learning (Theorem 1; docs/theory.md): a synapse starts at an
initial weight w0, and learning adds one zero-mean Gaussian change in the dual space of the
potential f,

    f'(w) = f'(w0) + xi,   xi ~ N(0, s^2),   so   w = (f')^{-1}(f'(w0) + xi).

The models differ in the geometry f and in the distribution of w0:

- negative entropy, f'(w) = log w + 1, w0 one of two constants c1, c2 (probabilities pi, 1 - pi):
  log w = log w0 + xi, so log w is a two-Gaussian mixture with a shared variance. Fitting that
  mixture to log volume by EM (`fit_log_mixture`) IS the maximum-likelihood fit of the model.
- p-norm (3-norm in the paper, 2-norm = Euclidean), f'(w) = w^(p-1) for w > 0: w0 is a small
  constant c with probability pi, else log-normal, log w0 ~ N(mu0, sigma0^2). Final weights that
  come out negative are synapses removed by learning: they are not in the data, so the density
  is renormalised over w > 0 (`pnorm_model_logpdf`, with the formula).

All densities are compared on the log-volume scale x = log w, with the Jacobian dw/dx = w:
p_x(x) = p_w(e^x) e^x. Log-likelihoods are per synapse, in nats, of x.
"""

from __future__ import annotations

import csv
import functools
import math
import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special as jsp_special
from scipy import optimize, special, stats

from mdgeom import potentials as potentials_lib

SPINE_COLUMN = "spine_vol_um3"
EXPECTED_ROWS = 1961
DOWNLOAD_HINT = (
    "Download `soma_subgraph_synapses_spines_v185.csv` from the MICrONS layer 2/3 release, "
    "Zenodo record 3710459 (https://zenodo.org/records/3710459), and pass its path "
    "(--config.data_path=PATH).")


class SynapticDataError(ValueError):
  """The spine-volume table is missing, unreadable or not what the loader expects."""


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def load_spine_volumes(path: str, column: str = SPINE_COLUMN,
                       expected_rows: Optional[int] = EXPECTED_ROWS) -> np.ndarray:
  """Spine head volumes (um^3) from the MICrONS v185 synapse table (Dorkenwald et al. 2022).

  Checks that the file exists (else says where to download it), has a header with `column`,
  that every value parses as a positive finite number, and that there are `expected_rows` rows
  (None: any number >= 2). Returns float64 volumes in file order.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"no spine-volume table at {path!r}. {DOWNLOAD_HINT}")
  try:
    with open(path, newline="") as f:
      reader = csv.reader(f)
      header = next(reader, None)
      if header is None:
        raise SynapticDataError(f"{path} is empty (expected a CSV with a {column!r} column).")
      header = [h.strip() for h in header]
      if column not in header:
        raise SynapticDataError(
            f"{path} has no column {column!r} (columns: {header}). Is this the MICrONS v185 "
            f"synapse table? {DOWNLOAD_HINT}")
      j = header.index(column)
      raw = [(i + 2, row[j] if j < len(row) else "") for i, row in enumerate(reader) if row]
  except UnicodeDecodeError as e:
    raise SynapticDataError(f"{path} is not a text CSV file ({e}).") from None
  values = np.empty(len(raw))
  for k, (line, text) in enumerate(raw):
    try:
      values[k] = float(text)
    except ValueError:
      raise SynapticDataError(
          f"{path}, line {line}: {column} = {text!r} is not a number.") from None
  bad = ~np.isfinite(values) | (values <= 0)
  if np.any(bad):
    k = int(np.argmax(bad))
    raise SynapticDataError(
        f"{path}: {int(bad.sum())} {column} values are not positive finite volumes (first: line "
        f"{raw[k][0]}, value {raw[k][1]!r}); a log-volume model needs every volume > 0.")
  if expected_rows is not None and values.size != expected_rows:
    raise SynapticDataError(
        f"{path} has {values.size} rows, expected {expected_rows} (the v185 table of Dorkenwald "
        "et al. 2022). Pass expected_rows=None to load another table.")
  if values.size < 2:
    raise SynapticDataError(f"{path} has {values.size} rows: nothing to fit.")
  return values


# ----------------------------------------------------------------------------------------------
# Negative entropy: two-Gaussian mixture with a shared variance in log volume (EM)
# ----------------------------------------------------------------------------------------------


def mixture_logpdf(x, pi, mu, sigma) -> np.ndarray:
  """log[pi N(x; mu1, sigma^2) + (1 - pi) N(x; mu2, sigma^2)], elementwise (float64)."""
  x = np.asarray(x, np.float64)[..., None]
  logw = np.log([pi, 1.0 - pi])
  return special.logsumexp(logw + stats.norm.logpdf(x, np.asarray(mu), sigma), axis=-1)


def mixture_cdf(x, pi, mu, sigma) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return pi * special.ndtr((x - mu[0]) / sigma) + (1 - pi) * special.ndtr((x - mu[1]) / sigma)


def _em(x, pi, mu, sigma, tol, max_iter):
  """EM for two Gaussians with one shared variance; returns (pi, mu, sigma, loglik, iters).

  E-step: responsibilities r_i = pi N1 / (pi N1 + (1-pi) N2). M-step: pi = mean r,
  mu_k = weighted means, sigma^2 = sum_k sum_i r_ik (x_i - mu_k)^2 / n (the shared variance).
  """
  mu = np.array(mu, np.float64)
  prev = -np.inf
  for it in range(1, max_iter + 1):
    logp = np.log([pi, 1 - pi]) + stats.norm.logpdf(x[:, None], mu, sigma)
    total = special.logsumexp(logp, axis=1)
    ll = float(np.mean(total))
    r = np.exp(logp - total[:, None])
    nk = r.sum(0)
    if np.any(nk < 1e-8 * x.size):  # a component died: degenerate start
      return pi, mu, sigma, -np.inf, it
    pi = float(nk[0] / x.size)
    mu = (r * x[:, None]).sum(0) / nk
    sigma = float(np.sqrt(np.sum(r * (x[:, None] - mu) ** 2) / x.size))
    if ll - prev < tol:
      break
    prev = ll
  ll = float(np.mean(mixture_logpdf(x, pi, mu, sigma)))
  return pi, mu, sigma, ll, it


def fit_log_mixture(x, *, n_starts: int = 8, seed: int = 0, tol: float = 1e-12,
                    max_iter: int = 10000) -> dict:
  """Maximum-likelihood two-Gaussian mixture with shared variance for log volumes x (EM).

  Several starts (means at random data quantiles, seeded); the best log-likelihood wins. The
  components are ordered so that mu1 < mu2. Returns {"pi", "mu", "sigma", "loglik_per_synapse",
  "n_iter"} with pi the weight of the low component.
  """
  x = np.asarray(x, np.float64)
  rng = np.random.default_rng(seed)
  best = None
  for _ in range(n_starts):
    q = np.sort(rng.uniform(0.05, 0.95, size=2))
    mu = np.quantile(x, q)
    if mu[1] - mu[0] < 1e-3 * x.std():
      mu[1] = mu[0] + 0.5 * x.std()
    pi0 = float(rng.uniform(0.2, 0.8))
    sigma0 = float(x.std() * rng.uniform(0.3, 0.8))
    pi, mu, sigma, ll, it = _em(x, pi0, mu, sigma0, tol, max_iter)
    if best is None or ll > best[3]:
      best = (pi, mu, sigma, ll, it)
  pi, mu, sigma, ll, it = best
  if mu[0] > mu[1]:
    pi, mu = 1.0 - pi, mu[::-1].copy()
  return {"pi": pi, "mu": [float(mu[0]), float(mu[1])], "sigma": sigma,
          "loglik_per_synapse": ll, "n_iter": it}


def two_point_mirror_logpdf(potential, x, atoms, probs, s) -> np.ndarray:
  """Log-volume density of w = (f')^{-1}(f'(w0) + xi) for a two-point (any-point) w0, any potential.

  With g = f' increasing on w > 0 and xi ~ N(0, s^2), the change of variables y = g(w) gives

      p_w(w) = sum_k pi_k N(g(w) - g(a_k); 0, s^2) g'(w) / Z,     p_x(x) = p_w(e^x) e^x,

  where Z = 1 for a sign-preserving potential (negative entropy never leaves w > 0) and else
  Z = sum_k pi_k Phi(g(a_k) / s), the probability of a positive final weight (negative finals
  are removed). For negative entropy g(w) = log w + 1 and g'(w) e^x = 1, so p_x(x) is exactly the
  two-Gaussian mixture sum_k pi_k N(x; log a_k, s^2): the EM fit is the model's fit.
  """
  pot = potentials_lib.get(potential)
  x = np.asarray(x, np.float64)
  with jax.enable_x64(True):
    w = jnp.exp(jnp.asarray(x))
    gw = np.asarray(pot.mirror_map(w))
    log_jac = np.log(np.asarray(pot.hessian_diag(w))) + x
    ga = np.asarray(pot.mirror_map(jnp.asarray(atoms, jnp.float64)))
  comp = np.log(np.asarray(probs))[None] + stats.norm.logpdf(gw[:, None] - ga[None], 0.0, s)
  logz = 0.0 if pot.sign_preserving else np.log(np.sum(np.asarray(probs) *
                                                       special.ndtr(ga / s)))
  return special.logsumexp(comp, axis=1) + log_jac - logz


# ----------------------------------------------------------------------------------------------
# p-norm models: w0 = constant c (prob pi) or log-normal; Gaussian dual change; negatives removed
# ----------------------------------------------------------------------------------------------

_Z_MAX = 6.0  # log-normal quadrature covers |z| <= 6 (mass outside: 2e-9, renormalised away)


def _G(t):
  """G(t) = int_{-inf}^t Phi = t Phi(t) + phi(t)."""
  return t * jsp_special.ndtr(t) + jnp.exp(-0.5 * t * t) / jnp.sqrt(2 * jnp.pi)


def _phi_diff(a, b):
  """Phi(a) - Phi(b) for a >= b, without cancellation in the upper tail."""
  return jnp.where(b > 0, jsp_special.ndtr(-b) - jsp_special.ndtr(-a),
                   jsp_special.ndtr(a) - jsp_special.ndtr(b))


def _G_diff(a, b):
  """G(a) - G(b) for a >= b; G(t) = t + G(-t) avoids cancellation for large positive t."""
  return jnp.where(b > 0, (a - b) + _G(-a) - _G(-b), _G(a) - _G(b))


def _bins(q, mu0, sigma0, n_bins):
  """Quantile bins of U = g(w0) = w0^q for log w0 ~ N(mu0, sigma0^2): edges and masses."""
  z = jnp.linspace(-_Z_MAX, _Z_MAX, n_bins + 1)
  mass = jnp.diff(jsp_special.ndtr(z))
  mass = mass / jnp.sum(mass)
  u = jnp.exp(q * (mu0 + sigma0 * z))
  return u[:-1], u[1:], mass


def _uniform_bin_gauss(v, lo, hi, s):
  """For U uniform on each bin [lo, hi] and xi ~ N(0, s^2): the density of U + xi at v and
  P(U + xi <= v), both averaged over the bin. Bins narrower than 1e-6 s are treated as points.

      pdf = [Phi((v - lo)/s) - Phi((v - hi)/s)] / (hi - lo)
      cdf = s [G((v - lo)/s) - G((v - hi)/s)] / (hi - lo)
  """
  width = hi - lo
  wide = width > 1e-6 * s
  safe = jnp.where(wide, width, 1.0)
  a, b = (v - lo) / s, (v - hi) / s
  mid = (v - 0.5 * (lo + hi)) / s
  pdf = jnp.where(wide, _phi_diff(a, b) / safe,
                  jnp.exp(-0.5 * mid * mid) / (s * jnp.sqrt(2 * jnp.pi)))
  cdf = jnp.where(wide, s * _G_diff(a, b) / safe, jsp_special.ndtr(mid))
  return pdf, cdf


def _pnorm_parts(x, p, pi, c, mu0, sigma0, s, n_bins, x_grid):
  q = p - 1.0
  lo, hi, mass = _bins(q, mu0, sigma0, n_bins)

  def log_pdf_ln(xs):
    v = jnp.exp(q * xs)[:, None]  # y = g(w) = w^(p-1)
    pdf_b, _ = _uniform_bin_gauss(v, lo[None], hi[None], s)
    return jnp.log(jnp.maximum(jnp.sum(mass[None] * pdf_b, axis=1), 1e-300))

  # The log-normal part is smooth in x: on a fine grid it is interpolated to the data (fits),
  # else evaluated at every datum.
  log_ln = log_pdf_ln(x) if x_grid is None else jnp.interp(x, x_grid, log_pdf_ln(x_grid))
  uc = c ** q
  v = jnp.exp(q * x)
  log_const = jnp.log(pi) - 0.5 * ((v - uc) / s) ** 2 - jnp.log(s * jnp.sqrt(2 * jnp.pi))
  _, cdf0 = _uniform_bin_gauss(0.0, lo, hi, s)
  p_neg = pi * jsp_special.ndtr(-uc / s) + (1 - pi) * jnp.sum(mass * cdf0)
  return jnp.logaddexp(log_const, jnp.log1p(-pi) + log_ln), p_neg, q


@functools.partial(jax.jit, static_argnames="n_bins")
def _pnorm_logpdf_jax(x, p, pi, c, mu0, sigma0, s, n_bins=600, x_grid=None):
  log_py, p_neg, q = _pnorm_parts(x, p, pi, c, mu0, sigma0, s, n_bins, x_grid)
  return log_py + jnp.log(q) + q * x - jnp.log1p(-p_neg), p_neg


def pnorm_model_logpdf(x, p, pi, c, mu0, sigma0, s, n_bins: int = 600):
  """Log-volume density of the p-norm model and the fraction of synapses it removes.

  Model: w0 = c with probability pi, else log w0 ~ N(mu0, sigma0^2); y = g(w0) + xi with
  g(w) = f'(w) = w^(p-1) (w > 0) and xi ~ N(0, s^2); w = g^{-1}(y), kept only when y > 0.
  Change of variables y -> w (g increasing, g'(w) = (p-1) w^(p-2)), marginalised over w0:

      p_w(w) = [pi N(g(w) - c^(p-1); 0, s^2)
                + (1 - pi) E_{w0 ~ LN}[N(g(w) - g(w0); 0, s^2)]] g'(w) / (1 - P_neg),
      P_neg  = pi Phi(-c^(p-1) / s) + (1 - pi) E_{w0 ~ LN}[Phi(-g(w0) / s)],

  and on the log scale p_x(x) = p_w(e^x) e^x, so log p_x = log p_y(e^{(p-1)x}) + log(p-1)
  + (p-1) x - log(1 - P_neg). The log-normal expectation uses quantile bins of z = (log w0 -
  mu0)/sigma0 on [-6, 6] (`n_bins` of equal width in z, mass Phi(z_{k+1}) - Phi(z_k)), with U =
  g(w0) uniform inside each bin; the Gaussian is integrated over each bin exactly (Phi and
  G(t) = t Phi(t) + phi(t) differences), so the quadrature stays accurate however small s is.
  Vectorised over synapses and bins (one [n, n_bins] array).

  Returns (log p_x(x) as float64 array, P_neg).
  """
  with jax.enable_x64(True):
    args = [jnp.asarray(a, jnp.float64) for a in (x, p, pi, c, mu0, sigma0, s)]
    lp, p_neg = _pnorm_logpdf_jax(*args, n_bins=n_bins)
    return np.asarray(lp), float(p_neg)


@functools.partial(jax.jit, static_argnames="n_bins")
def _pnorm_cdf_jax(x, p, pi, c, mu0, sigma0, s, n_bins=600):
  q = p - 1.0
  lo, hi, mass = _bins(q, mu0, sigma0, n_bins)
  uc = c ** q

  def f_y(v):
    _, cdf = _uniform_bin_gauss(v[:, None], lo[None], hi[None], s)
    return pi * jsp_special.ndtr((v - uc) / s) + (1 - pi) * jnp.sum(mass[None] * cdf, axis=1)

  f0 = f_y(jnp.zeros(1))[0]
  return (f_y(jnp.exp(q * x)) - f0) / (1.0 - f0)


def pnorm_model_cdf(x, p, pi, c, mu0, sigma0, s, n_bins: int = 600) -> np.ndarray:
  """CDF of the p-norm model on the log-volume scale: P(log w <= x | w > 0).

  F_x(x) = [F_y(e^{(p-1)x}) - F_y(0)] / (1 - F_y(0)) with F_y(v) = pi Phi((v - c^(p-1))/s)
  + (1 - pi) E_LN[Phi((v - g(w0))/s)] (same bins as `pnorm_model_logpdf`).
  """
  with jax.enable_x64(True):
    args = [jnp.asarray(a, jnp.float64) for a in (x, p, pi, c, mu0, sigma0, s)]
    return np.clip(np.asarray(_pnorm_cdf_jax(*args, n_bins=n_bins)), 0.0, 1.0)


def _unpack(theta):
  """Unconstrained (logit pi, mu0, log sigma0, log s) -> (pi, mu0, sigma0, s)."""
  return jax.nn.sigmoid(theta[0]), theta[1], jnp.exp(theta[2]), jnp.exp(theta[3])


def _pnorm_nll(theta, x, p, c, x_grid, n_bins):
  pi, mu0, sigma0, s = _unpack(theta)
  lp, _ = _pnorm_logpdf_jax(x, p, pi, c, mu0, sigma0, s, n_bins=n_bins, x_grid=x_grid)
  return -jnp.mean(lp)


_pnorm_nll_grad = jax.jit(jax.value_and_grad(_pnorm_nll), static_argnames="n_bins")


def fit_pnorm_model(x, p: float, *, constant: float = 1e-2, n_starts: int = 4, seed: int = 0,
                    n_bins: int = 600, fit_bins: int = 300, fit_grid: int = 256) -> dict:
  """Maximum-likelihood fit of the p-norm model (see `pnorm_model_logpdf`) to log volumes x.

  The constant initial weight c is fixed (the paper's 1e-2 um^3 for Fig. 5B); pi, mu0, sigma0
  and s are fitted by L-BFGS-B on (logit pi, mu0, log sigma0, log s) with exact JAX gradients,
  from `n_starts` seeded starts: the log-normal at the upper part of the data, and s such that
  the constant component lands near the lower part (w ~ |xi|^(1/(p-1)) when c^(p-1) << s).
  During the search the log-normal part uses `fit_bins` bins on a `fit_grid`-point grid of x
  (interpolated to the data); the reported log-likelihood is the exact one with `n_bins` bins at
  every datum. Returns the parameters, "loglik_per_synapse", "removed_fraction" (P_neg) and the
  optimiser's report for the best start.
  """
  x = np.asarray(x, np.float64)
  q = p - 1.0
  rng = np.random.default_rng(seed)
  lo_q, hi_q = np.quantile(x, [0.2, 0.75])
  bounds = [(-8.0, 8.0), (x.min() - 3, x.max() + 3), (np.log(0.02), np.log(3.0)),
            (q * x.min() - 12, q * x.max() + 6)]
  best, fails = None, 0
  with jax.enable_x64(True):
    xj = jnp.asarray(x)
    grid = jnp.linspace(x.min() - 1e-6, x.max() + 1e-6, fit_grid)
    pj, cj = jnp.asarray(p, jnp.float64), jnp.asarray(constant, jnp.float64)

    def fun(theta):
      val, grad = _pnorm_nll_grad(jnp.asarray(theta), xj, pj, cj, grid, n_bins=fit_bins)
      val, grad = float(val), np.asarray(grad, np.float64)
      if not np.isfinite(val) or not np.all(np.isfinite(grad)):
        return 1e6, np.zeros(4)
      return val, grad

    for _ in range(n_starts):
      theta0 = np.array([
          rng.normal(0.0, 0.5),
          hi_q + rng.normal(0.0, 0.3),
          np.log(rng.uniform(0.2, 0.7)),
          q * lo_q + np.log(rng.uniform(0.3, 3.0)),
      ])
      theta0 = np.clip(theta0, [b[0] for b in bounds], [b[1] for b in bounds])
      r = optimize.minimize(fun, theta0, jac=True, method="L-BFGS-B", bounds=bounds,
                            options={"maxiter": 500})
      if not np.isfinite(r.fun) or r.fun >= 1e6:
        fails += 1
        continue
      if best is None or r.fun < best.fun:
        best = r
    if best is None:
      raise RuntimeError(f"every start of the {p:g}-norm fit failed.")
    pi, mu0, sigma0, s = (float(v) for v in _unpack(jnp.asarray(best.x, jnp.float64)))
  lp, p_neg = pnorm_model_logpdf(x, p, pi, constant, mu0, sigma0, s, n_bins)
  return {"p": p, "pi_constant": pi, "constant": constant, "lognormal_mu": mu0,
          "lognormal_sigma": sigma0, "dual_change_std": s, "removed_fraction": p_neg,
          "loglik_per_synapse": float(np.mean(lp)), "optimizer_converged": bool(best.success),
          "optimizer_message": str(best.message), "optimizer_iterations": int(best.nit),
          "n_starts": n_starts, "failed_starts": fails}


def sample_pnorm_model(key, n: int, p, pi, c, mu0, sigma0, s):
  """Draws the p-norm model's generative process: (w0, w, kept) with kept = w > 0.

  Used to check the density against Monte Carlo and to show what the removed synapses are.
  """
  k1, k2, k3 = jax.random.split(key, 3)
  const = jax.random.bernoulli(k1, pi, (n,))
  w0 = jnp.where(const, c, jnp.exp(mu0 + sigma0 * jax.random.normal(k2, (n,))))
  pot = potentials_lib.pnorm(float(p))
  y = pot.mirror_map(w0) + s * jax.random.normal(k3, (n,))
  w = pot.inverse_mirror_map(y)
  return w0, w, w > 0


# ----------------------------------------------------------------------------------------------
# Distances between the data and a model
# ----------------------------------------------------------------------------------------------


def goodness_of_fit(x, cdf, logpdf) -> dict:
  """Log-likelihood per synapse, KS and Delta-CDF-type distances of log volumes x to a model.

  - ks, ks_p_value: Kolmogorov-Smirnov statistic sup |F_n - F| of x against the model CDF
    (the p-value treats the fitted parameters as known, so it is optimistic).
  - w1_log_volume: int |F_n(x) - F(x)| dx, the Wasserstein-1 distance in nats of volume.
  - delta_cdf: the same divided by the data's standard deviation (ddof=1): unitless, like the
    paper's Delta-CDF (which is the W1 distance of the scaled sample to N(0, 1)).
  Integrals on an 8,001-point grid from min(x) - 15 to max(x) + 5 (tails of the models included).
  """
  x = np.sort(np.asarray(x, np.float64))
  n = x.size
  f = cdf(x)
  i = np.arange(1, n + 1)
  ks = float(max(np.max(i / n - f), np.max(f - (i - 1) / n)))
  grid = np.linspace(x[0] - 15.0, x[-1] + 5.0, 8001)
  fn = np.searchsorted(x, grid, side="right") / n
  w1 = float(np.trapezoid(np.abs(fn - cdf(grid)), grid))
  return {"loglik_per_synapse": float(np.mean(logpdf(x))), "ks": ks,
          "ks_p_value": float(stats.kstwo.sf(ks, n)), "w1_log_volume": w1,
          "delta_cdf": w1 / float(np.std(x, ddof=1))}


def aic_bic(loglik_per_synapse: float, n: int, k: int) -> dict:
  ll = loglik_per_synapse * n
  return {"n_params": k, "aic": 2 * k - 2 * ll, "bic": k * math.log(n) - 2 * ll}


# log |N(0, 1)| has standard deviation pi / (2 sqrt 2): with w0 << change, a p-norm gives
# log w ~ log|xi| / (p - 1), a mode of that width divided by p - 1.
LOG_ABS_NORMAL_STD = math.pi / (2 * math.sqrt(2))


def pnorm_from_mode_width(width: float) -> float:
  """The p whose mode width LOG_ABS_NORMAL_STD / (p - 1) in log w equals `width`."""
  return 1.0 + LOG_ABS_NORMAL_STD / width


def ne_model(x, *, n_starts: int = 8, seed: int = 0) -> dict:
  """The negative-entropy model of log volumes x: two-point w0 + one Gaussian dual change, fitted
  as a shared-variance two-Gaussian mixture by EM; checked against the density computed through
  the mirror map (`max_abs_logpdf_difference`), with goodness of fit and AIC/BIC."""
  fit = fit_log_mixture(x, n_starts=n_starts, seed=seed)
  pi, mu, sigma = fit["pi"], np.asarray(fit["mu"]), fit["sigma"]
  atoms = np.exp(mu)
  generic = two_point_mirror_logpdf("negative_entropy", x, atoms, [pi, 1 - pi], sigma)
  mixture = mixture_logpdf(x, pi, mu, sigma)
  gof = goodness_of_fit(x, lambda z: mixture_cdf(z, pi, mu, sigma),
                        lambda z: mixture_logpdf(z, pi, mu, sigma))
  return {"w0_values": atoms, "w0_probs": [pi, 1 - pi], "log_w0": mu, "dual_change_std": sigma,
          "em_iterations": fit["n_iter"],
          "max_abs_logpdf_difference": float(np.max(np.abs(generic - mixture))),
          **gof, **aic_bic(gof["loglik_per_synapse"], np.size(x), 4)}


def pnorm_model(x, p: float, *, constant: float = 1e-2, n_starts: int = 4, seed: int = 0,
                n_bins: int = 600) -> dict:
  """`fit_pnorm_model` with goodness of fit and AIC/BIC."""
  fit = fit_pnorm_model(x, p, constant=constant, n_starts=n_starts, seed=seed, n_bins=n_bins)
  args = (p, fit["pi_constant"], constant, fit["lognormal_mu"], fit["lognormal_sigma"],
          fit["dual_change_std"])
  gof = goodness_of_fit(x, lambda z: pnorm_model_cdf(z, *args, n_bins=n_bins),
                        lambda z: pnorm_model_logpdf(z, *args, n_bins=n_bins)[0])
  return {**fit, **gof, **aic_bic(gof["loglik_per_synapse"], np.size(x), 4)}


def lognormal_model(x) -> dict:
  """The baseline: one log-normal (one Gaussian in log volume, ML fit), with goodness of fit."""
  mu, sd = float(np.mean(x)), float(np.std(x))
  return {"mu": mu, "sigma": sd,
          **goodness_of_fit(x, lambda z: stats.norm.cdf(z, mu, sd),
                            lambda z: stats.norm.logpdf(z, mu, sd)),
          **aic_bic(float(np.mean(stats.norm.logpdf(x, mu, sd))), np.size(x), 2)}
