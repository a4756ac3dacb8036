"""Potentials: closed forms against autodiff, inverse round trips, Bregman invariants, errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import optimize

import mdgeom
from mdgeom import potentials as P

BUILTINS = [P.pnorm(1.1), P.pnorm(1.5), P.pnorm(2.0), P.pnorm(2.5), P.pnorm(3.0), P.pnorm(4.2),
            P.negative_entropy(), P.hypentropy(0.1), P.hypentropy(1.0), P.hypentropy(10.0)]


def autodiff_only(pot):
  """The same potential with every closed form removed: mirror, Hessian and inverse from f."""
  return dataclasses.replace(pot, closed_form_mirror=None, closed_form_hessian=None,
                             closed_form_inverse=None, closed_form_step=None)


def tol(dtype):
  return 2e-5 if dtype == "float32" else 1e-12


def weights(dtype, n=257, seed=0, low=1e-3, high=1e2):
  rng = np.random.default_rng(seed)
  mag = np.exp(rng.uniform(np.log(low), np.log(high), n))
  return jnp.asarray(mag * rng.choice([-1.0, 1.0], n), dtype)


@pytest.mark.parametrize("pot", BUILTINS, ids=lambda p: p.name)
def test_closed_forms_equal_autodiff(pot, dtype):
  w = weights(dtype)
  auto = autodiff_only(pot)
  np.testing.assert_allclose(pot.mirror_map(w), auto.mirror_map(w), rtol=tol(dtype))
  np.testing.assert_allclose(pot.hessian_diag(w), auto.hessian_diag(w), rtol=tol(dtype))
  # and against jax.hessian of the summed potential (a dense matrix: keep it small)
  dense = jax.hessian(pot.value)(w[:16])
  np.testing.assert_allclose(jnp.diag(dense), pot.hessian_diag(w[:16]), rtol=tol(dtype))
  np.testing.assert_allclose(dense - jnp.diag(jnp.diag(dense)), 0.0, atol=0)
  np.testing.assert_allclose(jax.grad(pot.value)(w), pot.mirror_map(w), rtol=tol(dtype))


@pytest.mark.parametrize("pot", BUILTINS, ids=lambda p: p.name)
def test_inverse_round_trip_closed_and_numeric(pot, dtype):
  w = weights(dtype)
  sign = jnp.sign(w)
  y = pot.mirror_map(w)
  for variant in (pot, autodiff_only(pot)):
    back = variant.inverse_mirror_map(y, sign=sign)
    assert back.dtype == w.dtype
    # the inverse is as accurate as y allows: relative error ~ eps * |y f''(w) / f'(w)| ...
    np.testing.assert_allclose(variant.mirror_map(back), y, rtol=8 * tol(dtype),
                               atol=8 * tol(dtype))


@given(hnp.arrays(np.float64, st.integers(1, 40),
                  elements=st.floats(1e-4, 1e4).map(float)),
       hnp.arrays(np.int8, 40, elements=st.sampled_from([-1, 1])),
       st.sampled_from(BUILTINS))
def test_round_trip_property(mag, signs, pot):
  w = jnp.asarray(mag * signs[:mag.size], jnp.float32)
  back = pot.inverse_mirror_map(pot.mirror_map(w), sign=jnp.sign(w))
  np.testing.assert_allclose(back, w, rtol=3e-4 if pot.name == "1.1-norm" else 3e-5)


@pytest.mark.parametrize("p", [1.3, 1.5, 3.0, 4.0, 6.0])
def test_numeric_inverse_many_orders_of_magnitude(p, dtype):
  """|y| over 60 orders of magnitude (f32) / 200 (f64), both signs, against the closed form."""
  span = 30 if dtype == "float32" else 100
  # keep w = |y|^(1/(p-1)) inside the normal range of the dtype
  lim = min(span, 0.9 * (37 if dtype == "float32" else 300) * (p - 1))
  y = jnp.asarray(np.concatenate([-np.logspace(-lim, lim, 61), [0.0], np.logspace(-lim, lim, 61)]),
                  dtype)
  closed = P.pnorm(p)
  numeric = P.potential(lambda w: jnp.abs(w) ** p / p)
  np.testing.assert_allclose(numeric.inverse_mirror_map(y), closed.inverse_mirror_map(y),
                             rtol=10 * tol(dtype) / (p - 1), atol=0)


def test_numeric_inverse_user_quartic_against_float64_roots():
  @mdgeom.potential
  def quartic(w):
    return w**4 / 4 + w**2 / 2

  y = np.concatenate([-np.logspace(-30, 30, 31), np.logspace(-30, 30, 31)])
  w = np.asarray(quartic.inverse_mirror_map(jnp.asarray(y, jnp.float32)), np.float64)
  # Independent reference: Brent's method in float64 on w^3 + w - y.
  # |root| <= min(|y|, |y|^(1/3)) brackets it.
  b = 1.01 * np.minimum(np.abs(y), np.cbrt(np.abs(y)))
  ref = np.array([optimize.brentq(lambda x, t=t: x**3 + x - t, -bi, bi, xtol=1e-300, rtol=1e-15,
                                  maxiter=1000) for t, bi in zip(y, b)])
  np.testing.assert_allclose(w, ref, rtol=3e-7)  # 2.5 ulps


def test_sign_preserving_user_potential_matches_negative_entropy(dtype):
  user_ne = P.potential(lambda w: jnp.abs(w) * jnp.log(jnp.abs(w)), sign_preserving=True)
  ne = P.negative_entropy()
  y = jnp.asarray(np.linspace(-60, 60, 121), dtype)
  for s in (1.0, -1.0):
    np.testing.assert_allclose(user_ne.inverse_mirror_map(y, sign=s),
                               ne.inverse_mirror_map(y, sign=s), rtol=20 * tol(dtype))
  w = weights(dtype)
  np.testing.assert_allclose(user_ne.mirror_map(w), ne.mirror_map(w), rtol=tol(dtype))


def test_negative_entropy_keeps_the_sign():
  ne = P.negative_entropy()
  y = jnp.array([-3.0, 0.0, 5.0])
  np.testing.assert_array_less(0.0, ne.inverse_mirror_map(y, sign=1.0))
  np.testing.assert_array_less(ne.inverse_mirror_map(y, sign=-1.0), 0.0)
  # the closed form in docs/theory.md: sign(w) exp(sign(w) y - 1)
  np.testing.assert_allclose(ne.inverse_mirror_map(y, sign=-1.0), -np.exp(-np.asarray(y) - 1),
                             rtol=1e-6)
  with pytest.raises(ValueError, match="sign"):
    ne.inverse_mirror_map(y)


def test_closed_form_inverse_override_is_used():
  calls = []

  def inverse(y):
    calls.append(1)
    return jnp.cbrt(y)

  cube = P.potential(lambda w: jnp.abs(w) ** 4 / 4, inverse=inverse, name="cube")
  y = jnp.array([-8.0, 1.0, 27.0])
  np.testing.assert_allclose(cube.inverse_mirror_map(y), [-2.0, 1.0, 3.0], rtol=1e-6)
  assert calls


@given(hnp.arrays(np.float64, 12, elements=st.floats(0.01, 50.0)),
       hnp.arrays(np.float64, 12, elements=st.floats(0.01, 50.0)),
       st.sampled_from(BUILTINS))
def test_bregman_nonnegative_and_zero_only_at_reference(a, b, pot):
  with jax.enable_x64(True):
    w, w_ref = jnp.asarray(a), jnp.asarray(b)
    d = float(pot.bregman(w, w_ref))
    assert d >= 0.0
    assert float(pot.bregman(w, w)) == 0.0
    if np.max(np.abs(a - b) / np.maximum(a, b)) > 1e-3:
      assert d > 0.0


def test_bregman_closed_forms():
  rng = np.random.default_rng(1)
  with jax.enable_x64(True):
    w, wr = jnp.asarray(rng.uniform(0.1, 2, 50)), jnp.asarray(rng.uniform(0.1, 2, 50))
    np.testing.assert_allclose(P.pnorm(2).bregman(w, wr), 0.5 * np.sum((w - wr) ** 2), rtol=1e-12)
    kl = np.sum(w * np.log(w / wr) - w + wr)  # generalised KL divergence
    np.testing.assert_allclose(P.negative_entropy().bregman(w, wr), kl, rtol=1e-10)
    assert P.negative_entropy().bregman(w, -wr) == jnp.inf  # different half-lines


def test_transformations_jit_vmap_grad():
  pot = P.pnorm(3.0)
  numeric = autodiff_only(pot)
  x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 5, 3)), jnp.float32)
  for p in (pot, numeric):
    np.testing.assert_allclose(jax.jit(p.mirror_map)(x), pot.mirror_map(x), rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(p.inverse_mirror_map)(x), pot.inverse_mirror_map(x),
                               rtol=1e-5)
    # d/dy (f')^{-1}(y) = 1 / f''(w): through the closed form by autodiff, through the Newton
    # solve by its implicit-function JVP rule
    g = jax.grad(lambda y: jnp.sum(p.inverse_mirror_map(y)))(x)
    np.testing.assert_allclose(g, 1.0 / pot.hessian_diag(pot.inverse_mirror_map(x)), rtol=1e-4)
    assert p.value(x).shape == ()


def test_vmap_over_p():
  w = jnp.linspace(-2, 2, 11)
  ps = jnp.linspace(1.1, 3.0, 20)
  batched = jax.vmap(lambda p: P.pnorm(p).mirror_map(w))(ps)
  looped = jnp.stack([P.pnorm(float(p)).mirror_map(w) for p in ps])
  np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-7)


def test_dtypes():
  pot = P.pnorm(3.0)
  assert pot.mirror_map(jnp.ones(3, jnp.bfloat16)).dtype == jnp.float32
  assert pot.mirror_map(jnp.ones(3, jnp.int32)).dtype == jnp.float32
  with jax.enable_x64(True):
    assert pot.mirror_map(jnp.ones(3, jnp.float64)).dtype == jnp.float64
    numeric = autodiff_only(pot)
    assert numeric.inverse_mirror_map(jnp.ones(3, jnp.float64)).dtype == jnp.float64


@pytest.mark.parametrize("name,expected", [
    ("2-norm", "2-norm"), ("2.5-norm", "2.5-norm"), ("3.0-norm", "3-norm"), ("3-norm", "3-norm"),
    ("negative_entropy", "negative_entropy"), ("ne", "negative_entropy"), ("NE", "negative_entropy"),
    ("hypentropy:0.1", "hypentropy:0.1"), ("1.1-norm", "1.1-norm")])
def test_get_parses_names(name, expected):
  assert P.get(name).name == expected
  assert P.get(P.get(name).name).name == expected  # names round-trip


def test_get_pnorm_value():
  np.testing.assert_allclose(P.get("2.5-norm").mirror_map(jnp.array([4.0])), [8.0], rtol=1e-6)


@pytest.mark.parametrize("bad,match", [
    ("1-norm", "p > 1"), ("0.5-norm", "p > 1"), ("banana", "unknown potential"),
    ("hypentropy", "beta"), ("hypentropy:-1", "beta > 0"), ("hypentropy:x", "beta")])
def test_get_errors(bad, match):
  with pytest.raises(ValueError, match=match):
    P.get(bad)


def test_pnorm_rejects_p_at_most_one():
  for p in (1.0, 0.5, -2.0, float("nan"), float("inf")):
    with pytest.raises(ValueError, match="p > 1"):
      P.pnorm(p)


@pytest.mark.parametrize("bad", [1 + 2j, np.complex64(3.0), "3", [2.0, 3.0], True, None])
def test_pnorm_rejects_what_is_not_one_real_number(bad):
  # a complex p used to lose its imaginary part silently, a string to fail inside float()
  with pytest.raises(TypeError, match="one real number p > 1"):
    P.pnorm(bad)


def test_register_user_potential():
  quartic = P.potential(lambda w: w**4 / 4 + w**2 / 2, name="quartic")
  P.register("quartic", quartic)
  assert P.get("quartic") is quartic
  assert "quartic" in P.registered_names()


def test_check_weights_errors():
  ne = P.negative_entropy()
  with pytest.raises(ValueError, match="NaN"):
    ne.check_weights(jnp.array([1.0, jnp.nan]))
  with pytest.raises(ValueError, match="Inf"):
    P.pnorm(2).check_weights(jnp.array([1.0, jnp.inf]))
  with pytest.raises(P.SignFlipError, match="exact zeros") as e:
    ne.check_weights(jnp.array([1.0, 0.0, 0.0]))
  assert e.value.n_zero == 2
  P.pnorm(2).check_weights(jnp.array([1.0, 0.0]))  # zero is fine for a p-norm


def test_numeric_inverse_out_of_range_is_nan_not_garbage():
  # f'(w) = tanh-like bounded map: y outside (-1, 1) has no preimage
  bounded = P.potential(lambda w: jnp.log(jnp.cosh(w)), name="logcosh")
  out = bounded.inverse_mirror_map(jnp.array([0.5, 2.0, -3.0]))
  np.testing.assert_allclose(out[0], np.arctanh(0.5), rtol=1e-5)
  assert np.isnan(out[1]) and np.isnan(out[2])


def test_short_label():
  assert P.short_label("negative_entropy") == "NE"
  assert P.short_label("2.5-norm") == "2.5"
  assert P.short_label(P.pnorm(3.0)) == "3"
  assert P.short_label("hypentropy:0.1") == "hypentropy:0.1"


def test_user_potential_by_import_path(tmp_path, monkeypatch):
  (tmp_path / "userpots.py").write_text(
      "import mdgeom\n"
      "def quartic(w):\n  return w**4 / 4 + w**2 / 2\n"
      "@mdgeom.potential\ndef cosh_like(w):\n  return w**2 / 2 + w**4 / 12\n"
      "def factory():\n  return mdgeom.pnorm(2.5)\n"
      "NOT_A_POTENTIAL = 3\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  q = P.get("userpots:quartic")
  assert q.name == "userpots:quartic"
  np.testing.assert_allclose(q.mirror_map(np.array([0.5, -2.0])), [0.625, -10.0], rtol=1e-6)
  assert P.get("userpots:cosh_like").name == "cosh_like"
  assert P.get("userpots:factory") is P.pnorm(2.5)
  with pytest.raises(ValueError, match="cannot import module 'nosuchmodule'"):
    P.get("nosuchmodule:f")
  with pytest.raises(ValueError, match="has no attribute 'missing'"):
    P.get("userpots:missing")
  with pytest.raises(ValueError, match="not a Potential or a function"):
    P.get("userpots:NOT_A_POTENTIAL")
  assert P.get("hypentropy:0.5").name == "hypentropy:0.5"  # not an import path


def test_fingerprint_follows_the_code_not_the_name():
  a = P.potential(lambda w: w ** 4 / 4 + w ** 2 / 2, name="same")
  b = P.potential(lambda w: w ** 4 / 4 + w ** 2, name="same")
  assert P.fingerprint(a) != P.fingerprint(b)
  assert P.fingerprint("2-norm") == P.fingerprint(P.pnorm(2.0))
  assert P.fingerprint("2-norm") != P.fingerprint("3-norm")
