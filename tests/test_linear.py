"""Full-batch mirror descent on linear regression: fused columns = separate optax runs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mdgeom
from mdgeom import linear


def problem(seed=0, n=12, d=200):
  rng = np.random.default_rng(seed)
  X = jnp.asarray(rng.standard_normal((n, d)), jnp.float32)
  y = jnp.asarray(rng.choice([-1.0, 1.0], n), jnp.float32)
  w0 = jnp.asarray(rng.standard_normal(d) / np.sqrt(d), jnp.float32)
  return X, y, w0


def reference(X, y, w0, name, lr, steps, momentum=0.9):
  """One column trained with mdgeom.mirror_descent and optax's cosine schedule, step by step."""
  tx = mdgeom.mirror_descent(name, optax.cosine_decay_schedule(lr, steps), momentum)
  loss = lambda w: jnp.mean((X @ w - y) ** 2)
  w, s = w0, tx.init(w0)
  for _ in range(steps):
    u, s = tx.update(jax.grad(loss)(w), s, w)
    w = optax.apply_updates(w, u)
  return w, loss(w)


def test_fused_columns_equal_separate_runs():
  X, y, w0 = problem()
  cols = [("negative_entropy", 0.01, 60), ("2-norm", 0.02, 60), ("3-norm", 0.01, 40),
          ("2-norm", 0.001, 25)]
  out = linear.fit(X, y, w0, [c[0] for c in cols], [c[1] for c in cols], [c[2] for c in cols])
  for i, (name, lr, steps) in enumerate(cols):
    w, l = reference(X, y, w0, name, lr, steps)
    # the 3-norm's inverse map sign(y)|y|^(1/2) amplifies float32 rounding near w = 0
    atol = 1e-4 if name == "3-norm" else 2e-6
    np.testing.assert_allclose(out.weights[i], w, rtol=2e-4, atol=atol)
    np.testing.assert_allclose(out.loss[i], l, rtol=2e-3, atol=1e-7)


def test_vmap_over_seeds_equals_single_fits():
  data = [problem(s) for s in range(3)]
  X, y, w0 = (jnp.stack(t) for t in zip(*data))
  batched = linear.fit(X, y, w0, ["3-norm", "negative_entropy"], [0.05, 0.02], [30, 30])
  assert batched.weights.shape == (3, 2, 200)
  for s in range(3):
    single = linear.fit(X[s], y[s], w0[s], ["3-norm", "negative_entropy"], [0.05, 0.02], [30, 30])
    np.testing.assert_allclose(batched.weights[s], single.weights, rtol=1e-5, atol=1e-7)


def test_cosine_schedule_is_torch_cosine_annealing():
  t = np.arange(0, 120)
  ours = np.asarray(linear.cosine_learning_rate(0.3, 100, t))
  torch_formula = np.where(t < 100, 0.3 * (1 + np.cos(np.pi * t / 100)) / 2, 0.0)
  np.testing.assert_allclose(ours, torch_formula, rtol=1e-6, atol=3e-8)  # float32 cos
  np.testing.assert_allclose(ours[:100], optax.cosine_decay_schedule(0.3, 100)(t[:100]), rtol=1e-6,
                             atol=3e-8)


def test_learning_rate_search_picks_the_lowest_final_loss_and_extends_epochs():
  X, y, w0 = problem(1)
  grid = np.logspace(-4, 0, 9)
  res = linear.search_learning_rate(X, y, w0, ["2-norm", "negative_entropy"], grid, num_steps=50,
                                    extra_steps=50, max_steps=150, target=1e-3)
  for r, name in zip(res, ["2-norm", "negative_entropy"]):
    finite = np.where(np.isfinite(r.losses), r.losses, np.inf)
    assert r.learning_rate == grid[np.argmin(finite)]
    _, l = reference(X, y, w0, name, r.learning_rate, r.num_steps)
    np.testing.assert_allclose(r.loss, l, rtol=1e-2, atol=1e-7)
    assert r.converged == (r.loss < 1e-3)
  # an unreachable target extends to max_steps and reports non-convergence
  hard = linear.search_learning_rate(X, y, w0, ["2-norm"], grid, num_steps=20, extra_steps=20,
                                     max_steps=60, target=0.0)[0]
  assert hard.num_steps == 60 and not hard.converged


def test_diverged_learning_rates_never_win():
  X, y, w0 = problem(2)
  res = linear.search_learning_rate(X, y, w0, ["3-norm"], [1e-3, 1e3, 1e6], num_steps=30,
                                    max_steps=30)[0]
  assert not np.isfinite(res.losses[2]) or res.losses[2] > res.losses[0]
  assert res.learning_rate == 1e-3


def test_fit_errors():
  X, y, w0 = problem()
  with pytest.raises(ValueError, match="one learning rate"):
    linear.fit(X, y, w0, ["2-norm"], [0.1, 0.2], [10])
  with pytest.raises(ValueError, match="unknown potential"):
    linear.fit(X, y, w0, ["nope"], [0.1], [10])


# ----------------------------------------------------------------------------------------------
# float64 end to end, and the two readings of "final loss"
# ----------------------------------------------------------------------------------------------


def numpy_reference(X, y, w0, name, lr, steps, momentum=0.9):
  """The authors' training loop in float64 NumPy, written independently of mdgeom: full-batch
  MSE, heavy ball (torch.optim.SGD: buf <- mu buf + g), CosineAnnealingLR (T_max = steps), mirror
  step in dual coordinates. Returns (weights, loss at the final weights, loss of the last forward
  pass, computed before the last update)."""
  n = X.shape[0]
  w, buf, forward = w0.copy(), np.zeros_like(w0), None
  for t in range(steps):
    r = X @ w - y
    forward = np.mean(r * r)
    buf = momentum * buf + (2.0 / n) * (X.T @ r)
    eta = lr * 0.5 * (1.0 + np.cos(np.pi * t / steps))
    if name == "2-norm":
      w = w - eta * buf
    elif name == "negative_entropy":  # w exp(-eta sign(w) buf): exponentiated gradient
      w = w * np.exp(-eta * np.sign(w) * buf)
    elif name == "3-norm":  # f'(w) = w|w|, (f')^{-1}(theta) = sign(theta) sqrt|theta|
      theta = w * np.abs(w) - eta * buf
      w = np.sign(theta) * np.sqrt(np.abs(theta))
  return w, np.mean((X @ w - y) ** 2), forward


def test_float64_end_to_end_matches_an_independent_float64_loop():
  """Before: learning rates and the cosine schedule were float32 even under x64, so a float64 run
  differed from this reference by ~1e-8 relative (more at rates near divergence)."""
  rng = np.random.default_rng(3)
  X = rng.standard_normal((12, 200))
  y = rng.choice([-1.0, 1.0], 12)
  w0 = rng.standard_normal(200) / np.sqrt(200)
  # rates that are not float32 numbers, and columns of different lengths
  cols = [("negative_entropy", 0.0123456789, 60), ("2-norm", 0.0234567891, 60),
          ("3-norm", 0.0345678912, 45)]
  with jax.enable_x64(True):
    names, lrs, steps = zip(*cols)
    final = linear.fit(X, y, w0, names, lrs, steps)
    forward = linear.fit(X, y, w0, names, lrs, steps, loss="last_forward")
    assert final.weights.dtype == jnp.float64 and final.loss.dtype == jnp.float64
    for i, (name, lr, n_steps) in enumerate(cols):
      w, loss_final, loss_forward = numpy_reference(X, y, w0, name, lr, n_steps)
      assert np.max(np.abs(w - w0)) > 1e-2  # trained
      # the 3-norm's inverse map sqrt|theta| amplifies rounding (in either loop) by 1/(2|w|) in
      # weights that pass near 0: 9e-13 here, against 2e-16 for the others
      atol = (1e-11 if name == "3-norm" else 1e-13) * np.max(np.abs(w))
      np.testing.assert_allclose(final.weights[i], w, rtol=1e-12, atol=atol)
      np.testing.assert_allclose(forward.weights[i], w, rtol=1e-12, atol=atol)
      np.testing.assert_allclose(final.loss[i], loss_final, rtol=1e-12)
      np.testing.assert_allclose(forward.loss[i], loss_forward, rtol=1e-12)
      assert forward.loss[i] > final.loss[i]  # the last step still lowers the loss


def test_cosine_schedule_is_float64_under_x64():
  t = np.arange(0, 120)
  with jax.enable_x64(True):
    ours = np.asarray(linear.cosine_learning_rate(jnp.asarray(0.3, jnp.float64), 100, t))
  assert ours.dtype == np.float64
  expected = np.where(t < 100, 0.3 * (1 + np.cos(np.pi * t / 100)) / 2, 0.0)
  np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-16)  # float32: ~3e-8


def test_learning_rate_search_by_the_last_forward_pass():
  """loss="last_forward" (the authors' loop) selects and checks the target with that loss."""
  X, y, w0 = problem(4)
  grid = np.logspace(-4, 0, 9)
  by_forward = linear.search_learning_rate(X, y, w0, ["negative_entropy"], grid, num_steps=40,
                                           max_steps=40, loss="last_forward")[0]
  expected = linear.fit(X, y, w0, ["negative_entropy"] * grid.size, grid, [40] * grid.size,
                        loss="last_forward").loss
  np.testing.assert_allclose(by_forward.losses, expected, rtol=1e-6)
  finite = np.where(np.isfinite(by_forward.losses), by_forward.losses, np.inf)
  assert by_forward.learning_rate == grid[np.argmin(finite)]
  by_final = linear.search_learning_rate(X, y, w0, ["negative_entropy"], grid, num_steps=40,
                                         max_steps=40)[0]
  ok = np.isfinite(by_final.losses) & (by_final.losses < 1.0)
  assert np.all(by_forward.losses[ok] > by_final.losses[ok])
  with pytest.raises(ValueError, match="loss must be one of"):
    linear.search_learning_rate(X, y, w0, ["2-norm"], grid, loss="last")
