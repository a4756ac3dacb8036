"""Input validation shared by the library.

The maths in mdgeom is pure and jit-able, so it cannot raise on values. The checks here run on
concrete (non-traced) inputs at the library's entry points and turn bad values into errors that
name the problem; under `jax.jit` they are skipped and the maths returns NaN/inf as IEEE says.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def is_concrete(x: Any) -> bool:
  """True when `x` holds values (not a tracer inside jit/vmap/grad)."""
  return not isinstance(x, jax.core.Tracer)


def check_finite(x: Any, what: str) -> None:
  """Raises ValueError naming `what` when a concrete `x` has NaN or Inf entries."""
  if not is_concrete(x):
    return
  a = np.asarray(x)
  if not np.issubdtype(a.dtype, np.inexact):
    return
  bad = ~np.isfinite(a)
  if bad.any():
    n_nan = int(np.isnan(a).sum())
    n_inf = int(bad.sum()) - n_nan
    raise ValueError(
        f"{what} contain {n_nan} NaN and {n_inf} Inf entries (of {a.size}); "
        "mdgeom needs finite weights (a diverged run or a missing value upstream?)."
    )


def check_same_shape(a: Any, b: Any, what_a: str, what_b: str) -> None:
  sa, sb = np.shape(a), np.shape(b)
  if sa != sb:
    raise ValueError(f"shape mismatch: {what_a} has shape {sa} but {what_b} has shape {sb}.")
