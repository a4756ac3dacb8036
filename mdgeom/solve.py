"""The implicit bias of mirror descent in closed form: minimum-Bregman-divergence interpolants.

Mirror descent started at w0 on a loss whose roots are {w : X w = y} (MSE with D > N) converges to
(docs/theory.md, "Implicit bias and the closed-form solution")

  w* = argmin_{X w = y} D_phi(w, w0)                                                      (Eq. 8)

The Lagrange conditions (Eq. 11-13) give w* = (grad phi)^{-1}(grad phi(w0) + X^T lambda), with one
multiplier per constraint chosen so that X w* = y. With theta = grad phi(w0) + X^T lambda, lambda
minimises the smooth convex dual

  g(lambda) = sum_i [theta_i w_i - f(w_i)] - <lambda, y>        (= sum_i f*(theta_i) - <lambda, y>)
  grad g    = X w(lambda) - y
  hess g    = X diag(1 / f''(w(lambda))) X^T

and `min_bregman_solution` runs Newton's method on it (N unknowns, not D), started from the
linearised multipliers of Eq. 14-15, which `linearized_solution` returns on its own:

  w ~ w0 + H^{-1} X^T lambda,  lambda = (X H^{-1} X^T)^{-1} (y - X w0),  H^{-1} = diag(1/f''(w0)).

How each Newton system G z = r, G = X diag(h) X^T, h = 1/f'', is solved (method="cg", the
default): matrix-free, by preconditioned conjugate gradients. A product G v costs two passes over
X (2 N D flops) instead of the N^2 D of forming G, and runs in float32 (the outer Newton loop,
its residuals and the stopping rule stay float64: an inexact Newton method only needs each system
solved to a relative accuracy eta, here 1e-2 ... 1e-5, the forcing term). The preconditioner is
c K + U U^T, K = X X^T (formed once, in float64, for the rank check anyway), and U the columns of
X with the largest h scaled by sqrt(h - c), c the next h: that is X diag(max(h, c)) X^T, so
P^{-1} G has its eigenvalues in [min h / c, 1], and a heavy tail of h (the 3-norm's h = 1/(2|w|)
near w = 0) costs a Woodbury update of rank k, not CG iterations. method="dense" is the solver
this replaced: G formed and factorised at every step (kept to compare with).

Which Newton iteration: when f'' vanishes at 0 (p-norms with p > 2), the dual's curvature
1/f''(w(theta)) blows up where weights cross zero and Newton on lambda alone oscillates there
(theta -> -theta for coordinates whose theta* ~ 0; 40-300 damped steps for the 3-norm). There
the iteration runs on the primal-dual pair (w, lambda) instead (Newton on the Lagrange
conditions f'(w) = theta0 + X^T lambda, X w = y, whose derivative f'' is Lipschitz), with a
backtracking line search on the Lagrangian at the new multipliers (along the step its slope is
-dw^T diag(f'') dw < 0 however inexact the inner solve). Either way every iterate is checked with
the exact Lagrange relation: w(lambda) = (grad phi)^{-1}(grad phi(w0) + X^T lambda) and the
residual max|X w(lambda) - y|, which is what the returned Solution holds.

A network linearised at w0 (Eq. 9-10) gives the same problem with X = J, the Jacobian of the
outputs, and y = targets - f(x; w0) + J w0. `linearized_network_solution` solves it without
forming J: J v by forward mode, J^T u by reverse mode, and the n x n systems by conjugate
gradients. Every path (dense, method="cg", networks) runs one Newton loop, `_newton`, that
only sees these products.

Everything is computed in float64 by default, also when JAX's x64 flag is off (the computation
runs under `jax.enable_x64`); results come back as NumPy arrays so that precision survives.
The entry points validate concrete inputs and return NumPy/Python values, so they are called
outside `jax.jit` (the maths inside them is jitted).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax.flatten_util import ravel_pytree
from jax.scipy.sparse import linalg as sparse_linalg

from mdgeom import _checks
from mdgeom import potentials as potentials_lib

PotentialLike = str | potentials_lib.Potential

_DEFAULT_TOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}
_ARMIJO = 1e-4  # sufficient-decrease constant of the backtracking line search
_MAX_HALVINGS = 60  # 2^-60 ~ 1e-18: a step this short makes no progress in float64 either

# Newton loop status codes
_RUNNING, _CONVERGED, _STALLED = 0, 1, 2

# The matrix-free solver (method="cg"); values measured at the paper's largest cell
# (benchmarks/closed_form.py).
_FORCING_MAX = 1e-2  # each Newton system is solved to relative accuracy min(this, residual / r0)
_FORCING_MIN = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}  # by Hessian-product dtype
_CG_MAX_ITER = 100  # PCG iterations per Newton system (3-12 are typical with the preconditioner)
_HEAVY_FRACTION = 0.01  # columns with the largest h kept exactly in the preconditioner (primal form)
_HEAVY_CAP = 1e4  # ... with h capped at this multiple of c there (a float32 Woodbury core)
_F32_MAX_COND = 1e4  # cond(X X^T) up to which Hessian products run in float32
_H_MAX = 1e12  # 1/f'' is capped at this multiple of its mean (f'' = 0 at w = 0 for p > 2)
_PRIMAL_FORM_RATIO = 1e-3  # f''(0) below this multiple of the median f''(w0): primal-dual Newton


class Solution(NamedTuple):
  """A minimum-Bregman-divergence interpolant (Eq. 8) or its linearisation (Eq. 14-15).

  w: the weights, shape (D,). lam: the multipliers lambda, shape (N,), with
  grad phi(w) = grad phi(w0) + X^T lam (Eq. 13; linearised: w = w0 + H^{-1} X^T lam, Eq. 14).
  converged: max|X w - y| <= tol (1 + max|y|). iterations: Newton steps taken (0 for the
  linearised solution). residual: max|X (w - w0) - (y - X w0)|, i.e. max|X w - y|.
  """

  w: np.ndarray
  lam: np.ndarray
  converged: bool
  iterations: int
  residual: float


class NetworkSolution(NamedTuple):
  """The solution for a network linearised at params0 (Eq. 9-10).

  params: a pytree like params0 (leaves in the computation dtype). lam: the multipliers, shaped
  like the outputs. residual: max|J (w - w0) - (targets - f(x; w0))|, the linearised network's
  misfit. cg_residual: the largest relative residual ||G z - r|| / ||r|| of the conjugate-gradient
  solves with G = J diag(h) J^T (how exact the inner solves were).
  """

  params: Any
  lam: np.ndarray
  converged: bool
  iterations: int
  residual: float
  cg_residual: float


# ----------------------------------------------------------------------------------------------
# Shared maths: operators, the linearised solution and the dual Newton loop
# ----------------------------------------------------------------------------------------------


class _Ops(NamedTuple):
  """The constraint operator A (X or J) as functions, so dense and matrix-free code is shared.

  matvec(v) = A v (D -> n); rmatvec(u) = A^T u (n -> D); solve(h, r, rtol) returns an approximate
  z = (A diag(h) A^T)^{-1} r and its relative residual ||A diag(h) A^T z - r|| / ||r||.
  """

  matvec: Callable
  rmatvec: Callable
  solve: Callable


def _relative_residual(gram_matvec, z, r):
  res = jnp.linalg.norm(gram_matvec(z) - r)
  norm_r = jnp.linalg.norm(r)
  return jnp.where(norm_r > 0, res / jnp.where(norm_r > 0, norm_r, 1.0), res)


def _dense_ops(X) -> _Ops:
  def solve(h, r, rtol):
    del rtol  # direct solve
    gram = (X * h) @ X.T
    factor = jax.scipy.linalg.cho_factor(gram, lower=True)
    z = jax.scipy.linalg.cho_solve(factor, r)
    # one step of iterative refinement: cheap here, and it buys back the digits lost to cond(gram)
    z = z + jax.scipy.linalg.cho_solve(factor, r - gram @ z)
    return z, _relative_residual(lambda v: gram @ v, z, r)

  return _Ops(matvec=lambda v: X @ v, rmatvec=lambda u: X.T @ u, solve=solve)


def _matrix_free_ops(matvec, rmatvec, cg_max_iter) -> _Ops:
  def solve(h, r, rtol):
    gram_matvec = lambda v: matvec(h * rmatvec(v))
    z, _ = sparse_linalg.cg(gram_matvec, r, tol=rtol, atol=0.0, maxiter=cg_max_iter)
    return z, _relative_residual(gram_matvec, z, r)

  return _Ops(matvec=matvec, rmatvec=rmatvec, solve=solve)


class _Result(NamedTuple):
  w: jax.Array
  lam: jax.Array
  residual: jax.Array  # max-abs constraint residual
  iterations: jax.Array
  status: jax.Array
  solve_residual: jax.Array  # worst relative residual of the inner linear solves


def _linearized(ops: _Ops, w0, h0, b, rtol) -> _Result:
  """Eq. 14-15: lambda = (A H^{-1} A^T)^{-1} b, w = w0 + H^{-1} A^T lambda, with b = y - A w0."""
  lam, solve_res = ops.solve(h0, b, rtol)
  dw = h0 * ops.rmatvec(lam)
  residual = jnp.max(jnp.abs(ops.matvec(dw) - b))
  zero = jnp.zeros([], jnp.int32)
  return _Result(w0 + dw, lam, residual, zero, zero, solve_res)


@functools.partial(jax.jit, static_argnames=("pot", "exact", "max_iter"))
def _dense_solve(pot, X, b, w0, tol_abs, *, exact, max_iter):
  ops = _dense_ops(X)
  lin = _linearized(ops, w0, pot.inverse_hessian_diag(w0), b, 0.0)
  if not exact:
    return lin
  return _newton(pot, ops, w0, b, lin.lam, tol_abs, max_iter, 0.0, primal=False, forcing=None)


# ----------------------------------------------------------------------------------------------
# The matrix-free solver: inexact Newton, preconditioned CG inside (method="cg")
# ----------------------------------------------------------------------------------------------


def _pcg(hvp, prec, r, rtol, max_iter):
  """Preconditioned conjugate gradients for G z = r from z = 0 (G = hvp, P^{-1} = prec, both SPD).

  Stops when the recurrence residual ||r - G z|| <= rtol ||r|| or after max_iter iterations, or
  on a breakdown (p^T G p <= 0 or not finite: rounding in an ill-conditioned G), keeping the last
  good iterate. Any CG iterate from z = 0 has r^T z = z^T G z > 0, so -z is a descent direction
  for the dual however early it stops. Returns (z, relative recurrence residual).
  """
  norm_r = jnp.linalg.norm(r)
  target = rtol * norm_r
  y0 = prec(r)

  def cond(s):
    *_, k, done = s
    return ~done & (k < max_iter)

  def body(s):
    z, res, p, rz, k, _ = s
    q = hvp(p)
    pq = jnp.dot(p, q)
    ok = (pq > 0) & jnp.isfinite(pq) & (rz > 0)
    alpha = jnp.where(ok, rz / jnp.where(ok, pq, 1.0), 0.0)
    z = z + alpha * p
    res = res - alpha * q
    y = prec(res)
    rz_new = jnp.dot(res, y)
    p = y + jnp.where(ok, rz_new / jnp.where(ok, rz, 1.0), 0.0) * p
    return z, res, p, rz_new, k + 1, ~ok | (jnp.linalg.norm(res) <= target)

  init = (jnp.zeros_like(r), r, y0, jnp.dot(r, y0), 0, norm_r <= target)
  z, res, _, _, k, _ = jax.lax.while_loop(cond, body, init)
  return z, jnp.linalg.norm(res) / jnp.where(norm_r > 0, norm_r, 1.0)


def _pcg_ops(X, X_in, K_inv, heavy: int, cg_max_iter: int) -> _Ops:
  """Dense X, products with G = X diag(h) X^T without forming it; PCG preconditioned by
  P = c K + U U^T = X diag(max(h, c)) X^T (K = X X^T, K_inv its inverse in X_in's dtype;
  U = X_B diag(sqrt(h_B - c)) over the `heavy` columns B with the largest h, c the next h).

  Hessian products run in X_in's dtype (float32 unless X X^T is ill-conditioned): G v =
  X_L (h_L * (X_L^T v)) over the light columns plus X_B (h_B * (X_B^T v)) in float64 over the
  heavy ones, whose h may be 1e12 times the rest. The Woodbury form of P^{-1},
  P^{-1} = (cK)^{-1} - W (I + U^T W)^{-1} W^T with W = (cK)^{-1} U, costs 2 N^2 k + 2 N k^2 flops
  per Newton step (matrix products: K^{-1} is explicit, as triangular solves with k right-hand
  sides run ~3x slower on XLA:CPU) and one N x N product per CG iteration. h_B is capped at
  _HEAVY_CAP c in U, which keeps I + U^T W well conditioned in float32 (a column beyond the cap
  only adds one outlying eigenvalue to P^{-1} G). k = 1% of D at most: P^{-1} G then has a
  condition number of ~10-20 for the 3-norm at paper scale (~3 with 5%, but the per-step cost
  of a larger k outweighed the CG iterations it saved there).
  """
  in_dt = X_in.dtype
  to_in = lambda v: v.astype(in_dt)

  def light(h):
    h_in = to_in(h)
    # v @ X, not X.T @ v: the fast operand order on XLA:CPU (the transposed form is ~8x slower)
    return lambda v: (X_in @ (h_in * (to_in(v) @ X_in))).astype(X.dtype)

  def solve(h, r, rtol):
    if heavy:
      vals, idx = jax.lax.top_k(h, heavy + 1)
      c = jnp.maximum(vals[heavy], 1e-30 * vals[0])
      h_b, cols = vals[:heavy], idx[:heavy]
      X_b = X[:, cols]
      hvp_light = light(h.at[cols].set(0.0))
      hvp = lambda v: hvp_light(v) + X_b @ (h_b * (v @ X_b))
      U = to_in(X_b * jnp.sqrt(jnp.minimum(h_b, _HEAVY_CAP * c) - c))
      W = (K_inv @ U) / to_in(c)
      core = jnp.linalg.cholesky(jnp.eye(heavy, dtype=in_dt) + U.T @ W)

      def prec(v):
        z = (K_inv @ to_in(v)) / to_in(c)
        return (z - W @ jax.scipy.linalg.cho_solve((core, True), U.T @ z)).astype(X.dtype)
    else:
      hvp = light(h)
      prec = lambda v: (K_inv @ to_in(v)).astype(X.dtype)
    return _pcg(hvp, prec, r, rtol, cg_max_iter)

  return _Ops(matvec=lambda v: X @ v, rmatvec=lambda u: u @ X, solve=solve)


def _capped(h):
  """1/f'' with the infinities (f'' = 0, e.g. the 3-norm at w = 0) and extremes capped at _H_MAX
  times the mean: the Newton direction changes only in coordinates that are nearly free anyway,
  and stays a descent direction."""
  finite = jnp.isfinite(h)
  cap = _H_MAX * jnp.mean(jnp.where(finite, h, 0.0)) + jnp.finfo(h.dtype).tiny
  return jnp.where(finite, jnp.minimum(h, cap), cap)


class _State(NamedTuple):
  lam: jax.Array  # multipliers
  delta: jax.Array  # A^T lam (updated with the steps, not recomputed)
  w: jax.Array  # dual form: w(lam); primal-dual form: the primal iterate
  r: jax.Array  # A (w - w0) - b
  g: jax.Array  # dual form: g(lam) - g(0); primal-dual form: unused
  slack: jax.Array  # rounding size of g
  w_lam: jax.Array  # w(lam) = (grad phi)^{-1}(grad phi(w0) + A^T lam): what is returned
  r_lam: jax.Array  # A (w_lam - w0) - b, whose max-norm is the stopping rule
  it: jax.Array
  status: jax.Array
  worst: jax.Array  # worst relative residual of the inner solves


def _newton(pot, ops: _Ops, w0, b, lam_start, tol_abs, max_iter, rtol, *, primal: bool,
            forcing: tuple | None, w_start=None) -> _Result:
  """Inexact Newton on the Lagrange conditions of Eq. 8 (see the module docstring).

  Dual form (primal=False): Newton on g(lambda) with Armijo backtracking on g (evaluated relative
  to lambda = 0: g(lambda) - g(0) = <delta, w - w0> - D_phi(w, w0) - <lambda, b> with
  delta = A^T lambda, so no large constants cancel; a trial step costs one product A v).
  Primal-dual form (primal=True): iterates (w, lambda) with r_d = f'(w) - theta0 - A^T lambda and
  r_p = A w - y; the step solves (A H A^T) dlam = A H r_d - r_p, H = diag(1/f''(w)), then
  dw = H (A^T dlam - r_d), so that r_d is linearised to 0 and r_p to the solve's residual.
  Backtracking on the Lagrangian L(w) = sum_i [f(w_i) - theta0_i w_i] - <lam + dlam, A w - y>,
  whose Newton step in w alone (lambda fixed at lam + dlam) is exactly dw, so the slope
  <grad L, dw> = -dw^T H^{-1} dw is negative for any dlam (trial steps cost no product).

  forcing: None (each system solved to rtol) or (eta_max, eta_min): relative accuracy
  clip(res / res0, eta_min, eta_max) for the residual res = max|r_lam| (an inexact Newton
  method converges superlinearly with eta -> 0). Stops when max|r_lam| <= tol_abs.
  Starts from lam_start and, in the primal-dual form, w_start (default: the linearised weights
  w0 + H0^{-1} A^T lam_start of Eq. 14).
  """
  dtype = w0.dtype
  eps = jnp.finfo(dtype).eps
  theta0 = pot.mirror_map(w0)
  f_w0 = pot.elementwise_value(w0)

  def at_lam(lam, delta):
    """w(lam), g(lam) - g(0), its rounding size, A (w - w0) - b, finiteness."""
    w = pot.step(w0, delta)
    dw = w - w0
    f_w = pot.elementwise_value(w)
    lam_b = jnp.dot(lam, b)
    g = jnp.sum(delta * dw - (f_w - f_w0 - theta0 * dw)) - lam_b
    slack = 32.0 * eps * (jnp.sum(jnp.abs(delta * dw) + jnp.abs(f_w) + jnp.abs(f_w0)
                                  + jnp.abs(theta0 * dw)) + jnp.abs(lam_b))
    r = ops.matvec(dw) - b
    ok = jnp.isfinite(g) & jnp.all(jnp.isfinite(r)) & jnp.all(jnp.isfinite(w))
    return w, g, slack, r, ok

  def status_of(r_lam, accepted):
    res = jnp.max(jnp.abs(r_lam))
    return jnp.where(res <= tol_abs, _CONVERGED, jnp.where(accepted, _RUNNING, _STALLED))

  zero = jnp.zeros([], dtype)
  delta_start = ops.rmatvec(lam_start)
  w_s, g_s, s_s, r_s, ok_s = at_lam(lam_start, delta_start)
  if primal:
    if w_start is None:  # the linearised weights of Eq. 14 (nearly feasible)
      w_start = w0 + _capped(pot.inverse_hessian_diag(w0)) * delta_start
    start = _State(lam_start, delta_start, w_start, ops.matvec(w_start - w0) - b, zero, zero, w_s,
                   r_s, jnp.zeros([], jnp.int32), jnp.asarray(_RUNNING), zero)
  else:
    # the linearised multipliers (Eq. 15) unless they are worse than lambda = 0 (w = w0)
    zeros = jnp.zeros_like(lam_start)
    w_z, g_z, s_z, r_z, _ = at_lam(zeros, jnp.zeros_like(w0))
    use = ok_s & (g_s <= g_z)
    pick = lambda a, c: jnp.where(use, a, c)
    lam, delta, w, g, slack, r = (pick(lam_start, zeros), pick(delta_start, jnp.zeros_like(w0)),
                                  pick(w_s, w_z), pick(g_s, g_z), pick(s_s, s_z), pick(r_s, r_z))
    start = _State(lam, delta, w, r, g, slack, w, r, jnp.zeros([], jnp.int32),
                   jnp.asarray(_RUNNING), zero)
  start = start._replace(status=status_of(start.r_lam, True))
  res0 = jnp.max(jnp.abs(start.r_lam))

  def eta(s):
    if forcing is None:
      return rtol
    eta_max, eta_min = forcing
    ratio = jnp.max(jnp.abs(s.r_lam)) / jnp.where(res0 > 0, res0, 1.0)
    return jnp.clip(ratio, eta_min, eta_max).astype(dtype)

  def dual_step(s):
    h = _capped(pot.inverse_hessian_diag(s.w))
    z, solve_res = ops.solve(h, s.r, eta(s))
    step = -z
    slope = jnp.dot(s.r, step)  # <grad g, step> = -r^T z < 0 for any CG iterate
    d_delta = ops.rmatvec(step)
    descent = (slope < 0) & jnp.all(jnp.isfinite(d_delta))

    def ls_cond(c):
      _t, k, accepted, *_ = c
      return ~accepted & (k < _MAX_HALVINGS) & descent

    def ls_body(c):
      t, k, _, *old = c
      lam, delta = s.lam + t * step, s.delta + t * d_delta
      w, g, slack, r, ok = at_lam(lam, delta)
      accepted = ok & (g <= s.g + _ARMIJO * t * slope + s.slack)
      new = (lam, delta, w, g, slack, r)
      keep = [jnp.where(accepted, a, o) for a, o in zip(new, old)]
      return (jnp.where(accepted, t, 0.5 * t), k + 1, accepted, *keep)

    c = (jnp.ones([], dtype), 0, jnp.asarray(False), s.lam, s.delta, s.w, s.g, s.slack, s.r)
    _, _, accepted, lam, delta, w, g, slack, r = jax.lax.while_loop(ls_cond, ls_body, c)
    return s._replace(lam=lam, delta=delta, w=w, r=r, g=g, slack=slack, w_lam=w, r_lam=r,
                      it=s.it + 1, status=status_of(r, accepted),
                      worst=jnp.maximum(s.worst, solve_res))

  def primal_step(s):
    h = _capped(pot.inverse_hessian_diag(s.w))
    r_d = pot.mirror_map(s.w) - theta0 - s.delta
    dlam, solve_res = ops.solve(h, ops.matvec(h * r_d) - s.r, eta(s))
    d_delta = ops.rmatvec(dlam)
    dw = h * (d_delta - r_d)
    a_dw = ops.matvec(dw)
    lam_next = s.lam + dlam
    slope = jnp.dot(r_d - d_delta, dw)  # <grad L, dw> = -dw^T H^{-1} dw
    f_w = pot.elementwise_value(s.w)
    descent = (slope < 0) & jnp.all(jnp.isfinite(dw)) & jnp.all(jnp.isfinite(a_dw))

    def merit(t):
      """L(w + t dw) - L(w) and its rounding size."""
      f_t = pot.elementwise_value(s.w + t * dw)
      lin = t * (jnp.dot(theta0, dw) + jnp.dot(lam_next, a_dw))
      change = jnp.sum(f_t - f_w) - lin
      size = 32.0 * eps * (jnp.sum(jnp.abs(f_t) + jnp.abs(f_w) + t * jnp.abs(theta0 * dw))
                           + t * jnp.abs(jnp.dot(lam_next, a_dw)))
      return change, size

    def ls_cond(c):
      _t, k, accepted = c
      return ~accepted & (k < _MAX_HALVINGS) & descent

    def ls_body(c):
      t, k, _ = c
      change, size = merit(t)
      accepted = jnp.isfinite(change) & (change <= _ARMIJO * t * slope + size)
      return jnp.where(accepted, t, 0.5 * t), k + 1, accepted

    t, _, accepted = jax.lax.while_loop(ls_cond, ls_body,
                                        (jnp.ones([], dtype), 0, jnp.asarray(False)))
    t = jnp.where(accepted, t, 0.0)
    lam, delta = s.lam + t * dlam, s.delta + t * d_delta
    w_lam = pot.step(w0, delta)
    r_lam = ops.matvec(w_lam - w0) - b
    r_lam = jnp.where(jnp.all(jnp.isfinite(r_lam)), r_lam, jnp.inf)
    return s._replace(lam=lam, delta=delta, w=s.w + t * dw, r=s.r + t * a_dw, w_lam=w_lam,
                      r_lam=r_lam, it=s.it + 1, status=status_of(r_lam, accepted),
                      worst=jnp.maximum(s.worst, solve_res))

  cond = lambda s: (s.status == _RUNNING) & (s.it < max_iter)
  s = jax.lax.while_loop(cond, primal_step if primal else dual_step, start)
  return _Result(s.w_lam, s.lam, jnp.max(jnp.abs(s.r_lam)), s.it, s.status, s.worst)


@functools.partial(jax.jit, static_argnames=("pot", "primal", "heavy", "max_iter", "forcing_min"))
def _cg_solve(pot, X, X_in, K_inv, b, w0, tol_abs, guess, *, primal, heavy, max_iter,
              forcing_min):
  """method="cg": `_newton` from the linearised start (Eq. 15, solved to relative accuracy
  _FORCING_MAX) or, given a guess of the weights, from the guess and the multipliers that fit
  its dual change best, lam = K^{-1} X (f'(guess) - f'(w0)) (least squares: mirror descent's
  dual change lies in the row space of X, Eq. 13)."""
  ops = _pcg_ops(X, X_in, K_inv, heavy, _CG_MAX_ITER)
  forcing = (_FORCING_MAX, forcing_min)
  if guess is None:
    h0 = _capped(pot.inverse_hessian_diag(w0))
    lam, lin_res = ops.solve(h0, b, jnp.asarray(_FORCING_MAX, w0.dtype))
    out = _newton(pot, ops, w0, b, lam, tol_abs, max_iter, None, primal=primal, forcing=forcing)
    return out._replace(solve_residual=jnp.maximum(out.solve_residual, lin_res))
  change = ops.matvec(pot.mirror_map(guess) - pot.mirror_map(w0))
  lam = (K_inv @ change.astype(K_inv.dtype)).astype(w0.dtype)
  return _newton(pot, ops, w0, b, lam, tol_abs, max_iter, None, primal=primal, forcing=forcing,
                 w_start=guess)


# ----------------------------------------------------------------------------------------------
# Validation and precision
# ----------------------------------------------------------------------------------------------


def _precision(dtype):
  """(numpy dtype, context) for the computation: float64 runs under jax.enable_x64(True)."""
  dt = np.dtype(dtype)
  if dt == np.float64:
    return dt, jax.enable_x64(True)
  if dt == np.float32:
    return dt, contextlib.nullcontext()
  raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}.")


def _default_tol(tol, dt) -> float:
  tol = _DEFAULT_TOL[dt] if tol is None else _checks.real_scalar(tol, "tol", finite=False)
  if not (tol > 0 and np.isfinite(tol)):
    raise ValueError(f"tol must be positive and finite, got {tol}.")
  return tol


def _check_max_iter(max_iter) -> int:
  try:
    ok = int(max_iter) == max_iter and max_iter >= 1
  except (TypeError, ValueError, OverflowError):  # None, NaN, inf, strings
    ok = False
  if not ok or isinstance(max_iter, bool):
    raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}.")
  return int(max_iter)


def _check_user_potential(pot, w0, what) -> None:
  """`check_potential` at w0 for potentials other than the built-ins: a non-convex potential,
  or one whose derivative is bounded, makes the dual Newton method return NaN or fail."""
  if not potentials_lib.is_builtin(pot):
    potentials_lib.check_potential(pot, w0, what)


def _check_inverse_hessian(pot, w0, what):
  """H^{-1} = 1 / f''(w0) must be finite and >= 0 for the linearisation (Eq. 14) to exist."""
  h0 = np.asarray(pot.inverse_hessian_diag(w0))
  negative = h0 < 0
  if negative.any():
    i = int(np.argmax(negative))
    raise ValueError(
        f"f''(w0) = {1.0 / h0[i]:.6g} < 0 at {what} index {i} "
        f"(w0 = {float(np.asarray(w0)[i]):.6g}): "
        f"{pot.name} is not convex there, so Eq. 8 has no unique minimiser and its linearisation "
        "(Eq. 14-15) is undefined. Use a strictly convex potential (see mdgeom.potential).")
  bad = ~(np.isfinite(h0) & (h0 >= 0))
  if bad.any():
    raise ValueError(
        f"the inverse Hessian 1/f''(w0) of {pot.name} is not finite at {int(bad.sum())} of "
        f"{h0.size} {what} (f''(w0) = 0 there, e.g. a p-norm with p > 2 at w = 0), so the "
        "linearised solution (Eq. 14-15) is undefined. Move those weights off zero or use a "
        "potential with f'' > 0 there.")


def _rank_of(ev, shape) -> int:
  """The numerical rank of X from the eigenvalues of X X^T (float64): eigenvalues above
  ev_max * max(N, D) * eps, i.e. singular values above s_max * sqrt(max(N, D) * eps) ~ 1e-6 s_max.
  Below that, X H^{-1} X^T (Eq. 15) has a condition number beyond ~1e12 and the multipliers are
  not determined in float64 either."""
  return int(np.sum(ev > ev.max() * max(shape) * np.finfo(np.float64).eps))


def _power_norm(A, iters=8) -> float:
  """||A||_2 of a symmetric positive semidefinite A by power iteration (from below; a few
  iterations are within a few percent here, which is all the float32 decision needs)."""
  v = np.ones(A.shape[0]) / np.sqrt(A.shape[0])
  for _ in range(iters):
    v = A @ v
    v /= np.linalg.norm(v)
  return float(v @ A @ v)


class _Dense(NamedTuple):
  """Validated dense inputs and what every potential shares (NumPy)."""

  X: np.ndarray  # as given (not copied), real
  X64: np.ndarray  # X in the computation dtype
  y: np.ndarray
  w0: np.ndarray
  gram_inverse: np.ndarray  # (X X^T)^{-1}, float64
  cond: float  # estimate of cond(X X^T)


def _dense_inputs(X, y, w0, dt) -> _Dense:
  """Validates (X, y, w0) and checks the rank of X; must run inside the precision context.

  The rank check and the solver's preconditioner share K = X X^T (float64; NumPy, whose dot calls
  BLAS syrk for X @ X.T, half the flops of a product: 0.6 s at N = 1681, D = 2e4 on 2 cores,
  against 2-4 s for XLA:CPU's float64 product). Full rank is certified without eigenvalues when
  K's Cholesky factorisation succeeds and ||K||_F ||K^{-1}||_F (>= cond_2(K)) is below the rank
  threshold of `_rank_of`; otherwise (ill-conditioned or singular K) the eigenvalues decide.
  """
  # Complex inputs would lose their imaginary part in the casts below, silently.
  X_np, y_np, w0_np = (_checks.as_real_array(a, what) for a, what in
                       ((X, "X"), (y, "y"), (w0, "initial weights w0")))
  if X_np.ndim != 2:
    raise ValueError(f"X must be a matrix of shape (N, D), got shape {X_np.shape}.")
  n, d = X_np.shape
  if n == 0 or d == 0:
    raise ValueError(f"X has shape {X_np.shape}: need at least one constraint and one weight.")
  if y_np.shape != (n,):
    raise ValueError(f"shape mismatch: X has shape {X_np.shape}, so y needs shape ({n},), but y "
                     f"has shape {y_np.shape}.")
  if w0_np.shape != (d,):
    raise ValueError(f"shape mismatch: X has shape {X_np.shape}, so w0 needs shape ({d},), but "
                     f"w0 has shape {w0_np.shape}.")
  _checks.check_finite(X_np, "X")
  _checks.check_finite(y_np.astype(np.float64), "y")
  _checks.check_finite(w0_np.astype(np.float64), "initial weights w0")
  X64 = np.asarray(X_np, np.float64)
  K = X64 @ X64.T
  threshold = 1.0 / (max(X_np.shape) * np.finfo(np.float64).eps)  # cond(K) of rank deficiency
  c, info = scipy.linalg.lapack.dpotrf(K, lower=True)
  if info == 0:
    c, info = scipy.linalg.lapack.dpotri(c, lower=True)
  K_inv = np.tril(c) + np.tril(c, -1).T if info == 0 else None
  if K_inv is not None and np.linalg.norm(K) * np.linalg.norm(K_inv) < threshold:
    cond = _power_norm(K) * _power_norm(K_inv)
  else:
    ev = np.linalg.eigvalsh(K)
    rank = _rank_of(ev, X_np.shape)
    if rank < n:
      raise ValueError(
          f"X has rank {rank} < N = {n} constraints (shape {X_np.shape}): X w = y has no "
          "solution or no unique multipliers, and X H^{-1} X^T (Eq. 15) is singular. Remove "
          "dependent rows (duplicated or collinear data points).")
    cond = float(ev[-1] / ev[0])
    if K_inv is None:  # positive definite, but too close to singular for Cholesky in float64
      K_inv = np.linalg.pinv(K, hermitian=True)
  return _Dense(X_np, np.asarray(X64, dt), np.asarray(y_np, dt), np.asarray(w0_np, dt), K_inv,
                cond)


def _potential_for(potential, w0, dt):
  """The Potential, with w0 checked for it (domain, user potentials, finite 1/f''(w0))."""
  pot = potentials_lib.get(potential)
  pot.check_weights(w0.astype(np.float64), "initial weights w0")
  _check_user_potential(pot, w0, "initial weights w0")
  _check_inverse_hessian(pot, jnp.asarray(w0, dt), "weights")
  return pot


def _device_array(X, dense: _Dense, dt):
  """X as a JAX array of dtype dt, copied once (a JAX array of that dtype is used as it is)."""
  if isinstance(X, jax.Array) and X.dtype == dt:
    return X
  if dense.X.dtype == dt:
    return jnp.asarray(dense.X)
  return jnp.asarray(dense.X64.astype(dt))


@jax.jit
def _as_float64(X):
  # in XLA: a multithreaded cast, ~3x faster here than copying a float64 NumPy array in
  return X.astype(jnp.float64)


def _guess_for(pot, guess, w0, dt):
  """A validated initial guess: real, finite, shaped like w0, in the potential's domain."""
  g = _checks.as_real_array(guess, "initial_guess")
  if g.shape != w0.shape:
    raise ValueError(f"shape mismatch: initial_guess has shape {g.shape} but w0 has shape "
                     f"{w0.shape}.")
  pot.check_weights(g.astype(np.float64), "initial_guess")
  return jnp.asarray(g, dt)


def _primal_form(pot, w0) -> bool:
  """Whether Newton runs on (w, lambda) (see the module docstring): f'' vanishes at 0, relative to
  its size at w0, e.g. p-norms with p > 2. Sign-preserving potentials never reach 0."""
  if pot.sign_preserving:
    return False
  f2_0 = float(np.asarray(pot.hessian_diag(jnp.zeros([], w0.dtype))))
  f2_w0 = float(np.median(np.asarray(pot.hessian_diag(jnp.asarray(w0)))))
  return bool(np.isfinite(f2_0) and f2_0 <= _PRIMAL_FORM_RATIO * f2_w0)


def _failure_message(fn_name, result, tol_abs, max_iter, pot, what):
  stalled = int(result.status) == _STALLED
  why = ("the line search could not decrease the dual objective" if stalled
         else f"max_iter = {max_iter} Newton steps were not enough")
  hint = ""
  if pot.sign_preserving:
    hint = (f" Under {pot.name} weights keep the signs of w0, so no interpolant may exist with "
            "those signs (the dual is then unbounded).")
  return (f"{fn_name}: Newton's method on the dual did not converge after {int(result.iterations)} "
          f"steps ({why}): residual {what} = {float(result.residual):.3g} > tolerance "
          f"{tol_abs:.3g}.{hint} Pass raise_on_failure=False to get the last iterate, or raise "
          "max_iter.")


# ----------------------------------------------------------------------------------------------
# Dense problems (Eq. 8, 13-15)
# ----------------------------------------------------------------------------------------------


_METHODS = ("cg", "dense")


def min_bregman_solution(potential: PotentialLike, X, y, w0, *, tol: float | None = None,
                         max_iter: int = 50, dtype="float64", raise_on_failure: bool = True,
                         method: str = "cg", initial_guess=None) -> Solution:
  """The implicit bias of mirror descent: w* = argmin_{X w = y} D_phi(w, w0)  (Eq. 8).

  Solves the Lagrange conditions (Eq. 11-13), w* = (grad phi)^{-1}(grad phi(w0) + X^T lambda),
  X w* = y, by Newton's method with a backtracking (Armijo) line search on the N-dimensional convex
  dual g(lambda) = sum_i f*(theta_i) - <lambda, y>, theta = grad phi(w0) + X^T lambda (gradient
  X w(lambda) - y, Hessian X diag(1/f''(w(lambda))) X^T), started from the linearised multipliers
  of Eq. 15; for potentials with f''(0) = 0 (p-norms with p > 2) Newton runs on the primal-dual
  pair (w, lambda) (module docstring). Sign-preserving potentials (negative entropy) keep the
  signs of w0. Whatever the iteration, the result satisfies the Lagrange relation exactly,
  w = (grad phi)^{-1}(grad phi(w0) + X^T lam), and converged means max|X w - y| is within tol.

  Args:
    potential: a Potential or a name for `potentials.get`.
    X: (N, D) data matrix of full row rank N (so D >= N).
    y: (N,) targets.
    w0: (D,) initial weights (nonzero under sign-preserving potentials).
    tol: stop when max|X w - y| <= tol (1 + max|y|); default 1e-10 (float64), 1e-5 (float32).
    max_iter: maximum Newton steps.
    dtype: "float64" (default; computed under jax.enable_x64 even when x64 is off) or "float32".
    raise_on_failure: raise RuntimeError when Newton does not converge; with False return the
      last iterate with converged=False.
    method: "cg" (default): each Newton system solved matrix-free by preconditioned conjugate
      gradients, Hessian products in float32 when X X^T is well conditioned (2 N D flops each;
      about 1 s for the 2-norm and negative entropy and 2-3 s for the 3-norm at N = 1681,
      D = 2e4 on 2 CPU cores). "dense": X H^{-1} X^T formed and Cholesky-factorised at every
      step (N^2 D flops each), dual Newton only: the solver before issue 12, kept to compare with.
    initial_guess: optional (D,) weights near w*, e.g. mirror descent's trained weights: Newton
      starts there (with the multipliers that fit its dual change best) instead of at the
      linearised solution; 4 instead of 10 steps for the 3-norm at paper scale. The solution and
      its accuracy do not depend on it (Eq. 8 has one minimiser). method="cg" only.

  Returns:
    Solution(w, lam, converged, iterations, residual), arrays as NumPy arrays of `dtype`.

  Raises:
    TypeError: complex or non-numeric X, y or w0 (the imaginary part would be dropped).
    ValueError: shape mismatch, non-finite inputs (NonFiniteError), zeros under a
      sign-preserving potential (SignFlipError), rank of X below N, f''(w0) < 0 or 1/f''(w0) not
      finite, or a user potential failing `potentials.check_potential` at w0 (not convex, f' not
      invertible or bounded), an unknown method. RuntimeError: no convergence (raise_on_failure).
  """
  return min_bregman_solutions([potential], X, y, w0, tol=tol, max_iter=max_iter, dtype=dtype,
                               raise_on_failure=raise_on_failure, method=method,
                               initial_guesses=None if initial_guess is None
                               else [initial_guess])[0]


def min_bregman_solutions(potentials: Sequence[PotentialLike], X, y, w0, *,
                          tol: float | None = None, max_iter: int = 50, dtype="float64",
                          raise_on_failure: bool = True, method: str = "cg",
                          initial_guesses: Sequence | None = None) -> list[Solution]:
  """`min_bregman_solution` for several potentials on the same (X, y, w0), one Solution each.

  The validation, the rank check and the preconditioner's inverse of X X^T (about 0.8 s at
  N = 1681, D = 2e4) are computed once for all of them. initial_guesses: None, or one entry per
  potential, each None or (D,) weights (see initial_guess). Other arguments as for
  `min_bregman_solution`.
  """
  if method not in _METHODS:
    raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
  if isinstance(potentials, (str, potentials_lib.Potential)):
    raise TypeError(f"min_bregman_solutions takes a list of potentials, got the single potential "
                    f"{potentials!r}: pass [{potentials!r}] or use min_bregman_solution.")
  if initial_guesses is None:
    initial_guesses = [None] * len(potentials)
  if len(initial_guesses) != len(potentials):
    raise ValueError(f"need one initial guess (or None) per potential: got {len(initial_guesses)} "
                     f"for {len(potentials)} potentials.")
  if method == "dense" and any(g is not None for g in initial_guesses):
    raise ValueError('initial_guess needs method="cg".')
  dt, ctx = _precision(dtype)
  tol = _default_tol(tol, dt)
  max_iter = _check_max_iter(max_iter)
  out = []
  with ctx:
    dense = _dense_inputs(X, y, w0, dt)
    pots = [_potential_for(p, dense.w0, dt) for p in potentials]
    guesses = [None if g is None else _guess_for(pot, g, dense.w0, dt)
               for pot, g in zip(pots, initial_guesses)]
    tol_abs = tol * (1.0 + float(np.max(np.abs(dense.y))))
    w0_j = jnp.asarray(dense.w0)
    b = jnp.asarray(dense.y - dense.X64 @ dense.w0)
    if method == "cg":
      # Hessian products in float32 unless X X^T is too ill-conditioned for float32 to resolve
      in_dt = np.dtype(np.float32) if dense.cond <= _F32_MAX_COND else dt
      X_in = _device_array(X, dense, in_dt)
      if in_dt == dt:
        X_j = X_in
      elif dense.X.dtype == in_dt:  # float32 data: exact in float64, cast in XLA
        X_j = _as_float64(X_in)
      else:
        X_j = jnp.asarray(dense.X64)
      K_inv = jnp.asarray(dense.gram_inverse.astype(in_dt))
    else:
      X_j = jnp.asarray(dense.X64)
    for pot, guess in zip(pots, guesses):
      if method == "cg":
        primal = _primal_form(pot, w0_j)
        heavy = min(int(np.ceil(_HEAVY_FRACTION * w0_j.size)), w0_j.size - 1) if primal else 0
        result = _cg_solve(pot, X_j, X_in, K_inv, b, w0_j, jnp.asarray(tol_abs, dt), guess,
                           primal=primal, heavy=heavy, max_iter=max_iter,
                           forcing_min=max(_FORCING_MIN[in_dt], _FORCING_MIN[dt]))
      else:
        result = _dense_solve(pot, X_j, b, w0_j, jnp.asarray(tol_abs, dt), exact=True,
                              max_iter=max_iter)
      result = jax.device_get(result)
      converged = int(result.status) == _CONVERGED
      if not converged and raise_on_failure:
        raise RuntimeError(_failure_message("min_bregman_solution", result, tol_abs, max_iter, pot,
                                            "max|X w - y|"))
      out.append(Solution(np.asarray(result.w), np.asarray(result.lam), converged,
                          int(result.iterations), float(result.residual)))
  return out


def linearized_solution(potential: PotentialLike, X, y, w0, *, tol: float | None = None,
                        dtype="float64", raise_on_failure: bool = True) -> Solution:
  """The small-change approximation of Eq. 14-15 to the minimum-Bregman interpolant (Eq. 8).

  Linearising grad phi(w*) = grad phi(w0) + X^T lambda around w0 (Eq. 14) with the diagonal
  H^{-1} = diag(1/f''(w0)):

    lambda = (X H^{-1} X^T)^{-1} (y - X w0)                                                (Eq. 15)
    w      = w0 + H^{-1} X^T lambda

  so X w = y exactly (up to rounding), but w is only approximately the minimum-divergence point
  (the error is second order in y - X w0). For the 2-norm (H = I) it is exact:
  w0 + pinv(X)(y - X w0).
  Under negative entropy w may change sign (it is a linear approximation).

  Arguments, validation and precision as for `min_bregman_solution`; converged says whether
  max|X w - y| <= tol (1 + max|y|) (iterations is 0), and RuntimeError is raised when not
  (raise_on_failure).
  """
  dt, ctx = _precision(dtype)
  tol = _default_tol(tol, dt)
  with ctx:
    dense = _dense_inputs(X, y, w0, dt)
    pot = _potential_for(potential, dense.w0, dt)
    tol_abs = tol * (1.0 + float(np.max(np.abs(dense.y))))
    X_j, w0_j = jnp.asarray(dense.X64), jnp.asarray(dense.w0)
    b = jnp.asarray(dense.y - dense.X64 @ dense.w0)
    result = jax.device_get(_dense_solve(pot, X_j, b, w0_j, jnp.asarray(tol_abs, dt), exact=False,
                                         max_iter=1))
  converged = bool(result.residual <= tol_abs)
  if not converged and raise_on_failure:
    raise RuntimeError(
        f"linearized_solution: the solve of X H^{{-1}} X^T lambda = y - X w0 (Eq. 15) left "
        f"residual max|X w - y| = {float(result.residual):.3g} > tolerance {tol_abs:.3g} "
        "(X H^{-1} X^T is too ill-conditioned for this precision).")
  return Solution(np.asarray(result.w), np.asarray(result.lam), converged, 0,
                  float(result.residual))


# ----------------------------------------------------------------------------------------------
# Networks linearised at their initial parameters (Eq. 9-10), matrix-free
# ----------------------------------------------------------------------------------------------


def _cast_floats(tree, dt):
  def cast(x):
    x = jnp.asarray(x)
    return x.astype(dt) if jnp.issubdtype(x.dtype, jnp.floating) else x

  return jax.tree.map(cast, tree)


class _ByIdentity:
  """A static-argument key for an unhashable apply_fn: equal only to itself (no cache sharing
  between distinct objects, and never a wrong hit)."""

  def __init__(self, fn):
    self.fn = fn

  def __hash__(self):
    return id(self.fn)

  def __eq__(self, other):
    return isinstance(other, _ByIdentity) and other.fn is self.fn

  def __call__(self, *args):
    return self.fn(*args)


def _static_fn(fn):
  try:
    hash(fn)
  except TypeError:
    return _ByIdentity(fn)
  return fn


# The network programs are compiled once per (apply_fn, potential, options) and argument shapes:
# jax.jit caches on the static apply_fn (by its hash, i.e. identity for plain functions; bound
# methods of one model compare equal) and on the shapes and dtypes of params, inputs and targets.
# Before, a closure over apply_fn was jitted on every call and recompiled (~2 s each).
@functools.partial(jax.jit, static_argnames=("apply_fn",))
def _network_outputs(apply_fn, params, inputs):
  return apply_fn(params, inputs)


@functools.partial(jax.jit, static_argnames=("apply_fn", "pot", "exact", "primal", "max_iter",
                                             "cg_max_iter"))
def _network_solve(apply_fn, params, inputs, b, tol_abs, cg_tol, *, pot, exact, primal, max_iter,
                   cg_max_iter):
  w0, unravel = ravel_pytree(params)
  f_flat = lambda w: jnp.reshape(apply_fn(unravel(w), inputs), (-1,))
  _, jvp_fn = jax.linearize(f_flat, w0)
  _, vjp_fn = jax.vjp(f_flat, w0)
  ops = _matrix_free_ops(jvp_fn, lambda u: vjp_fn(u)[0], cg_max_iter)
  # The linearised solve must meet the outer tolerance in max-norm: ||.||_inf <= ||.||_2.
  norm_b = jnp.linalg.norm(b)
  lin_rtol = jnp.minimum(cg_tol, 0.5 * tol_abs / jnp.where(norm_b > 0, norm_b, 1.0))
  lin = _linearized(ops, w0, pot.inverse_hessian_diag(w0), b, lin_rtol if not exact else cg_tol)
  if not exact:
    return lin
  res = _newton(pot, ops, w0, b, lin.lam, tol_abs, max_iter, cg_tol, primal=primal, forcing=None)
  return res._replace(solve_residual=jnp.maximum(res.solve_residual, lin.solve_residual))


def linearized_network_solution(apply_fn: Callable, params0, inputs, targets,
                                potential: PotentialLike, *, exact: bool = False,
                                cg_tol: float = 1e-10, cg_max_iter: int | None = None,
                                max_iter: int = 50, tol: float | None = None, dtype="float64",
                                raise_on_failure: bool = True) -> NetworkSolution:
  """Eq. 8 / Eq. 14-15 for a network linearised at params0 (Eq. 9-10), without forming J.

  The linearised network f(x; w) ~ f(x; w0) + J (w - w0) (Eq. 9), J the Jacobian of all outputs
  with respect to all parameters, fits the targets when J (w - w0) = targets - f(x; w0): the
  problem of Eq. 8 with X = J and y = targets - f(x; w0) + J w0 (Eq. 10). Products J v come from
  forward mode (`jax.linearize`, i.e. `jax.jvp` with the forward pass evaluated once), J^T u from
  reverse mode (`jax.vjp`), over the parameters flattened by `ravel_pytree`; the n x n systems
  J diag(h) J^T z = r (n = number of outputs) are solved by conjugate gradients
  (`jax.scipy.sparse.linalg.cg`). Memory stays O(D + n), never O(n D). The compiled program is
  cached by apply_fn (its hash: the same function object, or an equal bound method) and the
  shapes and dtypes of params0, inputs and targets, so repeated calls do not recompile.

  Args:
    apply_fn: pure apply_fn(params, inputs) -> outputs of shape (N,) or (N, K) (any shape works;
      every output entry is a constraint). For Flax: `lambda p, x: model.apply(p, x)`.
    params0: the parameter pytree w0 at which the network is linearised.
    inputs: the N inputs (an array or pytree), passed to apply_fn as is (floats cast to dtype).
    targets: array shaped like the outputs.
    potential: a Potential or a name; it acts on every parameter (under negative entropy no
      parameter may be zero, including biases initialised to zero).
    exact: False: the linearised solution of Eq. 14-15. True: the exact minimum-Bregman solution of
      the linearised network by the Newton method of `min_bregman_solution` (dual, or primal-dual
      for p-norms with p > 2), CG inside.
    cg_tol: relative tolerance of each CG solve (the linearised solve tightens it further when
      needed to meet `tol`).
    cg_max_iter: CG iteration cap (default: JAX's, 10 n).
    max_iter, tol, dtype, raise_on_failure: as for `min_bregman_solution`, with the residual
      max|J (w - w0) - (targets - f(x; w0))| compared with tol (1 + max|targets|).

  Returns:
    NetworkSolution(params, lam, converged, iterations, residual, cg_residual); params a pytree
    like params0 with NumPy leaves of `dtype`, lam shaped like the outputs.

  Raises:
    TypeError: complex params0, inputs, targets or outputs.
    ValueError: invalid inputs, or more outputs than parameters (J cannot have full row rank).
    RuntimeError: the constraints are not met to tolerance (raise_on_failure). In this matrix-free
      path a rank-deficient J shows up here (CG cannot solve a singular system), not as a rank.
  """
  pot = potentials_lib.get(potential)
  dt, ctx = _precision(dtype)
  tol = _default_tol(tol, dt)
  max_iter = _check_max_iter(max_iter)
  if not cg_tol > 0:
    raise ValueError(f"cg_tol must be positive, got {cg_tol}.")
  for root, tree in (("params0", params0), ("inputs", inputs)):
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
      _checks.check_real(leaf, f"{root}{jax.tree_util.keystr(path)}")
  _checks.check_real(targets, "targets")
  with ctx:
    params_c = _cast_floats(params0, dt)
    w0, unravel = ravel_pytree(params_c)
    if w0.size == 0:
      raise ValueError("params0 has no parameters.")
    if w0.dtype != dt:
      raise ValueError(f"params0 must hold floating-point parameters, got dtype {w0.dtype}.")
    pot.check_weights(w0, "initial parameters params0")
    _check_user_potential(pot, w0, "initial parameters params0 (flattened)")
    inputs_c = _cast_floats(inputs, dt)
    for path, leaf in jax.tree_util.tree_leaves_with_path(inputs_c):
      _checks.check_finite(leaf, f"inputs at {jax.tree_util.keystr(path) or 'the root'}")
    targets_j = jnp.asarray(targets, dt)
    _checks.check_finite(targets_j, "targets")

    apply_key = _static_fn(apply_fn)
    outputs = _network_outputs(apply_key, params_c, inputs_c)
    _checks.check_real(outputs, "the outputs apply_fn(params0, inputs)")
    _checks.check_same_shape(outputs, targets_j, "apply_fn(params0, inputs)", "targets")
    out_shape = outputs.shape
    n, d = int(np.prod(out_shape, dtype=np.int64)), int(w0.size)
    if n == 0:
      raise ValueError("apply_fn returned no outputs: there are no constraints.")
    if n > d:
      raise ValueError(
          f"{n} outputs (constraints) but only {d} parameters: the Jacobian J ({n} x {d}) has "
          f"rank <= {d} < {n}, so the linearised network cannot interpolate the targets in general "
          "(Eq. 10 needs full row rank).")
    f0 = jnp.reshape(outputs, (-1,)).astype(dt)
    _checks.check_finite(f0, "network outputs f(x; params0)")
    _check_inverse_hessian(pot, w0, "parameters")
    b = targets_j.reshape(-1) - f0
    tol_abs = tol * (1.0 + float(jnp.max(jnp.abs(targets_j))))
    result = jax.device_get(_network_solve(
        apply_key, params_c, inputs_c, b, jnp.asarray(tol_abs, dt), jnp.asarray(cg_tol, dt),
        pot=pot, exact=bool(exact), primal=exact and _primal_form(pot, w0), max_iter=max_iter,
        cg_max_iter=cg_max_iter))
    params = jax.tree.map(np.asarray, jax.device_get(unravel(jnp.asarray(result.w))))
  if exact:
    converged = int(result.status) == _CONVERGED
  else:
    converged = bool(result.residual <= tol_abs)
  if not converged and raise_on_failure:
    what = "max|J (w - w0) - (targets - f(x; w0))|"
    if exact:
      msg = _failure_message("linearized_network_solution", result, tol_abs, max_iter, pot, what)
    else:
      msg = (f"linearized_network_solution: conjugate gradients on J H^{{-1}} J^T lambda = "
             f"targets - f(x; w0) (Eq. 15) left residual {what} = {float(result.residual):.3g} > "
             f"tolerance {tol_abs:.3g} (CG relative residual {float(result.solve_residual):.3g}).")
    raise RuntimeError(msg + " If J is rank deficient (e.g. duplicated inputs or dead units), the "
                       "constraints cannot all be met; otherwise raise cg_max_iter.")
  lam = np.asarray(result.lam).reshape(out_shape)
  return NetworkSolution(params, lam, converged, int(result.iterations), float(result.residual),
                         float(result.solve_residual))
