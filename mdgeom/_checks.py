"""Input validation shared by the library.

The maths in mdgeom is pure and jit-able, so it cannot raise on values. The checks here run on
concrete (non-traced) inputs at the library's entry points and turn bad values into errors that
name the problem; under `jax.jit` they are skipped and the maths returns NaN/inf as IEEE says.
Checks on dtypes and shapes (`check_real`, `check_float_dtype`, `check_same_shape`) also work on
tracers: those are known while tracing.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


class NonFiniteError(ValueError):
  """Values that must be finite hold NaN or Inf (a diverged run, or a missing value upstream).

  A ValueError, so code catching ValueError keeps working; the message names the values (the
  argument or the parameter's tree path), how many entries are bad and, where it can tell, why.
  """


def is_concrete(x: Any) -> bool:
  """True when `x` holds values (not a tracer inside jit/vmap/grad)."""
  return not isinstance(x, jax.core.Tracer)


def _dtype_of(x: Any):
  """The dtype of an array, tracer or scalar without copying it (None for non-numeric objects)."""
  dt = getattr(x, "dtype", None)
  if dt is not None:
    return np.dtype(dt)
  try:
    return np.asarray(x).dtype
  except (ValueError, TypeError):  # ragged nested lists and the like
    return None


def check_real(x: Any, what: str) -> None:
  """Raises TypeError naming `what` when `x` is complex or not numbers at all (strings, objects).

  NumPy and JAX cast complex to real by dropping the imaginary part (with at most a warning), so
  without this check a complex input gives a silently wrong answer. Works on tracers (dtypes are
  static). Booleans and integers pass: they are real numbers.
  """
  dt = _dtype_of(x)
  if dt is None:
    raise TypeError(f"{what} is not an array of numbers (got a {type(x).__name__} that NumPy "
                    "cannot turn into one: ragged nested lists?).")
  # jnp.issubdtype knows bfloat16 and the other ml_dtypes floats; np.issubdtype does not.
  if jnp.issubdtype(dt, jnp.complexfloating):
    raise TypeError(
        f"{what} has complex dtype {dt}; mdgeom works with real numbers and would silently drop "
        "the imaginary part. Pass its real part (.real) if the imaginary part is rounding noise, "
        "or split real and imaginary parts into separate real entries.")
  if not (jnp.issubdtype(dt, jnp.number) or jnp.issubdtype(dt, jnp.bool_)) or dt.kind == "m":
    raise TypeError(f"{what} has dtype {dt}; expected real numbers (float, int or bool).")


def check_float_dtype(x: Any, what: str, needs: str) -> None:
  """Raises TypeError naming `what` and its dtype unless `x` holds floating-point numbers.

  `needs` says why floats are needed (completes "... need floating-point values: <needs>").
  """
  check_real(x, what)
  dt = _dtype_of(x)
  if not jnp.issubdtype(dt, jnp.floating):
    raise TypeError(f"{what} have dtype {dt}; {needs}")


def as_real_array(x: Any, what: str) -> np.ndarray:
  """`np.asarray(x)` for a concrete real input, with errors that name `what` (check_real)."""
  try:
    a = np.asarray(x)
  except (ValueError, TypeError) as e:  # ragged nested sequences
    raise ValueError(f"{what} cannot be read as an array ({e}); pass a rectangular array of real "
                     "numbers.") from e
  check_real(a, what)
  return a


def check_finite(x: Any, what: str) -> None:
  """Raises NonFiniteError (a ValueError) naming `what` when a concrete `x` has NaN or Inf."""
  if not is_concrete(x):
    return
  a = np.asarray(x)
  if not jnp.issubdtype(a.dtype, jnp.inexact):
    return
  if not np.issubdtype(a.dtype, np.inexact):  # bfloat16 & co: NumPy's isnan needs a float32 copy
    a = a.astype(np.float32)
  bad = ~np.isfinite(a)
  if bad.any():
    n_nan = int(np.isnan(a).sum())
    n_inf = int(bad.sum()) - n_nan
    first = np.unravel_index(int(np.argmax(bad)), a.shape) if a.ndim else ()
    where = f" (first at index {tuple(int(i) for i in first)})" if a.ndim else ""
    raise NonFiniteError(
        f"{what} contain {n_nan} NaN and {n_inf} Inf entries (of {a.size}){where}; mdgeom needs "
        "finite values (a diverged run or a missing value upstream?)."
    )


def real_scalar(x: Any, what: str, *, finite: bool = True) -> float:
  """A concrete real scalar as a Python float, with TypeError/ValueError naming `what`.

  Accepts Python numbers, NumPy scalars and 0-d (also JAX) arrays; rejects complex numbers,
  strings, non-scalar arrays and (with finite=True) NaN and +-Inf.
  """
  if isinstance(x, (str, bytes)):
    raise TypeError(f"{what} must be a real number, got the string {x!r}.")
  check_real(x, what)
  if np.ndim(x) != 0:
    raise ValueError(f"{what} must be a scalar, got an array of shape {np.shape(x)}.")
  v = float(np.asarray(x))
  if finite and not math.isfinite(v):
    raise ValueError(f"{what} must be finite, got {v}.")
  return v


def check_same_shape(a: Any, b: Any, what_a: str, what_b: str) -> None:
  sa, sb = np.shape(a), np.shape(b)
  if sa != sb:
    raise ValueError(f"shape mismatch: {what_a} has shape {sa} but {what_b} has shape {sb}.")


def first_items(items: list, limit: int, sep: str, what: str = "") -> str:
  """The first `limit` items joined by `sep`, and how many more there are (for error messages
  that list offending entries)."""
  more = f"{sep}... and {len(items) - limit} more{what}" if len(items) > limit else ""
  return sep.join(items[:limit]) + more
