"""Maximum likelihood for the measurement model (`mdgeom.inference.likelihood`).

Parameters of one fit: the shape theta of the family (p - 1 or log beta; fixed inside a fit and
scanned by `profile`), the drift mu, log s, the log gain log g, the noise parameter rho
(sigma = SIGMA_MIN + e^rho), the logit of the fraction of silent synapses and, with unit
structure, log a_i and log b_j of the per-unit scales.
Vector layout: [theta, mu, log s, log g, rho, logit pi, log a (R), log b (C)].

Every synapse's log-likelihood depends on seven local coordinates only (the six globals and
log u_k = log a_i + log b_j), so one reverse pass gives all per-synapse gradients [n, 7], and
central differences of it all per-synapse Hessians [n, 7, 7]. The Hessian of the whole problem
is never formed: its product with a direction maps the direction to local coordinates, applies
the [7, 7] blocks and sums back (rows and columns by segment sums), and Newton's equations are
solved by conjugate gradients, so a 1000 x 1000 weight matrix costs O(n) per step. Steps are
damped (Levenberg-Marquardt) and accepted only when the likelihood rises. The gauges of the
rank-1 scales (a -> a t, b -> b / t, and u against s) are fixed by a penalty on the sums of
log a and log b, which leaves the likelihood unchanged, and the unit scales carry a weak
log-normal prior (SD UNIT_PRIOR_SD of their logs, a random-effects view of units): without it a
unit whose change the noise explains has its maximum at a scale of zero.

`robust_variance` gives the sandwich (Huber-White) variance of theta, clustered by row and by
column units (Cameron, Gelbach and Miller 2011) when the data have them, from the per-synapse
influence of theta: the intervals stay honest when the Gaussian model is only approximately
right, as for trained networks.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import linalg

from mdgeom.inference import likelihood as lik

N_GLOBAL = 6
THETA, MU, LOGS, LOGG, RHO, SILENT = range(N_GLOBAL)
LOCAL = N_GLOBAL + 1
CG_ITERS = 60
MAX_NEWTON = 60
DENSE_MAX = 1500  # parameters up to which Newton's equations are solved densely (else by CG)
RHO_BOUNDS = (float(np.log(1e-6)), 0.0)  # sigma in [1e-4, 1]: below, the noise is nil
SILENT_BOUNDS = (-12.0, 12.0)  # the silent fraction in [6e-6, 1 - 6e-6]: "no change" is reachable
UNIT_PRIOR_SD = 1.5  # log a_i, log b_j ~ N(0, 1.5^2): keeps a unit whose change the noise
#                     explains from a scale of 0 (where the noise integral degenerates)
MAX_STEP = 2.0  # largest change of a log-scale parameter in one Newton step (a trust region)
TOL = 1e-7  # Newton decrement (log-likelihood units per synapse) at which a fit stops


class Spec(NamedTuple):
  """Static settings of one compiled likelihood (hashable)."""

  family: lik.Family
  noisy: bool
  repeat: bool
  k: int
  n_rows: int   # 0 without unit structure
  n_cols: int
  silent: bool = False  # a fraction of synapses that did not change (noisy only)


def n_params(spec: Spec) -> int:
  return N_GLOBAL + spec.n_rows + spec.n_cols


def _locals(spec: Spec, x, pairs: lik.Pairs):
  n = pairs.l0.shape[0]
  glob = jnp.broadcast_to(x[:N_GLOBAL], (n, N_GLOBAL))
  if spec.n_rows:
    a = x[N_GLOBAL:N_GLOBAL + spec.n_rows]
    b = x[N_GLOBAL + spec.n_rows:]
    logu = a[pairs.rows] + b[pairs.cols]
  else:
    logu = jnp.zeros(n, x.dtype)
  return jnp.concatenate([glob, logu[:, None]], axis=1)


def _per_synapse(spec: Spec, locs, pairs: lik.Pairs, ref=None):
  c = [locs[:, j] for j in range(LOCAL)]
  r = None if ref is None else tuple(ref[:, j] for j in (THETA, MU, LOGS, LOGG, RHO, N_GLOBAL))
  return lik.loglik(spec.family, c[THETA], c[MU], c[LOGS], c[LOGG], c[RHO], c[SILENT],
                    c[N_GLOBAL], pairs, spec.noisy, spec.repeat, spec.silent, spec.k, r)


def _penalty(spec: Spec, x):
  if not spec.n_rows:
    return 0.0
  a = x[N_GLOBAL:N_GLOBAL + spec.n_rows]
  b = x[N_GLOBAL + spec.n_rows:]
  prec = 1.0 / UNIT_PRIOR_SD ** 2
  return -0.5 * (jnp.sum(a) ** 2 + jnp.sum(b) ** 2) - 0.5 * prec * (jnp.sum(a * a) +
                                                                    jnp.sum(b * b))


@functools.partial(jax.jit, static_argnums=0)
def _values(spec: Spec, x, pairs: lik.Pairs, x_ref):
  """Per-synapse log-likelihoods [n] and the gauge penalty, nodes placed at x_ref (one
  compilation serves every evaluation of a problem)."""
  return (_per_synapse(spec, _locals(spec, x, pairs), pairs, _locals(spec, x_ref, pairs)),
          _penalty(spec, x))


def per_synapse(spec: Spec, x, pairs: lik.Pairs, x_ref=None) -> np.ndarray:
  """The log-likelihood of every synapse [n] at parameters x (quadrature nodes placed at x_ref,
  default x)."""
  return np.asarray(_values(spec, x, pairs, x if x_ref is None else x_ref)[0])


def total(spec: Spec, x, pairs: lik.Pairs, x_ref=None) -> float:
  """The summed log-likelihood (plus the gauge penalty); -inf when not finite."""
  v, pen = _values(spec, x, pairs, x if x_ref is None else x_ref)
  out = float(np.sum(np.asarray(v))) + float(pen)
  return out if np.isfinite(out) else -np.inf


@functools.partial(jax.jit, static_argnums=0)
def _grad_at_locals(spec: Spec, locs, pairs: lik.Pairs, ref):
  return jax.grad(lambda l: jnp.sum(_per_synapse(spec, l, pairs, ref)))(locs)


FD_STEP = 1e-5


def _fd_hessians(spec: Spec, locs, pairs: lik.Pairs, dirs: tuple):
  """Central differences of the per-synapse gradients along the local directions `dirs`; other
  columns are zero. (Calls of the compiled gradient: compiling the differences as one graph
  would cost more time than it saves.)"""
  zero = jnp.zeros_like(locs)
  cols = []
  for j in range(LOCAL):
    if j not in dirs:
      cols.append(zero)
      continue
    e = jnp.zeros(LOCAL, locs.dtype).at[j].set(FD_STEP)
    cols.append((_grad_at_locals(spec, locs + e, pairs, locs)
                 - _grad_at_locals(spec, locs - e, pairs, locs)) / (2 * FD_STEP))
  return _symmetrise(jnp.stack(cols, axis=2), jnp.asarray([j in dirs for j in range(LOCAL)]))


@jax.jit
def _symmetrise(hk, mask):
  hk = jnp.where(mask[None, :, None] & mask[None, None, :], hk, 0.0)
  return 0.5 * (hk + jnp.swapaxes(hk, 1, 2))


def local_directions(spec: Spec, free: np.ndarray) -> tuple:
  """The local coordinates that free parameters move (theta, the globals, log u)."""
  dirs = [j for j in range(N_GLOBAL) if free[j]]
  if spec.n_rows and np.any(free[N_GLOBAL:]):
    dirs.append(N_GLOBAL)
  return tuple(dirs)


def local_derivatives(spec: Spec, x, pairs: lik.Pairs, dirs: tuple | None = None):
  """Per-synapse gradients [n, 7] and Hessians [n, 7, 7] in local coordinates; the Hessians by
  central differences of the gradients (step FD_STEP; relative error ~1e-8 in float64), which
  reuses the compiled gradient instead of compiling a second-order graph. Only the columns of
  `dirs` (default: all) are computed."""
  locs = _locals(spec, x, pairs)
  g = _grad_at_locals(spec, locs, pairs, locs)
  return g, _fd_hessians(spec, locs, pairs, tuple(range(LOCAL)) if dirs is None else dirs)


def _to_params(spec: Spec, loc_vectors, pairs: lik.Pairs):
  """Sums local-coordinate vectors [n, 7] into parameter space."""
  out = [jnp.sum(loc_vectors[:, :N_GLOBAL], axis=0)]
  if spec.n_rows:
    out.append(jax.ops.segment_sum(loc_vectors[:, N_GLOBAL], pairs.rows, spec.n_rows))
    out.append(jax.ops.segment_sum(loc_vectors[:, N_GLOBAL], pairs.cols, spec.n_cols))
  return jnp.concatenate(out)


def _to_locals(spec: Spec, v, pairs: lik.Pairs):
  n = pairs.l0.shape[0]
  glob = jnp.broadcast_to(v[:N_GLOBAL], (n, N_GLOBAL))
  if spec.n_rows:
    a = v[N_GLOBAL:N_GLOBAL + spec.n_rows]
    b = v[N_GLOBAL + spec.n_rows:]
    u = a[pairs.rows] + b[pairs.cols]
  else:
    u = jnp.zeros(n, v.dtype)
  return jnp.concatenate([glob, u[:, None]], axis=1)


def _hess_vec(spec: Spec, hk, v, pairs: lik.Pairs):
  """The Hessian of the total log-likelihood (penalty included) times v."""
  out = _to_params(spec, jnp.einsum("nij,nj->ni", hk, _to_locals(spec, v, pairs)), pairs)
  if spec.n_rows:
    r = spec.n_rows
    a, b = v[N_GLOBAL:N_GLOBAL + r], v[N_GLOBAL + r:]
    out = out - jnp.concatenate([jnp.zeros(N_GLOBAL, v.dtype), jnp.full(r, jnp.sum(a)),
                                 jnp.full(spec.n_cols, jnp.sum(b))])
    out = out - jnp.concatenate([jnp.zeros(N_GLOBAL, v.dtype), a, b]) / UNIT_PRIOR_SD ** 2
  return out


def _hess_diag(spec: Spec, hk, pairs: lik.Pairs):
  d = [jnp.sum(jnp.diagonal(hk[:, :N_GLOBAL, :N_GLOBAL], axis1=1, axis2=2), axis=0)]
  if spec.n_rows:
    extra = 1.0 + 1.0 / UNIT_PRIOR_SD ** 2
    d.append(jax.ops.segment_sum(hk[:, N_GLOBAL, N_GLOBAL], pairs.rows, spec.n_rows) - extra)
    d.append(jax.ops.segment_sum(hk[:, N_GLOBAL, N_GLOBAL], pairs.cols, spec.n_cols) - extra)
  return jnp.concatenate(d)


def local_gradients(spec: Spec, x, pairs: lik.Pairs):
  """Per-synapse gradients [n, 7] in local coordinates (one reverse pass)."""
  locs = _locals(spec, x, pairs)
  return _grad_at_locals(spec, locs, pairs, locs)


@functools.partial(jax.jit, static_argnums=0)
def _param_gradient(spec: Spec, x, g, pairs: lik.Pairs):
  grad = _to_params(spec, g, pairs)
  if spec.n_rows:
    r = spec.n_rows
    grad = grad - jnp.concatenate([jnp.zeros(N_GLOBAL, x.dtype),
                                   jnp.full(r, jnp.sum(x[N_GLOBAL:N_GLOBAL + r])),
                                   jnp.full(spec.n_cols, jnp.sum(x[N_GLOBAL + r:]))])
    grad = grad - jnp.concatenate([jnp.zeros(N_GLOBAL, x.dtype), x[N_GLOBAL:]]) / (
        UNIT_PRIOR_SD ** 2)
  return grad


def gradient(spec: Spec, x, pairs: lik.Pairs, exact: bool = True, dirs: tuple | None = None):
  """The gradient in parameter space, the per-synapse gradients and per-synapse Hessians: exact,
  or (exact=False) the outer products -g g^T of the per-synapse gradients (BHHH: an estimate of
  the Fisher information, positive semi-definite and a tenth of the cost)."""
  if exact:
    g, hk = local_derivatives(spec, x, pairs, dirs)
  else:
    g = local_gradients(spec, x, pairs)
    hk = -g[:, :, None] * g[:, None, :]
  return _param_gradient(spec, x, g, pairs), g, hk


@functools.partial(jax.jit, static_argnums=0)
def solve_cg(spec: Spec, hk, rhs, free, damping, pairs: lik.Pairs):
  """Solves (-H + damping diag|H|) d = rhs on the free parameters by preconditioned CG."""
  diag = jnp.abs(_hess_diag(spec, hk, pairs))
  scale = jnp.where(free, diag + 1e-12, 1.0)

  def matvec(v):
    v = jnp.where(free, v, 0.0)
    out = -_hess_vec(spec, hk, v, pairs) + damping * diag * v
    return jnp.where(free, out, v)

  d, _ = jax.scipy.sparse.linalg.cg(matvec, jnp.where(free, rhs, 0.0),
                                    M=lambda v: v / scale, maxiter=CG_ITERS, tol=1e-10)
  return jnp.where(free, d, 0.0)


@functools.partial(jax.jit, static_argnums=0)
def dense_hessian(spec: Spec, hk, pairs: lik.Pairs):
  """The Hessian of the total log-likelihood (gauge penalty included) as a dense matrix."""
  g = N_GLOBAL
  h = jnp.zeros((n_params(spec), n_params(spec)), hk.dtype)
  h = h.at[:g, :g].set(jnp.sum(hk[:, :g, :g], axis=0))
  if spec.n_rows:
    r, c = spec.n_rows, spec.n_cols
    ga = jax.ops.segment_sum(hk[:, :g, g], pairs.rows, r)   # [R, g]
    gb = jax.ops.segment_sum(hk[:, :g, g], pairs.cols, c)
    uu = hk[:, g, g]
    ab = jnp.zeros((r, c), hk.dtype).at[pairs.rows, pairs.cols].add(uu)
    h = h.at[g:g + r, :g].set(ga).at[:g, g:g + r].set(ga.T)
    h = h.at[g + r:, :g].set(gb).at[:g, g + r:].set(gb.T)
    h = h.at[g:g + r, g + r:].set(ab).at[g + r:, g:g + r].set(ab.T)
    prec = 1.0 / UNIT_PRIOR_SD ** 2
    h = h.at[g:g + r, g:g + r].set(jnp.diag(jax.ops.segment_sum(uu, pairs.rows, r) - prec)
                                   - 1.0)
    h = h.at[g + r:, g + r:].set(jnp.diag(jax.ops.segment_sum(uu, pairs.cols, c) - prec)
                                 - 1.0)
  return h


def _newton_step(spec, pairs, hk, grad, idx, free_j, damping, dense_a):
  """(-H + damping diag|H|)^-1 grad on the free parameters; None if not positive definite."""
  if dense_a is None:
    return np.asarray(solve_cg(spec, hk, grad, free_j, damping, pairs))
  diag = np.abs(np.diag(dense_a)) + 1e-12
  try:
    factor = linalg.cho_factor(dense_a + damping * np.diag(diag), check_finite=False)
  except linalg.LinAlgError:
    return None
  out = np.zeros(grad.shape[0])
  out[idx] = linalg.cho_solve(factor, np.asarray(grad)[idx], check_finite=False)
  return out if np.all(np.isfinite(out)) else None


def _bounded(x: np.ndarray, d: np.ndarray, theta_bounds) -> np.ndarray:
  """x + d with the step shrunk to the trust region (log-scale parameters move at most MAX_STEP,
  the drift at most 3 change SDs, theta at most 0.5) and theta, the noise and the silent fraction
  kept in their ranges (numpy: a handful of scalars)."""
  others = np.abs(d).copy()
  others[MU] = 0.0
  shrink = min(1.0, MAX_STEP / max(float(others.max()), 1e-300),
               3.0 * float(np.exp(x[LOGS])) / max(abs(float(d[MU])), 1e-300),
               0.5 / max(abs(float(d[THETA])), 1e-300))
  y = x + shrink * d
  y[THETA] = np.clip(y[THETA], *theta_bounds)
  y[RHO] = np.clip(y[RHO], *RHO_BOUNDS)
  y[SILENT] = np.clip(y[SILENT], *SILENT_BOUNDS)
  return y


class Fit(NamedTuple):
  """A maximum over the free parameters, with what the profile needs next: the gradient (its
  theta component is the profile's slope, by the envelope theorem) and -H over the free
  parameters and theta (None for rough fits and large problems)."""

  x: np.ndarray
  loglik: float
  iterations: int
  grad: np.ndarray | None = None
  curvature: np.ndarray | None = None  # -H on rows/columns `curvature_idx`
  curvature_idx: np.ndarray | None = None

  def profile_slope(self) -> float:
    return float(self.grad[THETA]) if self.grad is not None else float("nan")

  def profile_curvature(self) -> float:
    """-d2 l / d theta2 of the profile: 1 / [(-H)^-1]_theta,theta (the Schur complement)."""
    if self.curvature is None:
      return float("nan")
    k = int(np.flatnonzero(self.curvature_idx == THETA)[0])
    try:
      inv = np.linalg.inv(self.curvature)
    except np.linalg.LinAlgError:
      return float("nan")
    return float(1.0 / inv[k, k]) if inv[k, k] > 0 else float("nan")

  def tangent(self) -> np.ndarray | None:
    """d x_hat / d theta: how the nuisances' optimum moves with theta (implicit function
    theorem), for predicting the next fit's start."""
    if self.curvature is None:
      return None
    rows = self.curvature_idx != THETA
    k = int(np.flatnonzero(~rows)[0])
    a = self.curvature[np.ix_(rows, rows)]
    try:
      dx = -np.linalg.solve(a, self.curvature[rows, k])
    except np.linalg.LinAlgError:
      return None
    out = np.zeros(self.x.shape[0])
    out[self.curvature_idx[rows]] = dx
    out[THETA] = 1.0
    return out


def maximise(spec: Spec, x0: np.ndarray, pairs: lik.Pairs, free: np.ndarray, *,
             exact: bool = True, max_iter: int = MAX_NEWTON, tol: float = TOL,
             theta_bounds: tuple = (-np.inf, np.inf), with_theta: bool = False,
             curvature: np.ndarray | None = None) -> Fit:
  """Maximises the likelihood over the free parameters from x0 by damped Newton steps.

  The Hessian is exact (central differences of the per-synapse gradients, ten gradients' cost),
  or with exact=False the BHHH estimate (rough fits), or, given `curvature` (-H over the same
  rows from a neighbouring fit), that matrix updated by BFGS from each step's gradients (one
  gradient per step; exact again if it stops giving steps that gain). Steps stay in a trust
  region, are damped (Levenberg-Marquardt) and are taken only when the likelihood rises; the fit
  stops when the Newton decrement or a step's gain falls below `tol` per synapse. `with_theta`
  (fits along a profile): the Hessian carries theta's row, returned with the final gradient.
  The log-likelihood is -inf when x0 is not a valid start."""
  x = np.array(x0, np.float64)
  f = float(total(spec, x, pairs))
  if not np.isfinite(f):
    return Fit(x, -np.inf, 0)
  n = max(pairs.l0.shape[0], 1)
  is_theta = np.arange(free.size) == THETA
  idx = np.flatnonzero(free)
  full = np.flatnonzero(free | is_theta) if with_theta else idx
  pos = np.searchsorted(full, idx)
  free_j = jnp.asarray(free)
  dense = n_params(spec) <= DENSE_MAX
  dirs = local_directions(spec, free | is_theta if with_theta else free)
  a_full = None
  bfgs = bool(exact and dense and curvature is not None and curvature.shape == (full.size,) * 2)
  if bfgs:
    a_full = np.array(curvature, np.float64)
  damping = 0.0
  last_gain = np.inf
  best_x, best_f, stalled, failures = x, f, 0, 0
  grad = None
  it = 0
  for it in range(1, max_iter + 1):
    hk = None
    if bfgs:
      if grad is None:
        grad = np.asarray(_param_gradient(spec, x, local_gradients(spec, x, pairs), pairs))
    else:
      g, _, hk = gradient(spec, x, pairs, exact, dirs)
      grad = np.asarray(g)
      if dense:
        a_full = -np.asarray(dense_hessian(spec, hk, pairs))[np.ix_(full, full)]
    a = a_full[np.ix_(pos, pos)] if dense else None
    accepted = False
    for attempt in range(14):
      d = _newton_step(spec, pairs, hk, grad, idx, free_j, damping, a)
      if exact and attempt == 0 and d is not None and damping == 0.0:
        predicted = 0.5 * float(np.dot(grad, d))  # Newton decrement: a full step's gain
        if 0.0 <= predicted < 0.1 * tol * n:
          return Fit(x, f, it, grad, a_full if dense else None, full)
      if d is not None:
        x_new = _bounded(x, d, theta_bounds)
        # compared with the nodes where they are (the function the step was computed for)
        f_frozen = float(total(spec, x_new, pairs, x))
        if np.isfinite(f_frozen) and f_frozen >= f - 1e-12 * abs(f):
          accepted = True
          break
      damping = max(damping * 10.0, 1e-3)  # from no damping straight to a useful amount
    if not accepted:
      if bfgs:  # the updated Hessian no longer gives a step: compute the exact one
        bfgs, grad, damping = False, None, 0.0
        continue
      break
    f_new = float(total(spec, x_new, pairs)) if spec.noisy else f_frozen
    if not np.isfinite(f_new):
      break
    if bfgs:
      grad_new = np.asarray(_param_gradient(spec, x_new, local_gradients(spec, x_new, pairs),
                                            pairs))
      step, dgrad = (x_new - x)[full], (grad - grad_new)[full]
      sy = float(step @ dgrad)
      if sy > 1e-12 * float(np.linalg.norm(step) * np.linalg.norm(dgrad)):
        bs = a_full @ step
        a_full = a_full - np.outer(bs, bs) / float(step @ bs) + np.outer(dgrad, dgrad) / sy
      grad = grad_new
    gain = f_frozen - f
    moved = float(np.max(np.abs(x_new - x)))
    x, f = x_new, f_new
    # the value with the nodes re-placed must improve too: moving the nodes changes the
    # quadrature slightly, and steps that only trade such changes back and forth end the fit
    if f > best_f + tol * n:
      best_x, best_f, stalled = x, f, 0
    else:
      stalled += 1
      if f > best_f:
        best_x, best_f = x, f
    if stalled >= 2:
      break
    if gain < tol * n and (moved < 1e-6 or last_gain < tol * n):
      break  # converged, or creeping along a ridge where the likelihood no longer changes
    damping = damping / 4.0 if damping > 1e-6 else 0.0  # remembered: the next step needs it too
    last_gain = gain
  if best_f > f:
    x, f = best_x, best_f
  if exact:
    grad = np.asarray(_param_gradient(spec, x, local_gradients(spec, x, pairs), pairs))
    return Fit(x, f, it, grad, a_full if dense else None, full)
  return Fit(x, f, it)


def free_mask(spec: Spec, fit_gain: bool = True, fit_noise: bool = True) -> np.ndarray:
  """The parameters a fit at fixed theta adjusts."""
  free = np.ones(n_params(spec), bool)
  free[THETA] = False
  free[LOGG] = fit_gain
  free[RHO] = spec.noisy and fit_noise
  free[SILENT] = spec.noisy and spec.silent
  return free


def _dual_and_noise_weight(spec: Spec, theta, pairs: lik.Pairs):
  """The noise-free dual change D and its sensitivity to the log noise, q = c0^2 + c1^2."""
  def dual(t0, t1):
    return spec.family.dual(theta, pairs.s0, pairs.s1, pairs.l0 - t0, pairs.l1 - t1)[0]

  z = jnp.zeros_like(pairs.l0)
  o = jnp.ones_like(pairs.l0)
  d, c0 = jax.jvp(dual, (z, z), (o, z))
  _, c1 = jax.jvp(dual, (z, z), (z, o))
  return np.asarray(d), np.asarray(c0 * c0 + c1 * c1)


def initial_params(spec: Spec, pairs: lik.Pairs, theta: float, sigma: float | None = None,
                   silent: float = 0.05) -> np.ndarray:
  """Starting values at theta by moments: per-unit scales by alternating RMS normalisation of the
  dual change, the drift as its median, and the change size and noise by regressing the squared
  centred change on u^2 (change) and q (noise, delta method). `sigma`: a known SD of the log
  noise factor."""
  from mdgeom import scales as scales_lib

  x = np.zeros(n_params(spec))
  x[THETA] = theta
  with jax.enable_x64(True):
    d, q = _dual_and_noise_weight(spec, jnp.asarray(theta, jnp.float64), pairs)
  ok = np.isfinite(d) & np.isfinite(q)
  d = np.where(ok, d, 0.0)
  q = np.where(ok, q, 0.0)
  u = np.ones_like(d)
  if spec.n_rows:
    rows, cols = np.asarray(pairs.rows), np.asarray(pairs.cols)
    sc = scales_lib.unit_scales(d - np.median(d[ok]), scales_lib.UnitIds(rows, cols), ok,
                                estimator="rms", min_count=1)
    a = np.log(np.maximum(np.bincount(rows, sc.row_scale * ok, spec.n_rows), 1e-300)
               / np.maximum(np.bincount(rows, ok.astype(float), spec.n_rows), 1.0))
    b = np.log(np.maximum(np.bincount(cols, sc.col_scale * ok, spec.n_cols), 1e-300)
               / np.maximum(np.bincount(cols, ok.astype(float), spec.n_cols), 1.0))
    a = np.where(np.isfinite(a), a, 0.0)
    b = np.where(np.isfinite(b), b, 0.0)
    a, b = a - a.mean(), b - b.mean()
    x[N_GLOBAL:N_GLOBAL + spec.n_rows] = a
    x[N_GLOBAL + spec.n_rows:] = b
    u = np.exp(a[rows] + b[cols])
  mu = float(np.median((d / u)[ok]))
  r2 = (d - mu * u) ** 2
  s2_noise = sigma ** 2 if sigma is not None else None
  if spec.noisy and s2_noise is None:
    # non-negative least squares of r2 on [u^2, q], a few reweighted passes
    w = np.ones_like(r2)
    coef = np.array([np.mean(r2[ok] / u[ok] ** 2), 0.0])
    for _ in range(4):
      a_mat = np.stack([u * u, q], 1)[ok] * w[ok, None]
      sol, *_ = np.linalg.lstsq(a_mat, r2[ok] * w[ok], rcond=None)
      if sol[1] <= 0 or sol[0] <= 0:
        sol = (np.array([np.sum(w[ok] ** 2 * r2[ok] * u[ok] ** 2) / np.sum(w[ok] ** 2 * u[ok] ** 4),
                         0.0]) if sol[1] <= 0 else
               np.array([1e-12, np.sum(w[ok] ** 2 * r2[ok] * q[ok]) / np.sum(w[ok] ** 2 * q[ok] ** 2)]))
      coef = np.maximum(sol, 1e-12)
      w = 1.0 / np.maximum(coef[0] * u * u + coef[1] * q, 1e-300)
    total_var = float(np.mean((r2 / (u * u))[ok]))
    s2_change = max(coef[0], 0.05 * total_var)
    s2_noise = float(np.clip(coef[1], 1e-6, 0.25))
  else:
    s2n = s2_noise or 0.0
    s2_change = max(float(np.mean(np.maximum(r2 - s2n * q, 0.0)[ok] / u[ok] ** 2)), 1e-300)
  x[MU] = mu
  x[LOGS] = 0.5 * np.log(max(s2_change, 1e-300))
  sig = np.sqrt(s2_noise) if s2_noise else lik.SIGMA_MIN * 2  # the SD of log e
  x[RHO] = float(np.clip(np.log(max(sig - lik.SIGMA_MIN, 1e-12)), *RHO_BOUNDS))
  x[SILENT] = float(np.log(silent / (1 - silent))) if spec.silent else -30.0
  return x


class Robust(NamedTuple):
  model_var: float     # [(-H)^-1]_ii: the variance of the parameter if the model were exact
  robust_var: float    # the sandwich variance, clustered by units when there are units
  kappa: float         # robust / model (>= 1 is used to widen likelihood-ratio intervals)
  influence: np.ndarray  # per-synapse influence on the parameter [n]
  tangent: np.ndarray    # d x_hat / d x_index: how the other parameters' optimum moves with it


@functools.partial(jax.jit, static_argnums=(0, 4))
def _param_row(spec: Spec, hk, pairs: lik.Pairs, free, index: int):
  """(-H)^-1 e_index on the free parameters, by CG (for problems too large for dense solves)."""
  e = jnp.zeros(n_params(spec), hk.dtype).at[index].set(1.0)
  diag = jnp.abs(_hess_diag(spec, hk, pairs))
  scale = jnp.where(free, diag + 1e-12, 1.0)

  def matvec(v):
    v = jnp.where(free, v, 0.0)
    out = -_hess_vec(spec, hk, v, pairs) + 1e-10 * diag * v
    return jnp.where(free, out, v)

  sol, _ = jax.scipy.sparse.linalg.cg(matvec, e, M=lambda v: v / scale, maxiter=4 * CG_ITERS,
                                      tol=1e-12)
  return jnp.where(free, sol, 0.0)


def robust_variance(spec: Spec, x: np.ndarray, pairs: lik.Pairs, free: np.ndarray,
                    clusters: bool, index: int = THETA) -> Robust:
  """The model and sandwich variances of parameter `index` (theta by default, free in `free`)
  at the maximum x."""
  _, g, hk = gradient(spec, jnp.asarray(x), pairs, True, local_directions(spec, free))
  if n_params(spec) <= DENSE_MAX:
    idx = np.flatnonzero(free)
    a = -np.asarray(dense_hessian(spec, hk, pairs))[np.ix_(idx, idx)]
    e = (idx == index).astype(np.float64)
    try:
      sol_free = np.linalg.solve(a, e)
    except np.linalg.LinAlgError:
      sol_free = np.linalg.lstsq(a, e, rcond=None)[0]
    sol = np.zeros(n_params(spec))
    sol[idx] = sol_free
  else:
    sol = np.asarray(_param_row(spec, hk, pairs, jnp.asarray(free), index))
  g = np.asarray(g)
  loc = np.asarray(_to_locals(spec, jnp.asarray(sol), pairs))
  infl = np.sum(loc * g, axis=1)
  model = float(sol[index])
  if clusters and spec.n_rows:
    rows, cols = np.asarray(pairs.rows), np.asarray(pairs.cols)
    vr = float(np.sum(np.bincount(rows, infl, spec.n_rows) ** 2))
    vc = float(np.sum(np.bincount(cols, infl, spec.n_cols) ** 2))
    vh = float(np.sum(infl ** 2))
    robust = max(vr + vc - vh, vr, vc, vh)
  else:
    robust = float(np.sum(infl ** 2))
  kappa = robust / model if model > 0 else float("nan")
  tangent = sol / sol[index] if sol[index] != 0 else np.zeros_like(sol)
  return Robust(model, robust, kappa, infl, tangent)
