"""Property: every bad input to the public maths raises the documented error, naming the problem.

Bad inputs are NaN, +-Inf, empty, constant (rank-deficient), mismatched shapes, complex and
non-float dtypes, and potentials that break what `mdgeom.potential` documents. For each, the test
checks the exception's type (TypeError for dtypes, ValueError and its subclasses NonFiniteError
and SignFlipError for values and shapes) and that the message names the argument or parameter
and what is wrong with it. Never a silent NaN, a dropped imaginary part or a frozen weight.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mdgeom
from mdgeom import potentials as P
from mdgeom.optim import NonFiniteError

N, D = 3, 8  # one problem size: the validation runs before any solve, and compiles stay few


def raises(expected_type, pattern, fn, *args, **kwargs):
  """Calls fn, asserting it raises `expected_type` with a message matching every regex."""
  with pytest.raises(expected_type) as e:
    fn(*args, **kwargs)
  message = str(e.value)
  for p in pattern if isinstance(pattern, (list, tuple)) else [pattern]:
    assert re.search(p, message), f"{p!r} not in: {message}"
  return e.value


def index_into(draw, shape):
  return tuple(draw(st.integers(0, s - 1)) for s in shape)


# ----------------------------------------------------------------------------------------------
# min_bregman_solution / linearized_solution
# ----------------------------------------------------------------------------------------------

# (argument, kind) -> how to break it; the expected error follows in `expected_solver_error`.
SOLVER_CASES = ([("X", k) for k in ("nan", "inf", "-inf", "empty", "constant", "duplicate_rows",
                                    "extra_column", "vector", "complex", "strings")]
                + [("y", k) for k in ("nan", "inf", "-inf", "empty", "extra", "matrix",
                                      "complex")]
                + [("w0", k) for k in ("nan", "inf", "-inf", "empty", "extra", "complex",
                                       "zero")])
NAMES = {"X": r"\bX\b", "y": r"\by\b", "w0": r"initial weights w0"}


def break_solver_input(draw, args, arg, kind):
  a = np.array(args[arg], dtype=np.float64)
  if kind in ("nan", "inf", "-inf", "zero"):
    a[index_into(draw, a.shape)] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf,
                                    "zero": 0.0}[kind]
  elif kind == "empty":
    a = np.zeros((0, D)) if arg == "X" else np.zeros(0)
  elif kind == "constant":
    a = np.full_like(a, draw(st.floats(-3, 3)))
  elif kind == "duplicate_rows":
    a[1] = a[0]
  elif kind == "extra_column":
    a = np.concatenate([a, np.ones((N, 1))], axis=1)
  elif kind == "extra":
    a = np.concatenate([a, [1.0]])
  elif kind == "vector":
    a = a[0]
  elif kind == "matrix":
    a = np.stack([a, a])
  elif kind == "complex":
    a = a + 1j * draw(st.floats(1e-12, 10))
  elif kind == "strings":
    a = np.full(a.shape, "1.0")
  args[arg] = a


def expected_solver_error(arg, kind, pot):
  """(type, message regexes) that `min_bregman_solution` documents for this bad input."""
  name = NAMES[arg]
  if kind == "complex":
    return TypeError, [name, "complex dtype", r"\.real"]
  if kind == "strings":
    return TypeError, [name, "dtype <U"]
  if kind in ("nan", "inf", "-inf"):
    what = "1 NaN and 0 Inf" if kind == "nan" else "0 NaN and 1 Inf"
    return NonFiniteError, [name, what]
  if kind == "empty" and arg == "X":
    return ValueError, [r"X has shape \(0, 8\)", "at least one constraint"]
  if kind == "extra_column":  # X now disagrees with w0
    return ValueError, ["shape mismatch", r"X has shape \(3, 9\)", r"w0 has shape \(8,\)"]
  if kind in ("empty", "extra", "matrix"):
    return ValueError, ["shape mismatch", rf"\b{arg} has shape"]
  if kind == "vector":
    return ValueError, [r"X must be a matrix of shape \(N, D\)"]
  if kind in ("constant", "duplicate_rows"):
    return ValueError, [r"X has rank [0-2] < N = 3", "dependent rows"]
  if kind == "zero":
    if pot.sign_preserving:
      return P.SignFlipError, [name, "1 exact zeros"]
    return ValueError, [r"inverse Hessian 1/f''\(w0\)", "not finite"]
  raise AssertionError(kind)


@given(st.data(), st.sampled_from(SOLVER_CASES),
       st.sampled_from([mdgeom.min_bregman_solution, mdgeom.linearized_solution]),
       st.sampled_from(["2-norm", "negative_entropy", "hypentropy:0.5", "3-norm"]),
       st.integers(0, 2**16))
def test_solvers_reject_bad_inputs(data, case, fn, name, seed):
  arg, kind = case
  pot = P.get(name)
  if kind == "zero" and pot.name in ("2-norm", "hypentropy:0.5"):
    kind = "nan"  # zero weights are fine there
  rng = np.random.default_rng(seed)
  args = {"X": rng.standard_normal((N, D)),
          "y": rng.standard_normal(N),
          "w0": rng.uniform(0.2, 1.5, D) * rng.choice([-1.0, 1.0], D)}
  break_solver_input(data.draw, args, arg, kind)
  expected, patterns = expected_solver_error(arg, kind, pot)
  raises(expected, patterns, fn, pot, **args)


# ----------------------------------------------------------------------------------------------
# mirror_descent: construction, init and update
# ----------------------------------------------------------------------------------------------

SCALAR_TYPES = [float, np.float32, np.float64, np.asarray, jnp.asarray]


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True).filter(
                     lambda v: not 0.0 <= v < 1.0),
                 st.sampled_from([1.0, 1.5, np.nan, np.inf, -np.inf, -1e-9])),
       st.sampled_from(SCALAR_TYPES))
def test_momentum_outside_its_range_raises_whatever_the_scalar_type(value, kind):
  with np.errstate(over="ignore"):  # 1e300 -> float32 inf: still out of range, as meant
    momentum = kind(value)
  if 0.0 <= float(np.asarray(momentum)) < 1.0:
    return  # float32 rounding made it valid (-1e-300 -> -0.0): nothing bad left to reject
  raises(ValueError, [r"momentum must be in \[0, 1\)"], mdgeom.mirror_descent, "2-norm", 0.1,
         momentum=momentum)


@given(st.sampled_from([np.nan, np.inf, -np.inf]), st.sampled_from(SCALAR_TYPES))
def test_non_finite_learning_rate_raises(value, kind):
  raises(ValueError, ["learning_rate must be finite", "nan|inf"], mdgeom.mirror_descent,
         "negative_entropy", kind(value))


@given(st.sampled_from(["momentum", "learning_rate"]),
       st.sampled_from([0.5 + 0.5j, np.complex64(0.1), "0.5", np.ones(2)]))
def test_complex_string_or_array_hyperparameters_raise(which, value):
  kwargs = {"learning_rate": 0.1, "momentum": 0.5, which: value}
  if isinstance(value, np.ndarray):
    raises(ValueError, [which, "must be a scalar"], mdgeom.mirror_descent, "2-norm", **kwargs)
  else:
    raises(TypeError, [which, "complex|real number"], mdgeom.mirror_descent, "2-norm", **kwargs)


PARAM_CASES = ["nan", "inf", "int32", "bool", "complex", "zero"]


@given(st.data(), st.sampled_from(PARAM_CASES),
       st.sampled_from(["2-norm", "negative_entropy", "hypentropy:0.3", "1.5-norm"]),
       st.integers(1, 6), st.integers(0, 2**16))
def test_init_rejects_bad_parameters_naming_the_leaf(data, kind, name, size, seed):
  pot = P.get(name)
  rng = np.random.default_rng(seed)
  w = rng.uniform(0.1, 2.0, size) * rng.choice([-1.0, 1.0], size)
  i = data.draw(st.integers(0, size - 1))
  if kind == "zero" and not pot.sign_preserving:
    kind = "inf"
  if kind in ("nan", "inf", "zero"):
    w[i] = {"nan": np.nan, "inf": -np.inf, "zero": 0.0}[kind]
    leaf = jnp.asarray(w, jnp.float32)
  else:
    leaf = jnp.asarray(w).astype({"int32": jnp.int32, "bool": jnp.bool_,
                                  "complex": jnp.complex64}[kind])
  params = {"layer": {"kernel": leaf}, "bias": jnp.ones(2)}
  where = re.escape("['layer']['kernel']")
  tx = mdgeom.mirror_descent(pot, 0.1, momentum=0.9)
  if kind in ("int32", "bool"):
    raises(TypeError, [where, f"dtype {jnp.dtype(leaf.dtype).name}", "never change"], tx.init,
           params)
  elif kind == "complex":
    raises(TypeError, [where, "complex dtype"], tx.init, params)
  elif kind == "zero":
    raises(P.SignFlipError, [where, "1 exact zeros"], tx.init, params)
  else:
    raises(NonFiniteError, [where, "NaN" if kind == "nan" else "1 Inf", f"index \\({i},\\)"],
           tx.init, params)


GRAD_CASES = ["nan", "inf", "shape", "transposed", "missing_leaf", "complex"]


@given(st.data(), st.sampled_from(GRAD_CASES),
       st.sampled_from(["2-norm", "negative_entropy", "hypentropy:0.3"]), st.integers(0, 2**16))
def test_update_rejects_bad_gradients_naming_the_leaf(data, kind, name, seed):
  rng = np.random.default_rng(seed)
  params = {"w": jnp.asarray(rng.uniform(0.1, 2.0, (2, 3)), jnp.float32),
            "b": jnp.asarray(rng.uniform(0.1, 2.0, 3), jnp.float32)}
  grads = jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), jnp.float32), params)
  tx = mdgeom.mirror_descent(name, 0.01, momentum=0.5, check_finite=True)
  state = tx.init(params)
  if kind in ("nan", "inf"):
    g = np.asarray(grads["w"]).copy()
    g[index_into(data.draw, g.shape)] = np.nan if kind == "nan" else np.inf
    grads["w"] = jnp.asarray(g)
    raises(NonFiniteError, [re.escape("parameters at ['w']"), f"gradient there is {kind}",
                            "apply_if_finite"], tx.update, grads, state, params)
  elif kind == "shape":
    grads["b"] = grads["b"][:, None]
    raises(ValueError, [re.escape("gradients at ['b'] have shape (3, 1)"), "shape mismatch"],
           tx.update, grads, state, params)
  elif kind == "transposed":
    grads["w"] = grads["w"].T
    raises(ValueError, [re.escape("gradients at ['w'] have shape (3, 2)")], tx.update, grads,
           state, params)
  elif kind == "missing_leaf":
    del grads["b"]
    raises(ValueError, ["tree does not match"], tx.update, grads, state, params)
  else:
    grads["b"] = grads["b"] * (1 + 1j)
    raises(TypeError, [re.escape("gradients at ['b']"), "complex dtype"], tx.update, grads,
           state, params)


# ----------------------------------------------------------------------------------------------
# Potentials: the built-ins' mirror maps at bad weights, and user potentials that break the rules
# ----------------------------------------------------------------------------------------------

BUILTINS = [P.pnorm(1.5), P.pnorm(2.0), P.pnorm(3.0), P.negative_entropy(), P.hypentropy(0.1),
            P.hypentropy(2.0)]


@given(st.data(), st.sampled_from(BUILTINS), st.sampled_from(["nan", "inf", "complex", "zero",
                                                             "empty"]),
       st.integers(1, 12), st.integers(0, 2**16))
def test_builtin_mirror_maps_reject_bad_weights(data, pot, kind, size, seed):
  rng = np.random.default_rng(seed)
  w = rng.uniform(0.01, 5.0, size) * rng.choice([-1.0, 1.0], size)
  i = data.draw(st.integers(0, size - 1))
  if kind == "empty":
    P.check_potential(pot, np.zeros(0), "w")  # nothing to check: valid, no error
    return
  if kind == "zero":
    w[i] = 0.0
    if not pot.sign_preserving:
      P.check_potential(pot, w, "w")  # zero is in the domain of these
      return
    raises(P.SignFlipError, [r"\bw have 1 exact zeros", "undefined at 0"], P.check_potential,
           pot, w, "w")
  elif kind == "complex":
    raises(TypeError, [r"\bw has complex dtype"], P.check_potential, pot, w + 0.5j, "w")
  else:
    w[i] = np.nan if kind == "nan" else -np.inf
    raises(NonFiniteError, [r"\bw contain", "NaN" if kind == "nan" else "1 Inf"],
           P.check_potential, pot, w, "w")


# Built once (compiled once): each breaks one documented requirement at every weight drawn.
BAD_POTENTIALS = [
    (P.potential(lambda w: -w**2 / 2, name="concave"), r"f''\(w\) = -1 < 0.*not convex"),
    (P.potential(lambda w: jnp.log(jnp.cosh(w)), name="logcosh"), r"f' is bounded (above|below)"),
    (P.potential(lambda w: 3 * jnp.log(jnp.cosh(w)), name="logcosh3"),
     r"f' is bounded (above|below)"),
    (P.potential(lambda w: jnp.exp(w) / 10, name="exp"), r"f' is bounded below"),
    (P.potential(lambda w: 3 * w, name="linear"), "not strictly convex"),
    (P.potential(lambda w: w**2 / 2, inverse=lambda y: 2 * y, name="wrong_inverse"),
     "does not invert f'"),
    (P.potential(lambda w: -jnp.log(jnp.abs(w)), sign_preserving=True, name="log_barrier"),
     r"f' is bounded (above|below)"),  # f' = -1/w: below 0 for w > 0, above 0 for w < 0
    (P.potential(lambda w: jnp.sqrt(w), name="sqrt"), r"outside the domain"),
]


@given(st.sampled_from(BAD_POTENTIALS), st.integers(1, 12), st.integers(0, 2**16),
       st.booleans())
def test_user_potentials_that_break_the_rules_are_named(case, size, seed, via_optimizer):
  pot, message = case
  rng = np.random.default_rng(seed)
  w = rng.uniform(0.05, 3.0, size) * rng.choice([-1.0, 1.0], size)
  if pot.name == "sqrt":
    w[0] = -abs(w[0])  # sqrt is undefined for negative weights
  if via_optimizer:
    raises(ValueError, [f"potential '{pot.name}' fails at {re.escape('parameters at')}", message],
           mdgeom.mirror_descent(pot, 0.1).init, {"w": jnp.asarray(w, jnp.float32)})
  else:
    raises(ValueError, [f"potential '{pot.name}' fails at w0\\[", message], P.check_potential,
           pot, w, "w0")


# ----------------------------------------------------------------------------------------------
# linearized_network_solution
# ----------------------------------------------------------------------------------------------


def tiny_net(p, x):
  return jnp.tanh(x @ p["W"]) @ p["v"]


@given(st.sampled_from(["targets_nan", "targets_complex", "targets_shape", "inputs_complex",
                        "inputs_inf", "params_complex", "params_int_only", "constant_empty"]),
       st.integers(0, 2**16))
def test_network_solution_rejects_bad_inputs(kind, seed):
  rng = np.random.default_rng(seed)
  params = {"W": rng.standard_normal((4, 6)) / 2, "v": rng.standard_normal(6) / 2}
  x, targets = rng.standard_normal((3, 4)), rng.standard_normal(3)
  call = lambda **kw: mdgeom.linearized_network_solution(
      tiny_net, kw.get("params", params), kw.get("x", x), kw.get("targets", targets), "2-norm")
  if kind == "targets_nan":
    raises(NonFiniteError, ["targets", "1 NaN"], call, targets=np.where(
        np.arange(3) == seed % 3, np.nan, targets))
  elif kind == "targets_complex":
    raises(TypeError, ["targets has complex dtype"], call, targets=targets + 1j)
  elif kind == "targets_shape":
    raises(ValueError, ["shape mismatch", "targets has shape"], call, targets=np.zeros(4))
  elif kind == "inputs_complex":
    raises(TypeError, ["inputs has complex dtype"], call, x=x * (1 + 1j))
  elif kind == "inputs_inf":
    x_bad = x.copy()
    x_bad[seed % 3, seed % 4] = np.inf
    raises(NonFiniteError, ["inputs", "1 Inf"], call, x=x_bad)
  elif kind == "params_complex":
    raises(TypeError, [re.escape("params0['v'] has complex dtype")], call,
           params={**params, "v": params["v"] + 0j})
  elif kind == "params_int_only":
    raises(ValueError, ["floating-point parameters"], call,
           params={"W": np.ones((4, 6), np.int32), "v": np.ones(6, np.int32)})
  else:
    raises(ValueError, ["no parameters"], call, params={"W": np.zeros((4, 0)), "v": np.zeros(0)})


def test_every_top_level_name_the_docs_call_exists():
  """`mdgeom.<name>(` and `` `mdgeom.<name>` `` in README.md and docs/ exist as written (a
  documented call must not fail with AttributeError)."""
  import pathlib
  import re

  import mdgeom

  root = pathlib.Path(__file__).resolve().parents[1]
  text = "\n".join(p.read_text() for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
  import importlib.util

  names = set(re.findall(r"\bmdgeom\.([a-z_][a-z0-9_]*)\(", text))
  names |= set(re.findall(r"`mdgeom\.([a-z_][a-z0-9_]*)`", text))  # named in backticks
  assert "min_bregman_solutions" in names, "the README's solver names were not found"
  missing = sorted(n for n in names if not hasattr(mdgeom, n)
                   and importlib.util.find_spec(f"mdgeom.{n}") is None)
  assert not missing, f"the docs call mdgeom.{missing} but mdgeom does not export them"
