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

so `min_bregman_solution` runs Newton's method on lambda (N unknowns, not D), started from the
linearised multipliers of Eq. 14-15, which `linearized_solution` returns on its own:

  w ~ w0 + H^{-1} X^T lambda,  lambda = (X H^{-1} X^T)^{-1} (y - X w0),  H^{-1} = diag(1/f''(w0)).

A network linearised at w0 (Eq. 9-10) gives the same problem with X = J, the Jacobian of the
outputs, and y = targets - f(x; w0) + J w0. `linearized_network_solution` solves it without
forming J: J v by forward mode, J^T u by reverse mode, and the N x N systems by conjugate
gradients. Dense and matrix-free paths share one Newton loop that only sees these products.

Everything is computed in float64 by default, also when JAX's x64 flag is off (the computation
runs under `jax.enable_x64`); results come back as NumPy arrays so that precision survives.
The entry points validate concrete inputs and return NumPy/Python values, so they are called
outside `jax.jit` (the maths inside them is jitted).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.scipy.sparse import linalg as sparse_linalg

from mdgeom import _checks
from mdgeom import potentials as potentials_lib

PotentialLike = Union[str, potentials_lib.Potential]

_DEFAULT_TOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}
_ARMIJO = 1e-4  # sufficient-decrease constant of the backtracking line search
_MAX_HALVINGS = 60  # 2^-60 ~ 1e-18: a step this short makes no progress in float64 either

# Newton loop status codes
_RUNNING, _CONVERGED, _STALLED = 0, 1, 2


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


def _dual_newton(pot, ops: _Ops, w0, b, lam_start, tol_abs, max_iter, rtol) -> _Result:
  """Newton's method with Armijo backtracking on the dual g(lambda) of Eq. 8 (see module doc).

  g is evaluated relative to lambda = 0 so that no large constants cancel: with
  delta = A^T lambda and w = (grad phi)^{-1}(grad phi(w0) + delta),
    g(lambda) - g(0) = <delta, w - w0> - D_phi(w, w0) - <lambda, b>,   b = y - A w0,
  whose gradient is A (w - w0) - b and Hessian A diag(1 / f''(w)) A^T. Weights are updated with
  `pot.step(w0, delta)` (the potential's fused form where it has one, e.g. w0 exp(sign(w0) delta)
  for negative entropy, which also keeps signs).
  """
  dtype = w0.dtype
  eps = jnp.finfo(dtype).eps
  theta0 = pot.mirror_map(w0)
  f_w0 = pot.elementwise_value(w0)

  def evaluate(lam):
    delta = ops.rmatvec(lam)
    w = pot.step(w0, delta)
    dw = w - w0
    f_w = pot.elementwise_value(w)
    bregman = f_w - f_w0 - theta0 * dw
    lam_b = jnp.dot(lam, b)
    g = jnp.sum(delta * dw - bregman) - lam_b
    # size of the rounding error in g: comparisons below it are noise (near the optimum)
    slack = 32.0 * eps * (jnp.sum(jnp.abs(delta * dw) + jnp.abs(f_w) + jnp.abs(f_w0)
                                  + jnp.abs(theta0 * dw)) + jnp.abs(lam_b))
    r = ops.matvec(dw) - b
    ok = jnp.isfinite(g) & jnp.all(jnp.isfinite(r)) & jnp.all(jnp.isfinite(w))
    return g, slack, w, r, ok

  # Start from the linearised multipliers (Eq. 15) unless they are worse than lambda = 0 (w = w0).
  zero_lam = jnp.zeros_like(lam_start)
  g_lin, s_lin, w_lin, r_lin, ok_lin = evaluate(lam_start)
  g_0, s_0, w_0, r_0, _ = evaluate(zero_lam)
  use_lin = ok_lin & (g_lin <= g_0)
  pick = lambda a, c: jnp.where(use_lin, a, c)
  lam, g, slack, w, r = (pick(lam_start, zero_lam), pick(g_lin, g_0), pick(s_lin, s_0),
                         pick(w_lin, w_0), pick(r_lin, r_0))
  res = jnp.max(jnp.abs(r))
  status = jnp.where(res <= tol_abs, _CONVERGED, _RUNNING)

  def newton_cond(c):
    *_, it, status, _ = c
    return (status == _RUNNING) & (it < max_iter)

  def newton_body(c):
    lam, g, slack, w, r, it, status, worst = c
    h = pot.inverse_hessian_diag(w)
    z, solve_res = ops.solve(h, r, rtol)
    step = -z
    slope = jnp.dot(r, step)  # <grad g, step> = -r^T G^{-1} r < 0
    descent = (slope < 0) & jnp.all(jnp.isfinite(step))

    def ls_cond(s):
      t, k, accepted, *_ = s
      return ~accepted & (k < _MAX_HALVINGS) & descent

    def ls_body(s):
      t, k, _, lam_t, g_t, slack_t, w_t, r_t = s
      lam_new = lam + t * step
      g_new, slack_new, w_new, r_new, ok = evaluate(lam_new)
      accepted = ok & (g_new <= g + _ARMIJO * t * slope + slack)
      keep = lambda new, old: jnp.where(accepted, new, old)
      return (jnp.where(accepted, t, 0.5 * t), k + 1, accepted, keep(lam_new, lam_t),
              keep(g_new, g_t), keep(slack_new, slack_t), keep(w_new, w_t), keep(r_new, r_t))

    one = jnp.ones([], dtype)
    _, _, accepted, lam, g, slack, w, r = jax.lax.while_loop(
        ls_cond, ls_body, (one, 0, jnp.asarray(False), lam, g, slack, w, r))
    res = jnp.max(jnp.abs(r))
    status = jnp.where(res <= tol_abs, _CONVERGED, jnp.where(accepted, _RUNNING, _STALLED))
    return lam, g, slack, w, r, it + 1, status, jnp.maximum(worst, solve_res)

  init = (lam, g, slack, w, r, jnp.zeros([], jnp.int32), status, jnp.zeros([], dtype))
  lam, _, _, w, r, it, status, worst = jax.lax.while_loop(newton_cond, newton_body, init)
  return _Result(w, lam, jnp.max(jnp.abs(r)), it, status, worst)


@functools.partial(jax.jit, static_argnames=("pot", "exact", "max_iter"))
def _dense_solve(pot, X, b, w0, tol_abs, *, exact, max_iter):
  ops = _dense_ops(X)
  lin = _linearized(ops, w0, pot.inverse_hessian_diag(w0), b, 0.0)
  if not exact:
    return lin
  return _dual_newton(pot, ops, w0, b, lin.lam, tol_abs, max_iter, 0.0)


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


@jax.jit
def _gram_eigenvalues(X):
  return jnp.linalg.eigvalsh(X @ X.T)


def _rank(X) -> int:
  """The numerical rank of X from the eigenvalues of the N x N Gram matrix X X^T (float64):
  eigenvalues above ev_max * max(N, D) * eps, i.e. singular values above s_max * sqrt(max(N, D)
  * eps) ~ 1e-6 s_max. Below that, X H^{-1} X^T (Eq. 15) has a condition number beyond ~1e12
  and the multipliers are not determined in float64 either. (An O(N^2 D) product that XLA runs
  well; numpy's SVD of the N x D matrix fights XLA's threads for the cores.)"""
  with jax.enable_x64(True):
    ev = np.asarray(_gram_eigenvalues(jnp.asarray(X, jnp.float64)))
  return int(np.sum(ev > ev.max() * max(X.shape) * np.finfo(np.float64).eps))


def _dense_inputs(potential, X, y, w0, dt):
  """Validates and casts (X, y, w0); must run inside the precision context."""
  pot = potentials_lib.get(potential)
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
  _checks.check_finite(X_np.astype(np.float64), "X")
  _checks.check_finite(y_np.astype(np.float64), "y")
  pot.check_weights(w0_np.astype(np.float64), "initial weights w0")
  _check_user_potential(pot, w0_np.astype(dt), "initial weights w0")
  rank = _rank(X_np)
  if rank < n:
    raise ValueError(
        f"X has rank {rank} < N = {n} constraints (shape {X_np.shape}): X w = y has no solution "
        "or no unique multipliers, and X H^{-1} X^T (Eq. 15) is singular. Remove dependent rows "
        "(duplicated or collinear data points).")
  X_j, y_j, w0_j = (jnp.asarray(a, dt) for a in (X_np, y_np, w0_np))
  _check_inverse_hessian(pot, w0_j, "weights")
  return pot, X_j, y_j, w0_j


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


def min_bregman_solution(potential: PotentialLike, X, y, w0, *, tol: Optional[float] = None,
                         max_iter: int = 50, dtype="float64",
                         raise_on_failure: bool = True) -> Solution:
  """The implicit bias of mirror descent: w* = argmin_{X w = y} D_phi(w, w0)  (Eq. 8).

  Solves the Lagrange conditions (Eq. 11-13), w* = (grad phi)^{-1}(grad phi(w0) + X^T lambda),
  X w* = y, by Newton's method with a backtracking (Armijo) line search on the N-dimensional convex
  dual g(lambda) = sum_i f*(theta_i) - <lambda, y>, theta = grad phi(w0) + X^T lambda (gradient
  X w(lambda) - y, Hessian X diag(1/f''(w(lambda))) X^T), started from the linearised multipliers
  of Eq. 15. Sign-preserving potentials (negative entropy) keep the signs of w0.

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

  Returns:
    Solution(w, lam, converged, iterations, residual), arrays as NumPy arrays of `dtype`.

  Raises:
    TypeError: complex or non-numeric X, y or w0 (the imaginary part would be dropped).
    ValueError: shape mismatch, non-finite inputs (NonFiniteError), zeros under a
      sign-preserving potential (SignFlipError), rank of X below N, f''(w0) < 0 or 1/f''(w0) not
      finite, or a user potential failing `potentials.check_potential` at w0 (not convex, f' not
      invertible or bounded). RuntimeError: no convergence (raise_on_failure).
  """
  dt, ctx = _precision(dtype)
  tol = _default_tol(tol, dt)
  max_iter = _check_max_iter(max_iter)
  with ctx:
    pot, X_j, y_j, w0_j = _dense_inputs(potential, X, y, w0, dt)
    tol_abs = tol * (1.0 + float(jnp.max(jnp.abs(y_j))))
    b = y_j - X_j @ w0_j
    result = jax.device_get(_dense_solve(pot, X_j, b, w0_j, jnp.asarray(tol_abs, dt), exact=True,
                                         max_iter=max_iter))
  converged = int(result.status) == _CONVERGED
  if not converged and raise_on_failure:
    raise RuntimeError(_failure_message("min_bregman_solution", result, tol_abs, max_iter, pot,
                                        "max|X w - y|"))
  return Solution(np.asarray(result.w), np.asarray(result.lam), converged,
                  int(result.iterations), float(result.residual))


def linearized_solution(potential: PotentialLike, X, y, w0, *, tol: Optional[float] = None,
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
    pot, X_j, y_j, w0_j = _dense_inputs(potential, X, y, w0, dt)
    tol_abs = tol * (1.0 + float(jnp.max(jnp.abs(y_j))))
    b = y_j - X_j @ w0_j
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


def linearized_network_solution(apply_fn: Callable, params0, inputs, targets,
                                potential: PotentialLike, *, exact: bool = False,
                                cg_tol: float = 1e-10, cg_max_iter: Optional[int] = None,
                                max_iter: int = 50, tol: Optional[float] = None, dtype="float64",
                                raise_on_failure: bool = True) -> NetworkSolution:
  """Eq. 8 / Eq. 14-15 for a network linearised at params0 (Eq. 9-10), without forming J.

  The linearised network f(x; w) ~ f(x; w0) + J (w - w0) (Eq. 9), J the Jacobian of all outputs
  with respect to all parameters, fits the targets when J (w - w0) = targets - f(x; w0): the
  problem of Eq. 8 with X = J and y = targets - f(x; w0) + J w0 (Eq. 10). Products J v come from
  forward mode (`jax.linearize`, i.e. `jax.jvp` with the forward pass evaluated once), J^T u from
  reverse mode (`jax.vjp`), over the parameters flattened by `ravel_pytree`; the n x n systems
  J diag(h) J^T z = r (n = number of outputs) are solved by conjugate gradients
  (`jax.scipy.sparse.linalg.cg`). Memory stays O(D + n), never O(n D).

  Args:
    apply_fn: pure apply_fn(params, inputs) -> outputs of shape (N,) or (N, K) (any shape works;
      every output entry is a constraint). For Flax: `lambda p, x: model.apply(p, x)`.
    params0: the parameter pytree w0 at which the network is linearised.
    inputs: the N inputs (an array or pytree), passed to apply_fn as is (floats cast to dtype).
    targets: array shaped like the outputs.
    potential: a Potential or a name; it acts on every parameter (under negative entropy no
      parameter may be zero, including biases initialised to zero).
    exact: False: the linearised solution of Eq. 14-15. True: the exact minimum-Bregman solution of
      the linearised network by the dual Newton method of `min_bregman_solution`, CG inside.
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

    def f_flat(w):
      return jnp.reshape(apply_fn(unravel(w), inputs_c), (-1,))

    out_struct = jax.eval_shape(lambda w: apply_fn(unravel(w), inputs_c), w0)
    _checks.check_real(out_struct, "the outputs apply_fn(params0, inputs)")
    _checks.check_same_shape(np.empty(out_struct.shape), targets_j, "apply_fn(params0, inputs)",
                             "targets")
    n, d = int(np.prod(out_struct.shape, dtype=np.int64)), int(w0.size)
    if n == 0:
      raise ValueError("apply_fn returned no outputs: there are no constraints.")
    if n > d:
      raise ValueError(
          f"{n} outputs (constraints) but only {d} parameters: the Jacobian J ({n} x {d}) has "
          f"rank <= {d} < {n}, so the linearised network cannot interpolate the targets in general "
          "(Eq. 10 needs full row rank).")
    f0 = jax.jit(f_flat)(w0)
    _checks.check_finite(f0, "network outputs f(x; params0)")
    _check_inverse_hessian(pot, w0, "parameters")
    b = targets_j.reshape(-1) - f0
    tol_abs = tol * (1.0 + float(jnp.max(jnp.abs(targets_j))))

    @jax.jit
    def solve(w0, b, tol_abs, cg_tol):
      _, jvp_fn = jax.linearize(f_flat, w0)
      _, vjp_fn = jax.vjp(f_flat, w0)
      ops = _matrix_free_ops(jvp_fn, lambda u: vjp_fn(u)[0], cg_max_iter)
      # The linearised solve must meet the outer tolerance in max-norm: ||.||_inf <= ||.||_2.
      norm_b = jnp.linalg.norm(b)
      lin_rtol = jnp.minimum(cg_tol, 0.5 * tol_abs / jnp.where(norm_b > 0, norm_b, 1.0))
      lin = _linearized(ops, w0, pot.inverse_hessian_diag(w0), b, lin_rtol if not exact else cg_tol)
      if not exact:
        return lin
      res = _dual_newton(pot, ops, w0, b, lin.lam, tol_abs, max_iter, cg_tol)
      return res._replace(solve_residual=jnp.maximum(res.solve_residual, lin.solve_residual))

    result = jax.device_get(solve(w0, b, jnp.asarray(tol_abs, dt), jnp.asarray(cg_tol, dt)))
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
  lam = np.asarray(result.lam).reshape(out_struct.shape)
  return NetworkSolution(params, lam, converged, int(result.iterations), float(result.residual),
                         float(result.solve_residual))
