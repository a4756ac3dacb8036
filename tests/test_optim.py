"""mirror_descent: equals optax.sgd for the 2-norm, EG for negative entropy, Eq. 6 for any potential."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mdgeom
from mdgeom import potentials as P


def loss(params, x, y):
  pred = x @ params["w"] + params["b"]
  return 0.5 * jnp.mean((pred - y) ** 2)


def problem(seed=0, d=12, n=6, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.standard_normal((n, d)), dtype)
  y = jnp.asarray(rng.standard_normal(n), dtype)
  params = {"w": jnp.asarray(rng.uniform(0.2, 1.0, d) * rng.choice([-1, 1], d), dtype),
            "b": jnp.asarray(rng.uniform(0.2, 1.0, 1), dtype)}
  return params, x, y


def run(tx, params, x, y, steps):
  state = tx.init(params)
  traj = [params]
  for _ in range(steps):
    g = jax.grad(loss)(params, x, y)
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
    traj.append(params)
  return traj


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
@pytest.mark.parametrize("schedule", [False, True])
def test_two_norm_reproduces_optax_sgd(momentum, nesterov, schedule):
  params, x, y = problem()
  lr = optax.cosine_decay_schedule(0.05, 30) if schedule else 0.05
  ours = run(mdgeom.mirror_descent(P.pnorm(2), lr, momentum, nesterov), params, x, y, 30)
  ref = run(optax.sgd(lr, momentum, nesterov), params, x, y, 30)
  for a, b in zip(ours, ref):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7), a, b)


@given(st.floats(0.0, 0.95), st.floats(1e-4, 0.3), st.integers(0, 10_000))
def test_two_norm_reproduces_optax_sgd_property(momentum, lr, seed):
  params, x, y = problem(seed)
  ours = run(mdgeom.mirror_descent("2-norm", lr, momentum), params, x, y, 5)
  ref = run(optax.sgd(lr, momentum), params, x, y, 5)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=2e-6, atol=1e-7), ours[-1],
               ref[-1])


def test_negative_entropy_is_exponentiated_gradient_with_momentum():
  params, x, y = problem()
  lr, mu = 0.1, 0.9
  ours = run(mdgeom.mirror_descent(P.negative_entropy(), lr, mu), params, x, y, 20)
  # Eq. 7 computed directly in numpy, with a torch.optim.SGD-style buffer
  w = jax.tree.map(np.asarray, params)
  buf = None
  for t in range(20):
    g = jax.tree.map(np.asarray, jax.grad(loss)(jax.tree.map(jnp.asarray, w), x, y))
    buf = g if buf is None else jax.tree.map(lambda m, gg: mu * m + gg, buf, g)
    w = jax.tree.map(lambda ww, m: ww * np.exp(-lr * np.sign(ww) * m), w, buf)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-6), ours[t + 1], w)


@pytest.mark.parametrize("pot", [P.pnorm(3.0), P.pnorm(1.5), P.hypentropy(0.3),
                                 P.potential(lambda w: w**4 / 4 + w**2 / 2, name="quartic"),
                                 P.potential(lambda w: jnp.abs(w) * jnp.log(jnp.abs(w)),
                                             sign_preserving=True, name="user_ne")],
                         ids=lambda p: p.name)
def test_one_step_equals_direct_formula(pot):
  """w1 = (grad phi)^{-1}(grad phi(w0) - lr * buffer) with the buffer after two gradients."""
  params, x, y = problem(3)
  lr, mu = 0.05, 0.9
  tx = mdgeom.mirror_descent(pot, lr, mu)
  state = tx.init(params)
  g0 = jax.grad(loss)(params, x, y)
  _, state = tx.update(g0, state, params)  # fills the buffer, params not moved on purpose
  g1 = jax.grad(loss)(params, x, y)
  updates, _ = tx.update(g1, state, params)
  new = optax.apply_updates(params, updates)
  for k in params:
    buf = mu * g0[k] + g1[k]
    expected = pot.inverse_mirror_map(pot.mirror_map(params[k]) - lr * buf, sign=jnp.sign(params[k]))
    np.testing.assert_allclose(new[k], expected, rtol=2e-6)


def test_composes_with_chain_masked_partition_and_inject_hyperparams():
  params, x, y = problem(4)
  g = jax.grad(loss)(params, x, y)
  ne = P.negative_entropy()

  chained = optax.chain(optax.clip_by_global_norm(0.5), mdgeom.mirror_descent(ne, 0.1))
  u, _ = chained.update(g, chained.init(params), params)
  clipped = optax.clip_by_global_norm(0.5).update(g, optax.clip_by_global_norm(0.5).init(params))[0]
  np.testing.assert_allclose(params["w"] + u["w"],
                             params["w"] * jnp.exp(-0.1 * jnp.sign(params["w"]) * clipped["w"]),
                             rtol=1e-6)

  # negative entropy on weights, plain SGD on the bias (the paper's exclusions)
  labels = {"w": "md", "b": "sgd"}
  part = optax.partition({"md": mdgeom.mirror_descent(ne, 0.1, 0.9), "sgd": optax.sgd(0.1, 0.9)},
                         labels)
  u, _ = part.update(g, part.init(params), params)
  np.testing.assert_allclose(u["b"], -0.1 * g["b"], rtol=1e-6)
  np.testing.assert_allclose(params["w"] + u["w"],
                             params["w"] * jnp.exp(-0.1 * jnp.sign(params["w"]) * g["w"]), rtol=1e-6)

  masked = optax.chain(optax.masked(mdgeom.mirror_descent(ne, 0.1), {"w": True, "b": False}),
                       optax.masked(optax.sgd(0.2), {"w": False, "b": True}))
  u, _ = masked.update(g, masked.init(params), params)
  np.testing.assert_allclose(u["b"], -0.2 * g["b"], rtol=1e-6)

  injected = optax.inject_hyperparams(mdgeom.mirror_descent)(potential=ne, learning_rate=0.1,
                                                              momentum=0.9)
  state = injected.init(params)
  state.hyperparams["learning_rate"] = jnp.asarray(0.01)
  u, state = injected.update(g, state, params)
  np.testing.assert_allclose(params["w"] + u["w"],
                             params["w"] * jnp.exp(-0.01 * jnp.sign(params["w"]) * g["w"]), rtol=1e-6)


def test_jit_and_bfloat16_parameters():
  params, x, y = problem(5)
  tx = mdgeom.mirror_descent(P.pnorm(3.0), 0.1, 0.9)
  p16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
  state = tx.init(p16)
  assert state.momentum["w"].dtype == jnp.float32  # buffer kept in float32
  g = jax.grad(loss)(params, x, y)
  g16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), g)

  @jax.jit
  def step(p, s, g):
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  new16, _ = step(p16, state, g16)
  assert new16["w"].dtype == jnp.bfloat16
  assert np.all(np.isfinite(np.asarray(new16["w"], np.float32)))
  pot = P.pnorm(3.0)
  w32 = p16["w"].astype(jnp.float32)
  expected = pot.inverse_mirror_map(pot.mirror_map(w32) - 0.1 * g16["w"].astype(jnp.float32))
  np.testing.assert_allclose(np.asarray(new16["w"], np.float32), expected, rtol=1e-2)


def test_bfloat16_negative_entropy_small_weights_no_nan():
  # |w| log|w| at bf16-representable tiny weights, computed in float32: finite and sign-keeping
  w = jnp.asarray([1e-30, -1e-20, 3e-5, -2.0], jnp.bfloat16)
  tx = mdgeom.mirror_descent(P.negative_entropy(), 1.0)
  u, _ = tx.update(jnp.ones_like(w) * 5.0, tx.init(w), w)
  new = optax.apply_updates(w, u)
  assert np.all(np.isfinite(np.asarray(new, np.float32)))
  np.testing.assert_array_equal(np.sign(np.asarray(new, np.float32)), np.sign(np.asarray(w, np.float32)))


def test_negative_entropy_never_changes_sign():
  params, x, y = problem(6)
  traj = run(mdgeom.mirror_descent(P.negative_entropy(), 0.5, 0.9), params, x, y, 100)
  moved = np.abs(np.asarray(traj[-1]["w"]) / np.asarray(params["w"]) - 1)
  assert moved.max() > 0.5  # the weights did move a lot
  for p in traj:
    np.testing.assert_array_equal(np.sign(p["w"]), np.sign(params["w"]))


def test_converges_to_minimum_norm_interpolant_for_two_norm():
  """Eq. 8 with the 2-norm: GD from w0 on an underdetermined least-squares problem converges to
  w0 + X^+ (y - X w0) (independent closed form)."""
  rng = np.random.default_rng(7)
  d, n = 30, 8
  x = rng.standard_normal((n, d)) / np.sqrt(d)
  y = rng.standard_normal(n)
  w0 = rng.standard_normal(d) / np.sqrt(d)
  expected = w0 + np.linalg.pinv(x) @ (y - x @ w0)
  with jax.enable_x64(True):
    tx = mdgeom.mirror_descent("2-norm", 0.5, 0.9)
    w = jnp.asarray(w0)
    state = tx.init(w)
    f = lambda w: 0.5 * jnp.sum((jnp.asarray(x) @ w - jnp.asarray(y)) ** 2)

    @jax.jit
    def step(w, state):
      u, state = tx.update(jax.grad(f)(w), state, w)
      return w + u, state

    for _ in range(3000):
      w, state = step(w, state)
  np.testing.assert_allclose(w, expected, atol=1e-8)


def test_errors():
  params = {"w": jnp.array([1.0, 0.0, -2.0])}
  with pytest.raises(P.SignFlipError, match=r"\['w'\].*exact zeros"):
    mdgeom.mirror_descent("negative_entropy", 0.1).init(params)
  with pytest.raises(ValueError, match="NaN"):
    mdgeom.mirror_descent("2-norm", 0.1).init({"w": jnp.array([1.0, jnp.nan])})
  tx = mdgeom.mirror_descent("2-norm", 0.1)
  with pytest.raises(ValueError, match="params"):
    tx.update({"w": jnp.ones(3)}, tx.init({"w": jnp.ones(3)}))
  with pytest.raises(ValueError, match="unknown potential"):
    mdgeom.mirror_descent("banana", 0.1)
  with pytest.raises(ValueError, match="nesterov"):
    mdgeom.mirror_descent("2-norm", 0.1, momentum=0.0, nesterov=True)
  with pytest.raises(ValueError, match="momentum"):
    mdgeom.mirror_descent("2-norm", 0.1, momentum=1.5)


@given(st.sampled_from(["negative_entropy", "1.5-norm", "2-norm", "2.5-norm", "3-norm",
                        "hypentropy:0.1", "hypentropy:2"]),
       st.floats(1e-4, 0.5), st.floats(0.0, 0.95), st.booleans(), st.integers(0, 10_000))
def test_mirror_step_equals_eq6_property(name, lr, momentum, nesterov, seed):
  """Two steps of the optimizer = Eq. 6 with the heavy-ball buffer, computed in float64 numpy."""
  if nesterov and momentum == 0.0:
    return
  pot = P.get(name)
  rng = np.random.default_rng(seed)
  w = rng.uniform(0.05, 2.0, 16) * rng.choice([-1.0, 1.0], 16)
  g0, g1 = rng.standard_normal(16), rng.standard_normal(16)
  tx = mdgeom.mirror_descent(pot, lr, momentum, nesterov)
  with jax.enable_x64(True):
    state = tx.init(jnp.asarray(w))
    u, state = tx.update(jnp.asarray(g0), state, jnp.asarray(w))
    w1 = np.asarray(jnp.asarray(w) + u)
    u, state = tx.update(jnp.asarray(g1), state, jnp.asarray(w1))
    w2 = np.asarray(jnp.asarray(w1) + u)

  # independent float64 formulas for f' and its inverse
  if name == "negative_entropy":
    fp = lambda v: np.sign(v) * (np.log(np.abs(v)) + 1)
    inv = lambda y, s: s * np.exp(s * y - 1)
  elif name.startswith("hypentropy"):
    beta = float(name.split(":")[1])
    fp = lambda v: np.arcsinh(v / beta)
    inv = lambda y, s: beta * np.sinh(y)
  else:
    p = float(name.split("-")[0])
    fp = lambda v: np.sign(v) * np.abs(v) ** (p - 1)
    inv = lambda y, s: np.sign(y) * np.abs(y) ** (1 / (p - 1))
  buf = g0
  d0 = g0 + momentum * buf if nesterov else buf
  ref1 = inv(fp(w) - lr * d0, np.sign(w))
  buf = momentum * buf + g1
  d1 = g1 + momentum * buf if nesterov else buf
  ref2 = inv(fp(ref1) - lr * d1, np.sign(ref1))
  np.testing.assert_allclose(w1, ref1, rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(w2, ref2, rtol=1e-8, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# Bad inputs: an error that names the problem, never a silent NaN or a silently frozen weight
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("momentum", [np.float32(1.5), np.float64(-0.1), np.array(1.0),
                                      jnp.asarray(1.5), np.float32(np.nan)])
def test_numpy_and_jax_momentum_scalars_are_range_checked(momentum):
  with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\)"):
    mdgeom.mirror_descent("2-norm", 0.1, momentum=momentum)
  mdgeom.mirror_descent("2-norm", 0.1, momentum=np.float32(0.9))  # fine


@pytest.mark.parametrize("lr", [float("nan"), np.float32("inf"), jnp.asarray(-np.inf), jnp.nan])
def test_non_finite_learning_rate_raises_at_construction(lr):
  with pytest.raises(ValueError, match="learning_rate must be finite"):
    mdgeom.mirror_descent("negative_entropy", lr)


def test_complex_or_string_hyperparameters_raise_type_error():
  with pytest.raises(TypeError, match="momentum has complex dtype"):
    mdgeom.mirror_descent("2-norm", 0.1, momentum=0.5 + 0.1j)
  with pytest.raises(TypeError, match="learning_rate must be a real number"):
    mdgeom.mirror_descent("2-norm", "0.1")


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_, jnp.complex64])
def test_non_float_parameters_raise_at_init_naming_the_leaf(dtype):
  params = {"w": jnp.ones(3), "steps": jnp.ones(2, dtype)}
  with pytest.raises(TypeError, match=r"\['steps'\].*(dtype|complex)"):
    mdgeom.mirror_descent("2-norm", 0.1).init(params)


@pytest.mark.parametrize("fn,message", [
    (lambda w: -w**2 / 2, r"f''\(w\) = -1 < 0"),
    (lambda w: w**4 / 4 - w**2 / 2, "not convex"),
    (lambda w: jnp.log(jnp.cosh(w)), "bounded above"),
    (lambda w: jnp.exp(w), "bounded below"),
])
def test_invalid_user_potential_raises_at_init(fn, message):
  """Before: init passed and every step turned the weights into NaN (or a wrong value)."""
  params = {"w": jnp.array([0.3, -0.2, 1.0])}
  with pytest.raises(ValueError, match=message) as e:
    mdgeom.mirror_descent(P.potential(fn, name="mine"), 0.1).init(params)
  assert "'mine'" in str(e.value) and "['w']" in str(e.value)


def bare_state(params):
  """A state made without init, to reach `update` with what init would reject."""
  return mdgeom.MirrorDescentState(count=jnp.zeros([], jnp.int32), momentum=None)


LOGCOSH = P.potential(lambda w: jnp.log(jnp.cosh(w)), name="logcosh", mirror=jnp.tanh,
                      hessian=lambda w: 1 / jnp.cosh(w) ** 2, inverse=jnp.arctanh)
CONCAVE = P.potential(lambda w: -w**2 / 2, name="concave")


@pytest.mark.parametrize("pot,lr,grad,params,message", [
    ("2-norm", 0.1, [1.0, np.nan, 1.0], [1.0, 2.0, 3.0], "gradient there is nan"),
    ("negative_entropy", 100.0, [-1.0, 1.0, 1.0], [1.0, 2.0, 3.0], "overflows float32"),
    ("2-norm", optax.constant_schedule(np.nan), [1.0, 1.0, 1.0], [1.0, 2.0, 3.0],
     "learning rate is nan"),
    (LOGCOSH, 10.0, [1.0, 1.0, 1.0], [0.5, 0.2, 0.1], "outside the range of f'"),
    (CONCAVE, 0.1, [1.0, 1.0, 1.0], [0.5, 0.2, 0.1], "not convex"),
])
def test_check_finite_names_the_cause(pot, lr, grad, params, message):
  tx = mdgeom.mirror_descent(pot, lr, check_finite=True)
  params = {"layer": jnp.asarray(params)}
  grads = {"layer": jnp.asarray(grad)}
  with pytest.raises(ValueError, match=message) as e:
    tx.update(grads, bare_state(params), params)
  assert "parameters at ['layer']" in str(e.value) and "step 0" in str(e.value)
  # without the check the same step is silently non-finite (or, non-convex, silently wrong)
  u, _ = mdgeom.mirror_descent(pot, lr).update(grads, bare_state(params), params)
  if pot is not CONCAVE:
    assert not np.all(np.isfinite(u["layer"]))


def test_check_finite_under_jit_raises_through_the_callback():
  tx = mdgeom.mirror_descent(LOGCOSH, 10.0, check_finite=True)
  params = jnp.array([0.5, 0.2])
  step = jax.jit(tx.update)
  u, _ = step(jnp.array([0.01, 0.01]), bare_state(params), params)  # a fine step passes
  assert np.all(np.isfinite(u))
  with pytest.raises(Exception, match="outside the range of f'") as e:
    jax.block_until_ready(step(jnp.array([1.0, 1.0]), bare_state(params), params))
  assert isinstance(e.value, (RuntimeError, ValueError))


def test_check_finite_does_not_change_valid_steps():
  params, x, y = problem(7)
  a = run(mdgeom.mirror_descent("hypentropy:0.5", 0.1, 0.9), params, x, y, 3)
  b = run(mdgeom.mirror_descent("hypentropy:0.5", 0.1, 0.9, check_finite=True), params, x, y, 3)
  jax.tree.map(np.testing.assert_array_equal, a[-1], b[-1])


def test_gradient_tree_shape_and_dtype_mismatch_raise():
  params = {"w": jnp.ones(3), "b": jnp.ones(1)}
  tx = mdgeom.mirror_descent("2-norm", 0.1)
  state = tx.init(params)
  with pytest.raises(ValueError, match=r"shape mismatch: gradients at \['w'\] have shape \(3, 1\)"):
    tx.update({"w": jnp.ones((3, 1)), "b": jnp.ones(1)}, state, params)  # would broadcast
  with pytest.raises(ValueError, match="tree does not match"):
    tx.update({"w": jnp.ones(3)}, state, params)
  with pytest.raises(TypeError, match=r"gradients at \['b'\] has complex dtype"):
    tx.update({"w": jnp.ones(3), "b": jnp.ones(1, jnp.complex64)}, state, params)


def test_check_finite_helper_after_training():
  params = {"w": jnp.array([1.0, 2.0]), "b": jnp.array([0.5])}
  tx = mdgeom.mirror_descent("negative_entropy", 0.1, momentum=0.9)
  state = tx.init(params)
  mdgeom.optim.check_finite(params, state, potential="negative_entropy")  # all fine
  bad_state = state._replace(momentum={"w": jnp.array([np.nan, 0.0]), "b": jnp.zeros(1)})
  with pytest.raises(mdgeom.optim.NonFiniteError, match=r"opt_state.momentum\['w'\].*1 NaN"):
    mdgeom.optim.check_finite(params, bad_state)
  with pytest.raises(ValueError, match=r"params\['b'\] contain 0 NaN and 1 Inf"):
    mdgeom.optim.check_finite({"w": params["w"], "b": jnp.array([np.inf])})
  with pytest.raises(P.SignFlipError, match=r"params\['w'\] have 1 exact zeros"):
    mdgeom.optim.check_finite({"w": jnp.array([0.0, 1.0])}, potential="negative_entropy")
  with pytest.raises(TypeError, match="outside jax.jit"):
    jax.jit(lambda p: mdgeom.optim.check_finite(p))(params)
