"""Potentials ("synaptic geometries") as pure scalar functions of one weight.

A local potential is phi(w) = sum_i f(w_i) (docs/theory.md). Everything mirror descent and the
analysis need follows from the scalar function f:

  value(w)                = sum_i f(w_i)
  mirror_map(w)_i         = f'(w_i)                      (jax.grad)
  hessian_diag(w)_i       = f''(w_i)                     (jax.jacfwd of jax.grad)
  inverse_mirror_map(y)_i = (f')^{-1}(y_i)               (closed form, else safeguarded Newton)
  bregman(w, w')          = phi(w) - phi(w') - <grad phi(w'), w - w'>          (Eq. 3)

A new potential takes three lines:

    @mdgeom.potential
    def quartic(w):
        return w**4 / 4 + w**2 / 2

Potentials defined on each half-line (negative entropy, f(w) = |w| log|w|) are
`sign_preserving`: the mirror map is invertible only on the half-line the weight lives on, so
the inverse takes the sign of the weight it came from (docs/theory.md) and mirror descent never
changes a weight's sign.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mdgeom import _checks

Array = jax.Array
ScalarFn = Callable[[Array], Array]


class SignFlipError(ValueError):
  """Weights changed sign (or reached/left zero) under a sign-preserving potential.

  This is a scientific signal as much as an error: mirror descent under such a potential
  (negative entropy, i.e. exponentiated gradient) never changes a weight's sign, so observing a
  sign flip rules the potential out for those data.
  """

  def __init__(self, message: str, n_flips: int = 0, n_zero: int = 0):
    super().__init__(message)
    self.n_flips = n_flips
    self.n_zero = n_zero


def _compute_dtype(x: Array):
  """float32 for low-precision or integer inputs (bf16, f16, int), else the input's float dtype."""
  dt = jnp.result_type(x)
  if jnp.issubdtype(dt, jnp.floating) and jnp.finfo(dt).bits >= 32:
    return dt
  return jnp.float32


def _as_float(x) -> Array:
  x = jnp.asarray(x)
  return x.astype(_compute_dtype(x)) if x.dtype != _compute_dtype(x) else x


def _elementwise(fn: ScalarFn) -> Callable[[Array], Array]:
  """Maps a scalar function over every element of an array of any shape."""
  vec = jnp.vectorize(fn)

  def apply(x):
    return vec(_as_float(x))

  return apply


@dataclasses.dataclass(frozen=True, eq=False)
class Potential:
  """A local potential phi(w) = sum_i f(w_i) built from the scalar function `fn` = f.

  Attributes:
    fn: f, a pure scalar function of one weight (strictly convex on its domain).
    name: the name `get()` accepts for built-ins, else the function's name.
    sign_preserving: f is defined on each half-line separately (e.g. |w| log|w|); weights keep
      their sign and the inverse mirror map needs it.
    closed_form_mirror / closed_form_hessian / closed_form_inverse: optional closed forms of f',
      f'' and (f')^{-1}(y, sign). When absent they come from `jax.grad`, `jax.jacfwd` and a
      safeguarded Newton solve. Built-ins provide them (tests check them against autodiff).
    closed_form_step: optional fused form of `step` (w, delta) -> (f')^{-1}(f'(w) + delta).
  """

  fn: ScalarFn
  name: str
  sign_preserving: bool = False
  closed_form_mirror: ScalarFn | None = None
  closed_form_hessian: ScalarFn | None = None
  closed_form_inverse: Callable[[Array, Array], Array] | None = None
  closed_form_step: Callable[[Array, Array], Array] | None = None
  newton_max_iter: int = 100

  def __repr__(self) -> str:
    return f"Potential({self.name!r})"

  # -- the scalar function and its derivatives --------------------------------------------------

  @functools.cached_property
  def _f(self):
    return _elementwise(self.fn)

  @functools.cached_property
  def _fprime(self):
    if self.closed_form_mirror is not None:
      return lambda x: self.closed_form_mirror(_as_float(x))
    return _elementwise(jax.grad(self.fn))

  @functools.cached_property
  def _fsecond(self):
    if self.closed_form_hessian is not None:
      return lambda x: self.closed_form_hessian(_as_float(x))
    return _elementwise(jax.jacfwd(jax.grad(self.fn)))

  def elementwise_value(self, w) -> Array:
    """f(w_i) for every element."""
    return self._f(w)

  def value(self, w) -> Array:
    """phi(w) = sum_i f(w_i)."""
    return jnp.sum(self._f(w))

  def mirror_map(self, w) -> Array:
    """grad phi(w) = f'(w) elementwise (the dual weights, Eq. 5)."""
    return self._fprime(w)

  def hessian_diag(self, w) -> Array:
    """Diagonal of the Hessian of phi, f''(w) elementwise (H in Eq. 14)."""
    return self._fsecond(w)

  def inverse_hessian_diag(self, w) -> Array:
    """1 / f''(w): the inverse Hessian of a local potential (Eq. 14; docs/theory.md)."""
    return 1.0 / self._fsecond(w)

  # -- inverse mirror map -------------------------------------------------------------------------

  def inverse_mirror_map(self, y, sign=None, *, initial_guess=None) -> Array:
    """(grad phi)^{-1}(y) elementwise (Eq. 6).

    Args:
      y: dual weights, any shape.
      sign: for sign-preserving potentials, the sign of the weight each y came from (required);
        ignored otherwise. A zero sign gives a zero weight.
      initial_guess: optional primal weights near the answer; speeds up the numerical inverse
        (mirror descent passes the current weights). Ignored by closed forms.
    """
    y = _as_float(y)
    if self.sign_preserving:
      if sign is None:
        raise ValueError(
            f"{self.name} is defined on each half-line separately, so its inverse mirror map needs "
            "the sign of the weight each dual value came from: pass sign=jnp.sign(w0)."
        )
      sign = jnp.broadcast_to(jnp.sign(jnp.asarray(sign)).astype(y.dtype), y.shape)
    if self.closed_form_inverse is not None:
      return self.closed_form_inverse(y, sign)
    if initial_guess is None:
      initial_guess = jnp.zeros_like(y)
    else:
      initial_guess = jnp.broadcast_to(_as_float(initial_guess).astype(y.dtype), y.shape)
    if sign is None:
      sign = jnp.zeros_like(y)  # unused: determined from f'(0) below
    return self._numeric_inverse(y, sign, initial_guess)

  @functools.cached_property
  def _numeric_inverse(self):
    fprime, fsecond = self._fprime, self._fsecond
    sign_preserving, max_iter = self.sign_preserving, self.newton_max_iter

    @jax.custom_jvp
    def inverse(y, sign, x0):
      return _newton_inverse(fprime, fsecond, y, sign, x0, sign_preserving, max_iter)

    @inverse.defjvp
    def _inverse_jvp(primals, tangents):
      # Implicit function theorem: d(f')^{-1}(y)/dy = 1 / f''(w).
      y, sign, x0 = primals
      w = inverse(y, sign, x0)
      return w, tangents[0] / fsecond(w)

    return inverse

  def step(self, w, delta) -> Array:
    """One mirror step in dual coordinates: (grad phi)^{-1}(grad phi(w) + delta) (Eq. 6).

    For sign-preserving potentials the result keeps the sign of `w`.
    """
    w = _as_float(w)
    delta = jnp.asarray(delta, w.dtype)
    if self.closed_form_step is not None:
      return self.closed_form_step(w, delta)
    y = self.mirror_map(w) + delta
    return self.inverse_mirror_map(y, sign=jnp.sign(w), initial_guess=w)

  # -- Bregman divergence ------------------------------------------------------------------------

  def bregman(self, w, w_ref) -> Array:
    """D_phi(w, w_ref) = phi(w) - phi(w_ref) - <grad phi(w_ref), w - w_ref>  (Eq. 3).

    Summed elementwise so that equal entries contribute exactly zero. Rounding can make an
    element a few ulps negative; those are clipped to 0 (the divergence is >= 0 exactly). For
    sign-preserving potentials the divergence between weights of different signs is +inf (the
    domain is one half-line).
    """
    w, w_ref = _as_float(w), _as_float(w_ref)
    d = self._f(w) - self._f(w_ref) - self._fprime(w_ref) * (w - w_ref)
    d = jnp.where(w == w_ref, 0.0, jnp.maximum(d, 0.0))
    if self.sign_preserving:
      d = jnp.where(jnp.sign(w) != jnp.sign(w_ref), jnp.inf, d)
    return jnp.sum(d)

  # -- validation --------------------------------------------------------------------------------

  def check_weights(self, w, what: str = "weights") -> None:
    """Raises when weights are outside the potential's domain; names `what` in the message.

    TypeError: complex (or non-numeric) weights, also when traced (dtypes are static).
    NonFiniteError (a ValueError): NaN or Inf entries. SignFlipError (a ValueError): exact zeros
    under a sign-preserving potential. Value checks run on concrete weights only.
    """
    _checks.check_real(w, what)
    _checks.check_finite(w, what)
    if self.sign_preserving and _checks.is_concrete(w):
      n_zero = int(np.sum(np.asarray(w) == 0))
      if n_zero:
        raise SignFlipError(
            f"{what} have {n_zero} exact zeros (of {np.size(w)}); {self.name} is undefined at 0 "
            "(its weights live on one half-line and never reach or leave zero). Exclude those "
            "weights (e.g. mask them out) or use a potential defined at zero.",
            n_zero=n_zero,
        )


# ----------------------------------------------------------------------------------------------
# Safeguarded Newton solve for (f')^{-1}
# ----------------------------------------------------------------------------------------------


def _newton_inverse(fprime, fsecond, y, sign, x0, sign_preserving, max_iter):
  """Solves f'(w) = y elementwise: bracketing, then Newton with geometric bisection fallback.

  Writes w = s * r with s = +-1 and r > 0. On the half-line of sign s, h(r) = s f'(s r) is
  increasing (h' = f''(s r) > 0), so we solve h(r) = s y for r in (0, inf). For potentials defined
  on the whole line, s = sign(y - f'(0)); for sign-preserving ones s is the weight's sign.
  Brackets grow by repeated squaring of the factor, and bisection uses the geometric mean, so
  |y| over hundreds of orders of magnitude costs tens of iterations, not thousands.
  """
  dtype = y.dtype
  finfo = jnp.finfo(dtype)
  if sign_preserving:
    s = sign
  else:
    s = jnp.sign(y - fprime(jnp.zeros_like(y)))
  s_safe = jnp.where(s == 0, 1.0, s).astype(dtype)
  target = s_safe * y

  def h(r):
    return s_safe * fprime(s_safe * r)

  def dh(r):
    return fsecond(s_safe * r)

  # Initial magnitude: one primal Newton step from the guess x0 (mirror descent passes the
  # current weights, so this is usually within a few ulps), else |x0|, else 1.
  x0 = x0.astype(dtype)
  w_lin = x0 + (y - fprime(x0)) / fsecond(x0)
  r_lin, r_x0 = jnp.abs(w_lin), jnp.abs(x0)
  r0 = jnp.where((r_x0 > 0) & jnp.isfinite(r_x0), r_x0, jnp.ones_like(r_x0))
  r0 = jnp.where((r_lin > 0) & jnp.isfinite(r_lin) & (jnp.sign(w_lin) == s), r_lin, r0)
  r0 = jnp.clip(r0, finfo.tiny, finfo.max)
  lo = jnp.maximum(r0 * 0.5, finfo.tiny)
  hi = jnp.minimum(r0 * 2.0, finfo.max)
  active = (s != 0) & jnp.isfinite(target)

  # Phase 1: bracket, carrying h(lo) and h(hi). While h(lo) > target the solution is below lo,
  # so lo becomes the upper end; ~(h >= target) lets NaN (f' overflowing) expand and then fail.
  def needs(lo, hi, h_lo, h_hi):
    too_high = active & (h_lo > target) & (lo > finfo.tiny)
    too_low = active & ~(h_hi >= target) & (hi < finfo.max)
    return too_high, too_low

  def bracket_cond(c):
    lo, hi, h_lo, h_hi, _, it = c
    too_high, too_low = needs(lo, hi, h_lo, h_hi)
    return jnp.any(too_high | too_low) & (it < 64)

  def bracket_body(c):
    lo, hi, h_lo, h_hi, fac, it = c
    too_high, too_low = needs(lo, hi, h_lo, h_hi)
    new_hi = jnp.where(too_high, lo, jnp.where(too_low, jnp.minimum(hi * fac, finfo.max), hi))
    new_lo = jnp.where(too_low, hi, jnp.where(too_high, jnp.maximum(lo / fac, finfo.tiny), lo))
    new_h_hi = jnp.where(too_high, h_lo, jnp.where(too_low, h(new_hi), h_hi))
    new_h_lo = jnp.where(too_low, h_hi, jnp.where(too_high, h(new_lo), h_lo))
    fac = jnp.minimum(fac * fac, jnp.asarray(finfo.max, dtype) ** 0.25)
    return new_lo, new_hi, new_h_lo, new_h_hi, fac, it + 1

  lo, hi, h_lo, h_hi, _, _ = jax.lax.while_loop(
      bracket_cond, bracket_body, (lo, hi, h(lo), h(hi), jnp.asarray(4.0, dtype), 0))
  below = active & (h_lo > target)  # solution below the smallest normal number: r = 0
  # target outside the range of f' (or f' not finite there): no solution, NaN
  above = active & ~below & ~((h_lo <= target) & (h_hi >= target))
  r = jnp.clip(r0, lo, hi)

  # Phase 2: rtsafe-style Newton, falling back to (geometric) bisection when Newton leaves the
  # bracket or does not halve the step. Steps and widths are compared as ratios: differences of
  # tiny weights are subnormal and XLA on CPU flushes those to zero.
  tol = 4.0 * finfo.eps

  def newton_cond(c):
    _, _, _, _, _, done, it = c
    return jnp.any(~done) & (it < max_iter)

  def newton_body(c):
    r, lo, hi, dx, dxold, done, it = c
    hr = h(r) - target
    d = dh(r)
    lo = jnp.where(hr < 0, r, lo)
    hi = jnp.where(hr > 0, r, hi)
    rel = hr / (d * r)  # Newton step relative to r
    newton = r * (1.0 - rel)
    # Autodiff can give f'' = +-inf or NaN where f'' under/overflows: bisect there.
    good_d = (d > 0) & jnp.isfinite(d)
    # Newton's own error estimate below tolerance: r is the root to working precision (its next
    # step may round to r itself, which must not count as leaving the bracket).
    at_root = good_d & (jnp.abs(rel) <= 2.0 * finfo.eps)
    ok = (good_d & jnp.isfinite(newton) & (newton > lo) & (newton < hi)
          & (2.0 * jnp.abs(rel) <= dxold))
    ratio = hi / lo
    mid = jnp.where(ratio > 4, jnp.sqrt(lo) * jnp.sqrt(hi), lo * (0.5 + 0.5 * ratio))
    polish = jnp.where((newton >= lo) & (newton <= hi), newton, r)
    r_new = jnp.where(at_root, polish, jnp.where(ok, newton, mid))
    step = jnp.abs(r_new / r - 1.0)
    converged = (hr == 0) | at_root | (ok & (step <= tol)) | (lo / hi >= 1.0 - tol)
    r_new = jnp.where(done | (hr == 0), r, r_new)
    return (r_new, lo, hi, jnp.where(done, dx, step), jnp.where(done, dxold, dx),
            done | converged, it + 1)

  done0 = ~active | below | above
  big = jnp.full_like(r, jnp.inf)
  r, *_ = jax.lax.while_loop(newton_cond, newton_body, (r, lo, hi, big, big, done0, 0))
  r = jnp.where(below | (s == 0), 0.0, r)
  r = jnp.where(above | ~jnp.isfinite(target), jnp.nan, r)
  return s.astype(dtype) * r


# ----------------------------------------------------------------------------------------------
# Constructors
# ----------------------------------------------------------------------------------------------


def potential(fn: ScalarFn | None = None, *, name: str | None = None,
              sign_preserving: bool = False, inverse: Callable | None = None,
              mirror: ScalarFn | None = None, hessian: ScalarFn | None = None):
  """Makes a Potential from a scalar function of one weight; usable as a decorator.

      @mdgeom.potential
      def quartic(w):
          return w**4 / 4 + w**2 / 2

      @mdgeom.potential(sign_preserving=True)   # defined on each half-line, like |w| log|w|
      def shifted_entropy(w):
          return jnp.abs(w) * jnp.log(jnp.abs(w)) + w**2

  What f must satisfy (mirror descent, Eq. 6, and the solvers, Eq. 8, rely on it):

    * strictly convex: f''(w) >= 0 everywhere and f'' > 0 except at isolated points (|w|^p / p
      with p > 2 has f''(0) = 0, which is fine), so that f' is increasing and invertible;
    * f' maps onto all reals (on each half-line if sign_preserving), so that every dual value
      f'(w) - eta g has a preimage. log cosh(w) fails this: f' = tanh only reaches (-1, 1), and
      a step that moves the dual weight past +-1 has no answer (the weight becomes NaN);
      exp(w) fails it too (f' > 0);
    * finite f, f' (and f'') at every weight in the domain; a sign-preserving potential is
      undefined at 0 and its weights never reach or cross zero.

  Construction does not check these (f is only known through evaluation). `check_potential(pot,
  w)` checks them at given weights; `mirror_descent` runs it on the parameters at `init`, and
  the solvers on w0, for potentials other than the built-ins (which satisfy them by construction).

  Args:
    fn: f(w), pure and strictly convex on its domain (each half-line if sign_preserving).
    name: defaults to the function's name.
    sign_preserving: the inverse mirror map takes the weight's sign; weights never change sign.
    inverse: optional closed-form (f')^{-1}. Called as inverse(y) or, for sign-preserving
      potentials, inverse(y, sign). Replaces the numerical Newton solve.
    mirror, hessian: optional closed forms of f' and f'' (default: jax.grad / jax.jacfwd).
  """
  def make(f):
    inv = None
    if inverse is not None:
      inv = inverse if sign_preserving else (lambda y, sign: inverse(y))
    return Potential(fn=f, name=name or getattr(f, "__name__", "potential"),
                     sign_preserving=sign_preserving, closed_form_mirror=mirror,
                     closed_form_hessian=hessian, closed_form_inverse=inv)

  return make if fn is None else make(fn)


def _signed_pow(x, q):
  """sign(x) |x|^q, with exact integer powers when q is a concrete integer."""
  if isinstance(q, (int, float)) and float(q).is_integer() and 0 <= q <= 8:
    q = int(q)
    if q == 0:
      return jnp.sign(x)
    if q % 2 == 1:
      return x ** q
    return x * jnp.abs(x) ** (q - 1) if q > 1 else jnp.sign(x)
  return jnp.sign(x) * jnp.abs(x) ** q


def _format_number(x: float) -> str:
  return f"{x:g}"


def pnorm(p) -> Potential:
  """The p-norm potential f(w) = |w|^p / p, p > 1 (docs/theory.md; p = 2 is gradient descent).

  mirror map sign(w)|w|^(p-1), inverse sign(y)|y|^(1/(p-1)), Hessian (p-1)|w|^(p-2).
  `p` may be a traced array (e.g. to vmap over a scan of p); it is validated when concrete.
  """
  if _checks.is_concrete(p):
    arr = np.asarray(p)
    if arr.shape != () or not (np.issubdtype(arr.dtype, np.integer)
                               or np.issubdtype(arr.dtype, np.floating)):
      raise TypeError(f"pnorm needs one real number p > 1, got {p!r} (type "
                      f"{type(p).__name__}).")
    p_val = float(arr)
    if not math.isfinite(p_val) or p_val <= 1.0:
      raise ValueError(f"pnorm needs a finite p > 1 (got p = {p_val}): |w|^p / p is not strictly "
                       "convex for p <= 1, so the mirror map is not invertible.")
    return _pnorm_cached(p_val)
  return _make_pnorm(p, "p-norm")


# Built-ins with concrete parameters are cached, so `get("2-norm")` twice is the same object and
# jitted functions that take the potential as a static argument compile once.
@functools.cache
def _pnorm_cached(p: float) -> Potential:
  return _make_pnorm(p, f"{_format_number(p)}-norm")


def _make_pnorm(p, name: str) -> Potential:
  def f(w):
    return jnp.abs(w) ** p / p

  return Potential(
      fn=f,
      name=name,
      closed_form_mirror=lambda w: _signed_pow(w, p - 1),
      closed_form_hessian=lambda w: (p - 1) * jnp.abs(w) ** (p - 2),
      closed_form_inverse=lambda y, sign: _signed_pow(y, 1.0 / (p - 1)),
      closed_form_step=(lambda w, d: w + d) if isinstance(p, float) and p == 2 else None,
  )


@functools.cache
def negative_entropy() -> Potential:
  """Negative entropy f(w) = |w| log|w| on each half-line (Eq. 7; docs/theory.md).

  mirror map sign(w)(log|w| + 1), inverse sign * exp(sign * y - 1), Hessian 1/|w|. Mirror descent
  with it is the exponentiated-gradient update w <- w exp(-eta sign(w) g), which the fused
  `step` uses directly (more accurate than a log/exp round trip, and zero stays zero).
  """
  def f(w):
    a = jnp.abs(w)
    return a * jnp.log(a)

  return Potential(
      fn=f,
      name="negative_entropy",
      sign_preserving=True,
      closed_form_mirror=lambda w: jnp.sign(w) * (jnp.log(jnp.abs(w)) + 1.0),
      closed_form_hessian=lambda w: 1.0 / jnp.abs(w),
      closed_form_inverse=lambda y, sign: sign * jnp.exp(sign * y - 1.0),
      closed_form_step=lambda w, d: w * jnp.exp(jnp.sign(w) * d),
  )


def hypentropy(beta) -> Potential:
  """Hyperbolic entropy (Ghai et al. 2020): f(w) = w arcsinh(w/beta) - sqrt(w^2 + beta^2).

  mirror map arcsinh(w/beta), inverse beta sinh(y), Hessian 1/sqrt(w^2 + beta^2). Moves from
  gradient descent (large beta) to exponentiated gradient (small beta) and allows sign changes.
  """
  if _checks.is_concrete(beta):
    b = float(np.asarray(beta))
    if not math.isfinite(b) or b <= 0:
      raise ValueError(f"hypentropy needs a finite beta > 0 (got beta = {b}).")
    return _hypentropy_cached(b)
  return _make_hypentropy(beta, "hypentropy")


@functools.cache
def _hypentropy_cached(beta: float) -> Potential:
  return _make_hypentropy(beta, f"hypentropy:{_format_number(beta)}")


def _make_hypentropy(beta, name: str) -> Potential:
  def f(w):
    return w * jnp.arcsinh(w / beta) - jnp.sqrt(w * w + beta * beta)

  return Potential(
      fn=f,
      name=name,
      closed_form_mirror=lambda w: jnp.arcsinh(w / beta),
      closed_form_hessian=lambda w: 1.0 / jnp.sqrt(w * w + beta * beta),
      closed_form_inverse=lambda y, sign: beta * jnp.sinh(y),
  )


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------

_REGISTRY: dict[str, Callable[[], Potential]] = {}

_PNORM_RE = re.compile(r"^(?:p=)?([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)-?norm$")


def register(name: str, factory) -> None:
  """Registers a potential (or a zero-argument factory) under `name` for `get(name)`."""
  key = name.strip().lower()
  if isinstance(factory, Potential):
    pot = factory
    factory = lambda: pot
  _REGISTRY[key] = factory


def short_label(name: str) -> str:
  """A compact label for tables and axes: "NE" for negative entropy, "2.5" for "2.5-norm"."""
  name = get(name).name if not isinstance(name, str) else name
  return "NE" if name == "negative_entropy" else name.replace("-norm", "")


def registered_names() -> list[str]:
  return sorted(_REGISTRY)


def from_import_path(spec: str) -> Potential:
  """The potential named by "package.module:attribute" (configs and the command line).

  The attribute may be a Potential, a zero-argument function returning one, or a plain scalar
  function f(w) (made into a potential with `potential`, named "module:attribute").
  """
  import importlib
  import inspect

  module_name, _, attr = spec.partition(":")
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise ValueError(f"potential {spec!r}: cannot import module {module_name!r} ({e}). Write "
                     "'package.module:function' with the module on the Python path.") from None
  obj = module
  for part in attr.split("."):
    if not hasattr(obj, part):
      raise ValueError(f"potential {spec!r}: module {module_name!r} has no attribute {attr!r}.")
    obj = getattr(obj, part)
  if isinstance(obj, Potential):
    return checked(obj, spec)
  if callable(obj):
    try:
      params = inspect.signature(obj).parameters.values()
      required = [p for p in params if p.default is p.empty
                  and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
      required = [None]
    if not required:
      pot = obj()
      if not isinstance(pot, Potential):
        raise ValueError(f"potential {spec!r}: {attr}() returned a {type(pot).__name__}, not a "
                         "Potential.")
      return checked(pot, spec)
    return checked(potential(obj, name=spec), spec)
  raise ValueError(f"potential {spec!r}: {attr!r} is a {type(obj).__name__}, not a Potential or "
                   "a function.")


def checked(pot, what: str | None = None) -> Potential:
  """`pot` (a name or Potential) after `check_potential` at the default probe weights: a user's
  potential that is concave, flat, NaN-valued or not a function of w fails here, with a
  ValueError naming it and the failed condition, before any analysis uses it."""
  label = what or (pot if isinstance(pot, str) else getattr(pot, "name", repr(pot)))
  pot = get(pot)
  try:
    check_potential(pot)
  except ValueError as e:
    raise ValueError(f"candidate {label!r} is not a usable potential: {e}") from None
  except Exception as e:  # a callable that is not a scalar function of w
    raise ValueError(f"candidate {label!r} is not a usable potential: evaluating it on weights "
                     f"failed ({type(e).__name__}: {e}).") from None
  return pot


def get(name) -> Potential:
  """Parses a potential name: "2-norm", "2.5-norm", "3.0-norm", "negative_entropy" (or "ne"),
  "hypentropy:0.1", any name given to `register`, or "package.module:function" (a user's
  potential, see `from_import_path`). A Potential is returned unchanged."""
  if isinstance(name, Potential):
    return name
  if not isinstance(name, str):
    raise TypeError(f"expected a potential name or Potential, got {type(name).__name__}")
  key = name.strip().lower()
  if key in _REGISTRY:
    return _REGISTRY[key]()
  head = name.strip().partition(":")[0]
  if ":" in name and head.lower() != "hypentropy" and re.fullmatch(r"[A-Za-z_][\w.]*", head):
    return from_import_path(name.strip())
  m = _PNORM_RE.match(key)
  if m:
    return pnorm(float(m.group(1)))
  if key.startswith("hypentropy"):
    _, _, arg = key.partition(":")
    if not arg:
      raise ValueError(f"{name!r}: hypentropy needs its beta, e.g. 'hypentropy:0.1'.")
    try:
      beta = float(arg)
    except ValueError:
      raise ValueError(f"{name!r}: cannot read beta from {arg!r}, e.g. 'hypentropy:0.1'.") from None
    return hypentropy(beta)
  raise ValueError(
      f"unknown potential {name!r}. Known: '<p>-norm' for any p > 1 (e.g. '2-norm', '2.5-norm'), "
      f"'hypentropy:<beta>', registered names {registered_names()}, and 'package.module:function' "
      "for a potential of your own."
  )


register("negative_entropy", negative_entropy)
register("negative-entropy", negative_entropy)
register("ne", negative_entropy)


def _code_digest(obj, h, seen) -> None:
  """Feeds what a function computes into the hash: bytecode, constants, referenced globals and
  closure values (recursively), so that editing a user's potential changes its fingerprint."""
  import types

  if id(obj) in seen:
    return
  seen.add(id(obj))
  if isinstance(obj, functools.partial):
    _code_digest(obj.func, h, seen)
    for a in obj.args:
      _code_digest(a, h, seen)
    return
  code = getattr(obj, "__code__", None)
  if code is None:
    h.update(repr(obj).encode() if isinstance(obj, (int, float, str, bytes, bool, tuple,
                                                    type(None))) else type(obj).__name__.encode())
    return

  def walk(c):
    h.update(c.co_code)
    h.update(repr(c.co_names).encode())
    for k in c.co_consts:
      if isinstance(k, types.CodeType):
        walk(k)
      else:
        h.update(repr(k).encode())

  walk(code)
  glb = getattr(obj, "__globals__", {})
  for name in code.co_names:
    if name in glb:
      v = glb[name]
      if isinstance(v, (int, float, str, bool)) or callable(v) and getattr(
          v, "__module__", None) == getattr(obj, "__module__", None):
        h.update(name.encode())
        _code_digest(v, h, seen)
  for cell in getattr(obj, "__closure__", None) or ():
    try:
      _code_digest(cell.cell_contents, h, seen)
    except ValueError:  # an empty cell
      pass


def fingerprint(pot) -> str:
  """A short hash of what a potential computes (its name, flags and the code of its functions).

  Caches of results keyed by a potential use this, not the name alone: a user's potential edited
  between two runs gets a new fingerprint, so results computed with the old one are not reused.
  """
  import hashlib

  pot = get(pot)
  h = hashlib.sha256()
  h.update(f"{pot.name}|{pot.sign_preserving}".encode())
  for fn in (pot.fn, pot.closed_form_mirror, pot.closed_form_hessian, pot.closed_form_inverse,
             pot.closed_form_step):
    _code_digest(fn, h, set())
  return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# Checking a potential at given weights
# ----------------------------------------------------------------------------------------------

# Weights at which `check_potential` probes a potential when none are given.
_PROBE_MAGNITUDES = np.logspace(-3, 3, 13)
# Dual offsets of the range probe beyond the largest and smallest f'(w).
_RANGE_OFFSETS = (1.0, 10.0)


def is_builtin(pot) -> bool:
  """True for the potentials this module builds (p-norms, negative entropy, hypentropy).

  Their f satisfies what `potential` documents by construction (and tests check it), so the
  library skips `check_potential` for them; user potentials are checked.
  """
  return getattr(get(pot).fn, "__module__", None) == __name__


def format_number(x) -> str:
  """A parameter as it appears in potential names and fingerprints (6 significant digits)."""
  return f"{float(x):.6g}"


@functools.lru_cache(maxsize=64)
def _jitted_maps(pot):
  """Jitted (f, f', f'') and (f')^{-1} of a potential, compiled once per input size: called
  eagerly, the Newton inverse would retrace its loops on every call."""
  def derivs(w):
    return pot.elementwise_value(w), pot.mirror_map(w), pot.hessian_diag(w)

  def inverse(y, sign):
    return pot.inverse_mirror_map(y, sign=sign if pot.sign_preserving else None)

  return jax.jit(derivs), jax.jit(pot.mirror_map), jax.jit(inverse)


def _padded(a: np.ndarray, dtype) -> Array:
  """`a` padded with copies of its first entry to a power of two (>= 8), so that the jitted
  maps compile for a few sizes only; callers read the first a.size results."""
  n = max(8, 1 << max(a.size - 1, 0).bit_length())
  return jnp.asarray(np.concatenate([a, np.full(n - a.size, a[0] if a.size else 0)]), dtype)


def potential_problem(pot, w) -> tuple[int, str] | None:
  """The first violated condition of `check_potential` as (flat index into w, description).

  None when every condition holds at the concrete weights `w` (any shape, flattened). The
  description names the condition and the values; callers add where the weight lives.
  """
  pot = get(pot)
  w = _as_float(jnp.asarray(w)).reshape(-1)
  if w.size == 0:
    return None
  dtype = w.dtype
  finfo = np.finfo(dtype)
  # Subnormal weights are skipped: XLA on CPU flushes them to zero, so f' and its inverse are
  # evaluated at 0, not at w. Indices refer to the full w.
  keep = np.flatnonzero(~((np.asarray(w) != 0) & (np.abs(np.asarray(w)) < finfo.tiny)))
  if keep.size < w.size:
    sub = potential_problem(pot, jnp.asarray(np.asarray(w)[keep], dtype))
    return None if sub is None else (int(keep[sub[0]]), sub[1])
  wn = np.asarray(w)
  n = wn.size
  derivs, mirror, inverse = _jitted_maps(pot)
  f, fp, fpp = (np.asarray(a)[:n] for a in derivs(_padded(wn, dtype)))

  # f itself may overflow to +inf for large weights (w^4 in float32); NaN means no value.
  bad = np.isnan(f) | (f == -np.inf)
  if bad.any():
    i = int(np.argmax(bad))
    return i, (f"f(w) = {format_number(f[i])} at w = {format_number(wn[i])}: the weight is outside the domain of "
               "the potential.")
  bad = ~np.isfinite(fp)
  if bad.any():
    i = int(np.argmax(bad))
    why = ("NaN: the weight is outside the domain of f', or an intermediate step of f "
           "overflows there, like cosh in log cosh" if np.isnan(fp[i]) else
           f"f' overflows {dtype.name} there (use float64 or smaller weights)")
    return i, (f"the mirror map f'(w) = {format_number(fp[i])} is not finite at w = {format_number(wn[i])} ({why}), "
               "so the mirror step (Eq. 6) has no dual weight to start from.")
  # Autodiff's f'' can be garbage where terms cancel (|w| log|w| at 1e-30 gives -inf in
  # float32), so a negative f'' counts only where f' also decreases across a small interval.
  bad = (fpp < 0) | np.isneginf(fpp)
  if bad.any():
    cand = np.flatnonzero(bad)
    h = 2.0 ** -7 * np.where(wn[cand] != 0, np.abs(wn[cand]), 1.0)
    lo, hi = (np.asarray(mirror(_padded(wn[cand] + s * h, dtype)))[:cand.size] for s in (-1, 1))
    decreasing = lo - hi > math.sqrt(finfo.eps) * (np.abs(lo) + np.abs(hi))
    bad = np.zeros_like(bad)
    bad[cand[decreasing]] = True
  if bad.any():
    i = int(np.argmax(bad))
    return i, (f"f''(w) = {format_number(fpp[i])} < 0 at w = {format_number(wn[i])}: the potential is not convex "
               "there, so f' decreases and (f')^{-1} does not exist (mirror descent needs a "
               "strictly convex f; its steps would give NaN or a wrong weight).")

  w_rt = np.asarray(inverse(_padded(fp, dtype), _padded(np.sign(wn), dtype)))[:n]
  fp_rt = np.asarray(mirror(_padded(np.where(np.isfinite(w_rt), w_rt, 0), dtype)))[:n]
  rtol = math.sqrt(finfo.eps)
  primal_ok = np.abs(w_rt - wn) <= rtol * np.abs(wn)
  dual_ok = np.abs(fp_rt - fp) <= rtol * np.abs(fp)
  # (f')^{-1}(f'(w)) may differ from w where f' underflows (|w|^p / p near 0): the dual agrees.
  # Where f' is flat at a normal (not underflowed) value, f is not strictly convex.
  flat = ~primal_ok & dual_ok & (np.abs(fp) >= finfo.tiny / finfo.eps)
  bad = ~np.isfinite(w_rt) | (~primal_ok & ~dual_ok) | flat
  if bad.any():
    i = int(np.argmax(bad))
    why = ("f' takes the same value at both, so f is not strictly convex there" if flat[i]
           else "the inverse mirror map (a closed form passed as inverse=, or the Newton solve) "
                "does not invert f' there")
    return i, (f"(f')^{{-1}}(f'(w)) = {format_number(w_rt[i])} differs from w = {format_number(wn[i])} "
               f"(f'(w) = {format_number(fp[i])}): {why}.")

  # Range: probe beyond the largest and the smallest dual weight (per half-line when
  # sign-preserving). Where the inverse gives NaN there, f' does not reach the probe value y,
  # unless the inverse merely overflowed (log-like f' near the dtype's largest weight): a probe
  # counts only if f' at the farthest weight representable (with f' finite) stays short of y.
  groups = [(np.ones_like(wn, bool), 0.0)]
  if pot.sign_preserving:
    groups = [(wn > 0, 1.0), (wn < 0, -1.0)]
  ys, signs, origin = [], [], []
  for member, s in groups:
    if not member.any():
      continue
    idx = np.flatnonzero(member)
    for i, direction in ((idx[np.argmax(fp[idx])], 1.0), (idx[np.argmin(fp[idx])], -1.0)):
      for offset in _RANGE_OFFSETS:
        y = fp[i] + direction * offset
        if np.isfinite(y):
          ys.append(y)
          signs.append(s)
          origin.append((i, direction, s))
  if not ys:
    return None
  w_y = np.asarray(inverse(_padded(np.asarray(ys), dtype), _padded(np.asarray(signs), dtype)))
  for k in np.flatnonzero(np.isnan(w_y[:len(ys)])):
    i, direction, s = origin[k]
    w_far, fp_far, at_limit = _farthest_dual(pot, direction, s, dtype)
    if fp_far is None or (fp_far >= ys[k] if direction > 0 else fp_far <= ys[k]):
      continue
    side, cmp = ("above", "below") if direction > 0 else ("below", "above")
    bounded = (f"within {dtype.name} (whose weights end at {format_number(w_far)}), f' stays {cmp} "
               f"f'({format_number(w_far)}) = {format_number(fp_far)}" if at_limit else
               f"f' is bounded {side}: it stays {cmp} f'({format_number(w_far)}) = {format_number(fp_far)}")
    return int(i), (
        f"{bounded}, so no weight has f'(w) = {format_number(ys[k])} (f'(w) {'+' if direction > 0 else '-'} "
        f"{format_number(abs(ys[k] - fp[i]))} at w = {format_number(wn[i])}): a mirror step that moves the dual "
        "weight there has no answer and turns the weight into NaN. Mirror descent needs f' to "
        "map onto all reals (log cosh, whose f' = tanh stays in (-1, 1), does not): use a "
        "potential with an unbounded derivative"
        + ("." if pot.sign_preserving else
           ", or pass sign_preserving=True if it lives on each half-line separately."))
  return None


def _farthest_dual(pot, direction, sign, dtype):
  """(w, f'(w), moving) at the representable weight farthest in the direction in which f' grows
  (direction +1) or falls (-1), among magnitudes down from the dtype's largest (up from its
  smallest normal number, towards zero on a half-line) where f' is finite; moving: w is the
  dtype's limit and f' still changes there. (None, None, False) if f' is nowhere finite.
  """
  finfo = np.finfo(dtype)
  big = float(finfo.max) * np.logspace(0, 1 - np.log10(float(finfo.max)), 64)
  small = float(finfo.tiny) * np.logspace(0, -3 - np.log10(float(finfo.tiny)), 64)
  if sign == 0:
    mags, s = big, direction
  elif sign * direction > 0:  # along the half-line away from zero
    mags, s = big, sign
  else:  # towards zero
    mags, s = small, sign
  w = jnp.asarray(s * mags, dtype)
  fp = np.asarray(_jitted_maps(pot)[1](w))
  finite = np.flatnonzero(np.isfinite(fp))
  if not finite.size:
    return None, None, False
  k = int(finite[0])
  # Still moving at the dtype's limit (log-like growth): the probe value may be out of reach
  # only because the weight it needs is not representable.
  moving = k == 0 and finite.size > 1 and fp[finite[1]] != fp[k]
  return float(np.asarray(w)[k]), float(fp[k]), bool(moving)


def check_potential(pot, w=None, what: str = "weights") -> None:
  """Checks at the weights `w` what mirror descent and the solvers need of a potential.

  At every entry of `w` (default: +-10^-3 ... 10^3 and, unless sign-preserving, 0):

    1. w is in the domain (finite, real, nonzero if sign-preserving; `Potential.check_weights`);
    2. f(w) is not NaN (+inf from overflow is allowed) and f'(w) is finite;
    3. f''(w) >= 0 (convexity; f'' = 0 at isolated points such as 0 for |w|^3 / 3 is fine);
    4. (f')^{-1}(f'(w)) = w to sqrt(eps) (f' is invertible there: strict convexity, and a
       closed-form `inverse=` that matches f');
    5. f' reaches beyond the dual weights: (f')^{-1}(f'(w) +- c), c = 1, 10, at the largest and
       smallest f'(w) exists (f' onto the reals; log cosh, exp and -log fail).

  These are checks at points, not proofs: a potential can pass them and fail elsewhere.
  Non-jitted; traced weights are skipped. Runs in the weights' precision (float32 unless they
  are float64 with x64 enabled).

  Raises:
    TypeError: complex weights. NonFiniteError, SignFlipError: condition 1 (both ValueErrors).
    ValueError: conditions 2-5, naming the potential, the condition and `what[index]`.
  """
  pot = get(pot)
  if w is None:
    mags = _PROBE_MAGNITUDES
    w = np.concatenate([-mags[::-1], mags] if pot.sign_preserving else [-mags[::-1], [0.0], mags])
  if not _checks.is_concrete(w):
    return
  w = _checks.as_real_array(w, what) if not isinstance(w, jax.Array) else w
  pot.check_weights(w, what)
  problem = potential_problem(pot, w)
  if problem is not None:
    i, message = problem
    index = np.unravel_index(i, np.shape(w)) if np.ndim(w) else ()
    where = f"{what}[{', '.join(str(int(k)) for k in index)}]" if index else what
    raise ValueError(f"potential {pot.name!r} fails at {where}: {message}")
