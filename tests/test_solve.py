"""Implicit-bias solutions: Eq. 8 (min-Bregman interpolant), Eq. 13 (Lagrange), Eq. 14-15
(linearisation), Eq. 9-10 (linearised networks), each against an independent formula."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

import mdgeom
from mdgeom import potentials as P
from mdgeom import solve as S

QUARTIC = P.potential(lambda w: w**4 / 4 + w**2 / 2, name="quartic")  # numeric inverse
POTENTIALS = [P.negative_entropy(), P.pnorm(1.5), P.pnorm(2.0), P.pnorm(3.0), P.hypentropy(0.5),
              QUARTIC]
IDS = [p.name for p in POTENTIALS]


def problem(seed=0, n=5, d=40, change=0.5):
  """Underdetermined regression: X (n, d) Gaussian, mixed-sign w0 away from 0, y = X w0 + change."""
  rng = np.random.default_rng(seed)
  X = rng.standard_normal((n, d)) / np.sqrt(d)
  w0 = 3 * rng.uniform(0.5, 1.5, d) * rng.choice([-1.0, 1.0], d) / np.sqrt(d)
  y = X @ w0 + change * rng.choice([-1.0, 1.0], n)
  return X, y, w0


@functools.lru_cache(maxsize=None)
def solved(pot):
  X, y, w0 = problem()
  return X, y, w0, S.min_bregman_solution(pot, X, y, w0)


def bregman(pot, w, w0):
  with jax.enable_x64(True):
    return float(pot.bregman(jnp.asarray(w), jnp.asarray(w0)))


def mirror(pot, w):
  with jax.enable_x64(True):
    return np.asarray(pot.mirror_map(jnp.asarray(w)))


def null_space(X):
  _, _, vt = np.linalg.svd(X)
  return vt[X.shape[0]:]  # rows: orthonormal basis of {n : X n = 0}


# ----------------------------------------------------------------------------------------------
# Dense problems
# ----------------------------------------------------------------------------------------------


def test_two_norm_is_the_pseudoinverse_solution():
  """Gradient descent (phi = ||w||^2 / 2) converges to w0 + pinv(X)(y - X w0): Eq. 8 and Eq. 15
  with H = I, so the exact and the linearised solution are both exactly this."""
  X, y, w0 = problem(seed=3)
  expected = w0 + np.linalg.pinv(X) @ (y - X @ w0)
  exact = S.min_bregman_solution("2-norm", X, y, w0)
  lin = S.linearized_solution("2-norm", X, y, w0)
  assert exact.converged and lin.converged and exact.w.dtype == np.float64
  np.testing.assert_allclose(exact.w, expected, rtol=0, atol=1e-12)
  np.testing.assert_allclose(lin.w, expected, rtol=0, atol=1e-12)
  # lambda = (X X^T)^{-1}(y - X w0)
  np.testing.assert_allclose(exact.lam, np.linalg.solve(X @ X.T, y - X @ w0), atol=1e-10)


@pytest.mark.parametrize("pot", POTENTIALS, ids=IDS)
def test_interpolates_and_satisfies_lagrange_conditions(pot):
  """X w* = y, and grad phi(w*) - grad phi(w0) = X^T lambda lies in the row space of X (Eq. 13)."""
  X, y, w0, sol = solved(pot)
  assert sol.converged and sol.iterations <= 50
  assert np.max(np.abs(X @ sol.w - y)) <= 1e-9 * (1 + np.max(np.abs(y)))
  delta = mirror(pot, sol.w) - mirror(pot, w0)
  coef, *_ = np.linalg.lstsq(X.T, delta, rcond=None)
  scale = np.linalg.norm(delta)
  assert scale > 1e-2  # a real change, not a trivial solution
  assert np.linalg.norm(X.T @ coef - delta) <= 1e-9 * scale
  np.testing.assert_allclose(X.T @ sol.lam, delta, rtol=0, atol=1e-9 * scale)
  if pot.sign_preserving:
    np.testing.assert_array_equal(np.sign(sol.w), np.sign(w0))


@pytest.mark.parametrize("pot", POTENTIALS, ids=IDS)
def test_minimises_bregman_divergence_along_the_null_space(pot):
  """Eq. 8: every other interpolant w* + t n (X n = 0) is at least as far from w0 in D_phi."""
  X, y, w0, sol = solved(pot)
  d_star = bregman(pot, sol.w, w0)
  rng = np.random.default_rng(1)
  basis = null_space(X)
  directions = np.concatenate([basis[:5], rng.standard_normal((5, basis.shape[0])) @ basis])
  for n in directions:
    n = n / np.linalg.norm(n) * np.linalg.norm(sol.w - w0)
    for t in (-1e-1, -1e-3, 1e-3, 1e-1):
      assert bregman(pot, sol.w + t * n, w0) >= d_star - 1e-13 * (1 + d_star)


def test_null_space_check_detects_a_suboptimal_interpolant():
  """The check above can fail: the 2-norm interpolant is not the 3-norm's minimiser."""
  pot = P.pnorm(3.0)
  X, y, w0, sol = solved(pot)
  w2 = S.min_bregman_solution("2-norm", X, y, w0).w
  n = null_space(X).T @ (null_space(X) @ (sol.w - w2))  # towards the 3-norm solution
  assert np.linalg.norm(n) > 1e-2
  assert bregman(pot, w2 + 1e-2 * n, w0) < bregman(pot, w2, w0)


@settings(max_examples=20)
@given(st.integers(0, 2**31 - 1), st.floats(0.05, 2.0))
def test_negative_entropy_property(seed, change):
  """Random problems: constraints met, signs kept, dual change in the row space of X (Eq. 13)."""
  pot = P.negative_entropy()
  X, _, w0 = problem(seed, n=3, d=12)
  # targets reachable with w0's signs (a teacher w0 * exp(change * z)): otherwise no interpolant
  # under negative entropy may exist (the dual is unbounded; tested separately)
  z = np.random.default_rng(seed + 1).standard_normal(w0.size)
  y = X @ (w0 * np.exp(change * z))
  sol = S.min_bregman_solution(pot, X, y, w0)
  assert np.max(np.abs(X @ sol.w - y)) <= 1e-9 * (1 + np.max(np.abs(y)))
  np.testing.assert_array_equal(np.sign(sol.w), np.sign(w0))
  delta = mirror(pot, sol.w) - mirror(pot, w0)
  np.testing.assert_allclose(X.T @ sol.lam, delta, rtol=0, atol=1e-8 * (1 + np.abs(delta).max()))


@pytest.mark.parametrize("name", ["negative_entropy", "3-norm"])
def test_linearized_solution_approaches_exact_for_small_changes(name):
  """Eq. 14-15 is exact to first order: the error is O(|y - X w0|^2), the change O(|y - X w0|)."""
  X, _, w0 = problem(seed=5)
  r = np.random.default_rng(2).standard_normal(X.shape[0])
  errors, changes = [], []
  for eps in (1e-1, 1e-2, 1e-3):
    y = X @ w0 + eps * r
    exact = S.min_bregman_solution(name, X, y, w0)
    lin = S.linearized_solution(name, X, y, w0)
    assert np.max(np.abs(X @ lin.w - y)) <= 1e-10 * (1 + np.max(np.abs(y)))
    errors.append(np.linalg.norm(lin.w - exact.w))
    changes.append(np.linalg.norm(exact.w - w0))
  assert errors[0] > 1e-6  # the linearisation is not exact at this size
  assert errors[1] < errors[0] / 30 and errors[2] < errors[1] / 30  # second order: ~ / 100
  assert errors[2] / changes[2] < 1e-2


@pytest.mark.parametrize("name", ["negative_entropy", "3-norm"])
def test_mirror_descent_converges_to_the_min_bregman_solution(name):
  """Eq. 8, independently: train with mirror descent (momentum 0.9) to zero loss and compare."""
  X, y, w0 = problem(seed=1)
  with jax.enable_x64(True):
    tx = mdgeom.mirror_descent(name, 1.0, momentum=0.9)
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    loss = lambda w: 0.5 * jnp.mean((Xj @ w - yj) ** 2)

    @jax.jit
    def train(w):
      def step(carry, _):
        w, state = carry
        updates, state = tx.update(jax.grad(loss)(w), state, w)
        return (optax.apply_updates(w, updates), state), None

      (w, _), _ = jax.lax.scan(step, (w, tx.init(w)), None, length=3000)
      return w

    trained = np.asarray(train(jnp.asarray(w0)))
  assert np.max(np.abs(X @ trained - y)) < 1e-10
  exact = S.min_bregman_solution(name, X, y, w0).w
  euclid = S.min_bregman_solution("2-norm", X, y, w0).w
  assert np.max(np.abs(exact - euclid)) > 0.1  # the geometry matters here
  np.testing.assert_allclose(trained, exact, rtol=0, atol=1e-7)


def test_float64_without_x64_flag_and_float32():
  """float64 is used even with JAX's x64 flag off; dtype="float32" stays float32."""
  assert not jax.config.jax_enable_x64
  X, y, w0, ref = solved(P.pnorm(3.0))
  sol = S.min_bregman_solution("3-norm", X, y, w0)
  assert sol.w.dtype == np.float64 and sol.residual <= 1e-10 * (1 + np.max(np.abs(y)))
  sol32 = S.min_bregman_solution("3-norm", X, y, w0, dtype="float32")
  assert sol32.w.dtype == np.float32 and sol32.converged
  np.testing.assert_allclose(sol32.w, ref.w, rtol=0, atol=1e-4)
  lin32 = S.linearized_solution("3-norm", X, y, w0, dtype="float32")
  assert lin32.w.dtype == np.float32 and lin32.converged


# ----------------------------------------------------------------------------------------------
# The matrix-free solver (method="cg", the default) against the dense one it replaced
# ----------------------------------------------------------------------------------------------


def experiment_like(seed, n=60, d=1000):
  """The linear-regression experiment's kind of problem: noisy inputs, w0 ~ N(0, 1/D), +-1 labels
  (many weights cross zero under the 3-norm)."""
  rng = np.random.default_rng(seed)
  X = rng.standard_normal((n, d)) + 0.5 * rng.uniform(-0.5, 0.5, (n, d))
  w0 = rng.standard_normal(d) / np.sqrt(d)
  return X, rng.choice([-1.0, 1.0], n), w0


@pytest.mark.parametrize("pot", POTENTIALS, ids=IDS)
def test_cg_and_dense_methods_give_the_same_solution(pot):
  X, y, w0 = experiment_like(2, n=40, d=400)
  if pot.sign_preserving:  # targets reachable with w0's signs
    y = X @ (w0 * np.exp(0.3 * np.random.default_rng(0).standard_normal(w0.size)))
  cg = S.min_bregman_solution(pot, X, y, w0)
  dense = S.min_bregman_solution(pot, X, y, w0, method="dense", max_iter=300)
  assert cg.converged and dense.converged
  assert np.max(np.abs(dense.w - w0)) > 1e-2
  np.testing.assert_allclose(cg.w, dense.w, rtol=0, atol=1e-9 * np.max(np.abs(dense.w)))
  np.testing.assert_allclose(cg.lam, dense.lam, rtol=0, atol=1e-8 * np.max(np.abs(dense.lam)))


def test_three_norm_where_dual_newton_oscillates():
  """The dual's curvature 1/f'' = 1/(2|w|) blows up where weights cross zero and Newton on lambda
  alone needs 102 damped steps here; the primal-dual iteration needs about 10."""
  X, y, w0 = experiment_like(3)
  dense = S.min_bregman_solution("3-norm", X, y, w0, method="dense", max_iter=300)
  cg = S.min_bregman_solution("3-norm", X, y, w0)
  assert dense.iterations > 50 and cg.iterations <= 15
  np.testing.assert_allclose(cg.w, dense.w, rtol=0, atol=1e-10)
  # the returned pair satisfies Eq. 13 exactly: w = (f')^{-1}(f'(w0) + X^T lam)
  pot = P.pnorm(3.0)
  np.testing.assert_allclose(mirror(pot, cg.w), mirror(pot, w0) + X.T @ cg.lam, rtol=0,
                             atol=1e-14)
  assert np.max(np.abs(X @ cg.w - y)) <= 1e-10 * (1 + np.max(np.abs(y)))


@pytest.mark.parametrize("name", ["negative_entropy", "2-norm", "3-norm"])
def test_initial_guess_changes_the_start_not_the_solution(name):
  """A start near w* (here: mirror descent's trained weights, as in the experiment) saves the
  3-norm Newton steps; the solution is the same whatever the start (Eq. 8 has one minimiser)."""
  X, y, w0 = experiment_like(1, n=40, d=600)
  pot = P.get(name)
  if pot.sign_preserving:
    y = X @ (w0 * np.exp(0.3 * np.random.default_rng(0).standard_normal(w0.size)))
  with jax.enable_x64(True):
    tx = mdgeom.mirror_descent(pot, optax.cosine_decay_schedule(0.002, 100), momentum=0.9)
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    grad = jax.grad(lambda w: jnp.mean((Xj @ w - yj) ** 2))

    def step(carry, _):
      w, state = carry
      u, state = tx.update(grad(w), state, w)
      return (w + u, state), None

    (w, _), _ = jax.lax.scan(step, (jnp.asarray(w0), tx.init(jnp.asarray(w0))), None, length=100)
    trained = np.asarray(w)
  cold = S.min_bregman_solution(pot, X, y, w0)
  warm = S.min_bregman_solution(pot, X, y, w0, initial_guess=trained)
  assert np.max(np.abs(trained - cold.w)) > 1e-6  # a guess, not the answer
  assert warm.converged
  if name == "3-norm":  # where the linearised start is poor (Eq. 14 is linear in |w|^2)
    assert warm.iterations < cold.iterations
  np.testing.assert_allclose(warm.w, cold.w, rtol=0, atol=1e-9 * np.max(np.abs(cold.w)))
  # a poor guess still converges to the same point
  far = S.min_bregman_solution(pot, X, y, w0, initial_guess=w0 * 3.0, max_iter=100)
  np.testing.assert_allclose(far.w, cold.w, rtol=0, atol=1e-9 * np.max(np.abs(cold.w)))


def test_several_potentials_in_one_call_equal_single_calls():
  X, y, w0 = experiment_like(4, n=30, d=300)
  names = ["2-norm", "3-norm", "hypentropy:0.5"]
  together = S.min_bregman_solutions(names, X, y, w0, initial_guesses=[None, w0, None])
  for name, sol in zip(names, together):
    alone = S.min_bregman_solution(name, X, y, w0)
    assert sol.converged
    np.testing.assert_allclose(sol.w, alone.w, rtol=0, atol=1e-10)
    # each is the minimiser of Eq. 8: feasible, and its dual change lies in X's row space (Eq. 13)
    pot = P.get(name)
    assert np.max(np.abs(X @ sol.w - y)) <= 1e-9 * (1 + np.max(np.abs(y)))
    np.testing.assert_allclose(mirror(pot, sol.w), mirror(pot, w0) + X.T @ sol.lam, rtol=0,
                               atol=1e-10 * np.max(np.abs(mirror(pot, sol.w))))
  # the 2-norm's minimiser in closed form: w0 + X^+ (y - X w0)
  np.testing.assert_allclose(together[0].w, w0 + np.linalg.pinv(X) @ (y - X @ w0), rtol=0,
                             atol=1e-10)
  with pytest.raises(TypeError, match="takes a list of potentials"):
    S.min_bregman_solutions("3-norm", X, y, w0)


def test_ill_conditioned_X_uses_float64_hessian_products():
  """cond(X X^T) ~ 1e8 (rows of very different scales): float32 products cannot resolve it, so
  the solver keeps them float64 and still meets the tolerance."""
  X, y, w0 = experiment_like(5, n=20, d=200)
  X[0] *= 1e4
  y = X @ w0 + np.random.default_rng(1).choice([-1.0, 1.0], 20)
  ev = np.linalg.eigvalsh(X @ X.T)
  assert ev[-1] / ev[0] > 1e6
  with jax.enable_x64(True):  # the solver's own estimate selects float64 products
    assert S._dense_inputs(X, y, w0, np.dtype("float64")).cond > S._F32_MAX_COND
    assert S._dense_inputs(*experiment_like(5, n=20, d=200), np.dtype("float64")).cond \
        < S._F32_MAX_COND  # (the same data without the scaled row stays in float32)
  for name in ("negative_entropy", "3-norm"):
    pot = P.get(name)
    yy = X @ (w0 * np.exp(0.2 * np.random.default_rng(2).standard_normal(200))) \
        if pot.sign_preserving else y
    sol = S.min_bregman_solution(pot, X, yy, w0)
    dense = S.min_bregman_solution(pot, X, yy, w0, method="dense", max_iter=300)
    assert sol.converged
    np.testing.assert_allclose(sol.w, dense.w, rtol=0, atol=1e-8 * np.max(np.abs(dense.w)))


def test_cg_options_raise():
  X, y, w0 = problem()
  with pytest.raises(ValueError, match="method must be one of"):
    S.min_bregman_solution("2-norm", X, y, w0, method="lu")
  with pytest.raises(ValueError, match="initial_guess has shape"):
    S.min_bregman_solution("2-norm", X, y, w0, initial_guess=w0[:-1])
  with pytest.raises(ValueError, match='needs method="cg"'):
    S.min_bregman_solution("2-norm", X, y, w0, initial_guess=w0, method="dense")
  with pytest.raises(ValueError, match="initial_guess.*exact zeros"):
    S.min_bregman_solution("negative_entropy", X, y, w0, initial_guess=np.zeros_like(w0))
  with pytest.raises(ValueError, match="initial_guess.*NaN"):
    S.min_bregman_solution("3-norm", X, y, w0, initial_guess=np.full_like(w0, np.nan))
  with pytest.raises(ValueError, match="one initial guess"):
    S.min_bregman_solutions(["2-norm", "3-norm"], X, y, w0, initial_guesses=[None])


@pytest.mark.slow
def test_paper_scale_largest_cell():
  """D = 2e4, N = D^0.75 = 1681 (the paper's largest cell, the experiment's own data): every
  potential converges, in few Newton steps, and satisfies Eq. 13 (benchmarks/closed_form.py
  times it against the dense solver)."""
  from configs import linear_regression as lr_config
  from experiments import linear_regression
  config = lr_config.get_config("paper")
  config.num_seeds = 1
  X, y, w0 = linear_regression.make_data(config, 1, 0.75, 20_000)
  X, y, w0 = np.asarray(X[0]), np.asarray(y[0], np.float64), np.asarray(w0[0], np.float64)
  names = ["negative_entropy", "2-norm", "3-norm"]
  sols = S.min_bregman_solutions(names, X, y, w0, tol=1e-9, max_iter=300)
  X64 = X.astype(np.float64)
  for name, sol in zip(names, sols):
    pot = P.get(name)
    assert sol.converged and sol.iterations <= 20, (name, sol.iterations)
    assert np.max(np.abs(X64 @ sol.w - y)) <= 1e-9 * (1 + np.max(np.abs(y)))
    delta = mirror(pot, sol.w) - mirror(pot, w0)
    np.testing.assert_allclose(X64.T @ sol.lam, delta, rtol=0, atol=1e-9 * np.abs(delta).max())


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


def test_rank_deficient_X_raises_with_the_rank():
  X, y, w0 = problem(n=4)
  X[3] = 2 * X[0] - X[1]
  for fn in (S.min_bregman_solution, S.linearized_solution):
    with pytest.raises(ValueError, match=r"rank 3 < N = 4"):
      fn("3-norm", X, y, w0)


def test_non_convergence_raises_or_reports():
  X, y, w0 = problem(change=2.0)
  with pytest.raises(RuntimeError, match=r"residual .* = [0-9.e+-]+ > tolerance"):
    S.min_bregman_solution("negative_entropy", X, y, w0, max_iter=1)
  sol = S.min_bregman_solution("negative_entropy", X, y, w0, max_iter=1, raise_on_failure=False)
  assert not sol.converged and sol.iterations == 1
  assert sol.residual == pytest.approx(np.max(np.abs(X @ sol.w - y)), rel=1e-6)
  assert sol.residual > 1e-6


def test_no_interpolant_with_the_signs_of_w0_raises():
  """Negative entropy keeps signs: positive X and w0 cannot fit negative y (unbounded dual)."""
  rng = np.random.default_rng(0)
  X, w0 = rng.uniform(0.1, 1.0, (3, 10)), rng.uniform(0.1, 1.0, 10)
  with pytest.raises(RuntimeError, match="signs"):
    S.min_bregman_solution("negative_entropy", X, -np.ones(3), w0)


def test_invalid_inputs_raise():
  X, y, w0 = problem()
  for fn in (S.min_bregman_solution, S.linearized_solution):
    with pytest.raises(ValueError, match="shape mismatch"):
      fn("2-norm", X, y[:-1], w0)
    with pytest.raises(ValueError, match="shape mismatch"):
      fn("2-norm", X, y, w0[:-1])
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
      fn("2-norm", X[0], y, w0)
    for bad in ("X", "y", "w0"):
      args = {"X": X.copy(), "y": y.copy(), "w0": w0.copy()}
      args[bad][(0,) * args[bad].ndim] = np.nan
      with pytest.raises(ValueError, match="NaN"):
        fn("2-norm", **args)
    zero = w0.copy()
    zero[3] = 0.0
    with pytest.raises(ValueError, match="exact zeros"):
      fn("negative_entropy", X, y, zero)
    with pytest.raises(ValueError, match="inverse Hessian"):
      fn("3-norm", X, y, zero)  # f''(0) = 0: Eq. 14 undefined
    with pytest.raises(ValueError, match="dtype"):
      fn("2-norm", X, y, w0, dtype="float16")


# ----------------------------------------------------------------------------------------------
# Linearised networks (Eq. 9-10), matrix-free against a dense Jacobian
# ----------------------------------------------------------------------------------------------


class MLP(nn.Module):
  hidden: int = 16
  outputs: int = 1

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(self.outputs)(jnp.tanh(nn.Dense(self.hidden)(x)))
    return x[:, 0] if self.outputs == 1 else x


def flax_case(outputs, seed=0):
  rng = np.random.default_rng(seed)
  model = MLP(outputs=outputs)
  x = jnp.asarray(rng.standard_normal((4, 6)), jnp.float32)
  params = model.init(jax.random.key(seed), x)
  # nonzero biases (Flax starts them at 0, where negative entropy and the 3-norm's H^{-1} fail)
  params = jax.tree.map(
      lambda p: p + jnp.asarray(0.1 * rng.uniform(0.5, 1.0, p.shape)
                                * rng.choice([-1.0, 1.0], p.shape), p.dtype), params)
  return lambda p, inp: model.apply(p, inp), params, x


def plain_case(seed=0):
  rng = np.random.default_rng(seed)
  params = {"W": jnp.asarray(rng.standard_normal((6, 20)) / 3), "v": jnp.asarray(
      rng.standard_normal(20) / 5)}
  apply = lambda p, inp: jnp.tanh(inp @ p["W"]) @ p["v"]
  return apply, params, jnp.asarray(rng.standard_normal((4, 6)))


def dense_problem(apply, params, x, targets):
  """X = J formed with jax.jacfwd, y = targets - f(x; w0) + J w0 (Eq. 10)."""
  with jax.enable_x64(True):
    w0, unravel = ravel_pytree(jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params))
    f = lambda w: apply(unravel(w), jnp.asarray(x, jnp.float64)).reshape(-1)
    J, f0 = np.asarray(jax.jacfwd(f)(w0)), np.asarray(f(w0))
  w0 = np.asarray(w0)
  return J, np.asarray(targets).reshape(-1) - f0 + J @ w0, w0


@pytest.mark.parametrize("case,potential", [("flax1", "negative_entropy"), ("flax2", "3-norm"),
                                            ("plain", "hypentropy:0.5")])
def test_network_solutions_match_dense_jacobian(case, potential):
  """Matrix-free (jvp/vjp + CG) linearised and exact solutions equal the dense ones on X = J."""
  apply, params, x = {"flax1": lambda: flax_case(1), "flax2": lambda: flax_case(2, seed=1),
                      "plain": plain_case}[case]()
  out0 = np.asarray(apply(params, x), np.float64)
  targets = out0 + 0.3 * np.random.default_rng(4).standard_normal(out0.shape)
  J, y, w0 = dense_problem(apply, params, x, targets)
  assert np.linalg.matrix_rank(J) == targets.size and w0.size > 100
  for exact, dense_fn in ((False, S.linearized_solution), (True, S.min_bregman_solution)):
    net = S.linearized_network_solution(apply, params, x, targets, potential, exact=exact)
    dense = dense_fn(potential, J, y, w0)
    assert net.converged and jax.tree.structure(net.params) == jax.tree.structure(params)
    w_net = np.concatenate([np.ravel(a) for a in jax.tree.leaves(net.params)])
    assert w_net.dtype == np.float64
    assert np.max(np.abs(dense.w - w0)) > 1e-2  # the weights moved
    np.testing.assert_allclose(w_net, dense.w, rtol=0, atol=1e-8)
    assert net.lam.shape == targets.shape
    np.testing.assert_allclose(net.lam.reshape(-1), dense.lam, rtol=0,
                               atol=1e-8 * (1 + np.abs(dense.lam).max()))
    # the linearised network fits the targets: f0 + J (w - w0) = targets
    assert np.max(np.abs(J @ (w_net - w0) - (y - J @ w0))) <= 1e-9 * (1 + np.abs(targets).max())
    if exact:
      assert net.iterations >= 1


def test_network_solution_compiles_once_per_shape():
  """The compiled program is cached by apply_fn and the shapes: a second call with the same shapes
  (other values) traces apply_fn no more. Before, every call traced and compiled afresh (~2 s)."""
  traces = []

  def apply(p, inp):
    traces.append(1)  # runs only while JAX traces
    return jnp.tanh(inp @ p["W"]) @ p["v"]

  _, params, x = plain_case(seed=0)
  _, params2, x2 = plain_case(seed=1)
  for exact in (False, True):
    S.linearized_network_solution(apply, params, x, np.ones(4), "3-norm", exact=exact)
    before = len(traces)
    assert before > 0
    sol = S.linearized_network_solution(apply, params2, x2, -np.ones(4), "3-norm", exact=exact)
    assert sol.converged and len(traces) == before
  S.linearized_network_solution(apply, params, x[:3], np.ones(3), "3-norm")  # new shapes
  assert len(traces) > before


def test_network_invalid_inputs_raise():
  apply, params, x = flax_case(1)
  targets = np.zeros(4)
  with pytest.raises(ValueError, match="exact zeros"):  # Flax's zero-initialised biases
    S.linearized_network_solution(apply, model_params_with_zero_bias(params), x, targets,
                                  "negative_entropy")
  with pytest.raises(ValueError, match="shape mismatch"):
    S.linearized_network_solution(apply, params, x, np.zeros(5), "2-norm")
  with pytest.raises(ValueError, match=r"outputs \(constraints\) but only"):
    big = jnp.ones((200, 6))
    S.linearized_network_solution(apply, params, big, np.zeros(200), "2-norm")


def model_params_with_zero_bias(params):
  return jax.tree_util.tree_map_with_path(
      lambda path, p: jnp.zeros_like(p) if "bias" in jax.tree_util.keystr(path) else p, params)


# ----------------------------------------------------------------------------------------------
# Bad inputs: errors that name the argument, never a silently wrong solution
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [S.min_bregman_solution, S.linearized_solution])
@pytest.mark.parametrize("bad,what", [("X", "X"), ("y", "y"), ("w0", "initial weights w0")])
def test_complex_inputs_raise_naming_the_argument(fn, bad, what):
  """Before: the imaginary part was dropped with a ComplexWarning and a wrong w came back."""
  X, y, w0 = problem(n=3, d=10)
  args = {"X": X, "y": y, "w0": w0}
  args[bad] = args[bad] + 0.5j
  with pytest.raises(TypeError, match=f"{what} has complex dtype"):
    fn("2-norm", **args)
  with pytest.raises(TypeError, match=f"{what} has dtype <U"):
    fn("2-norm", **{**args, bad: np.full(np.shape(args[bad]), "a")})


def test_invalid_user_potential_and_options_raise():
  """Before: NaN weights or a 'did not converge' RuntimeError that did not say why."""
  X, y, w0 = problem(n=3, d=10)
  concave = P.potential(lambda w: -w**2 / 2, name="concave")
  logcosh = P.potential(lambda w: jnp.log(jnp.cosh(w)), name="logcosh")
  for fn in (S.min_bregman_solution, S.linearized_solution):  # one test: shared compiled checks
    with pytest.raises(ValueError, match=r"'concave' fails at initial weights w0\[0\].*not convex"):
      fn(concave, X, y, w0)
    with pytest.raises(ValueError, match="'logcosh' fails at initial weights w0.*bounded above"):
      fn(logcosh, X, y, w0)
    with pytest.raises(ValueError, match="tol must be positive and finite"):
      fn("2-norm", X, y, w0, tol=float("nan"))
    with pytest.raises(ValueError, match="X cannot be read as an array"):
      fn("2-norm", [[1.0, 2.0], [3.0]], y, w0)


def test_network_complex_inputs_raise():
  apply, params, x = plain_case()
  targets = np.zeros(4)
  with pytest.raises(TypeError, match="targets has complex dtype"):
    S.linearized_network_solution(apply, params, x, targets + 1j, "2-norm")
  with pytest.raises(TypeError, match="inputs has complex dtype"):
    S.linearized_network_solution(apply, params, x + 0j, targets, "2-norm")
  with pytest.raises(TypeError, match=r"params0\['v'\] has complex dtype"):
    S.linearized_network_solution(apply, {**params, "v": params["v"] + 0j}, x, targets, "2-norm")
  with pytest.raises(ValueError, match="NaN"):
    S.linearized_network_solution(apply, params, x, targets + np.nan, "2-norm")
