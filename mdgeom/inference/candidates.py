"""Candidate geometries and their dual changes.

Candidates are Potential objects throughout: names ("2.5-norm", "negative_entropy",
"hypentropy:0.1"), user potentials ("package.module:function") and Potential objects are resolved
once, and every later step holds the object itself, never a name to look up again. The p-norm
and hypentropy families are recognised by identity with the cached built-ins, so their dual
changes are computed for many parameters at once (vmap over p or beta).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mdgeom import analysis
from mdgeom import potentials as potentials_lib
from mdgeom.inference.io import InferenceError

Potential = potentials_lib.Potential
P_LIMIT = 8.0  # the p scan grows past its upper end (when the best p sits there) up to this
_PNORM = re.compile(r"^([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)-norm$")
_HYP = re.compile(r"^hypentropy:(.+)$")
CHUNK = 8  # candidates whose changes are held in memory at once


def pnorm_p(pot: Potential) -> float | None:
  """p when `pot` is the built-in p-norm, else None (a user's potential named "2-norm" is not)."""
  m = _PNORM.match(pot.name)
  if m and float(m.group(1)) > 1 and potentials_lib.pnorm(float(m.group(1))) is pot:
    return float(m.group(1))
  return None


def hypentropy_beta(pot: Potential) -> float | None:
  m = _HYP.match(pot.name)
  if m:
    try:
      beta = float(m.group(1))
    except ValueError:
      return None
    if beta > 0 and potentials_lib.hypentropy(beta) is pot:
      return beta
  return None


def family(pot: Potential) -> str:
  if pot.name == "negative_entropy" and pot is potentials_lib.negative_entropy():
    return "negative_entropy"
  if pnorm_p(pot) is not None:
    return "pnorm"
  if hypentropy_beta(pot) is not None:
    return "hypentropy"
  return "other"


def label(pot: Potential) -> str:
  """Short label: NE, 2.5 (p-norm), h:0.01 (hypentropy), or the potential's name."""
  f = family(pot)
  if f == "negative_entropy":
    return "NE"
  if f == "pnorm":
    return f"{pnorm_p(pot):g}"
  if f == "hypentropy":
    return f"h:{hypentropy_beta(pot):.3g}"
  return pot.name


def pnorm_grid(p_min: float, p_max: float, p_step: float) -> list[float]:
  if not (np.isfinite(p_min) and np.isfinite(p_max) and np.isfinite(p_step)):
    raise InferenceError("p-min, p-max and p-step must be finite numbers.")
  if p_min <= 1:
    raise InferenceError(f"p-min = {p_min:g}: a p-norm potential needs p > 1.")
  if p_step <= 0:
    raise InferenceError(f"p-step = {p_step:g}: the step of the p scan must be positive.")
  if p_max < p_min:
    raise InferenceError(f"p-max = {p_max:g} is below p-min = {p_min:g}.")
  n = int(np.floor((p_max - p_min) / p_step + 1e-9)) + 1
  if n > 2000:
    raise InferenceError(f"the p scan {p_min:g}..{p_max:g} in steps of {p_step:g} has {n} "
                         "points; use a coarser --p-step.")
  return [round(p_min + i * p_step, 6) for i in range(n)]


def default_betas(w0) -> list[float]:
  """Hypentropy's beta is in weight units: the median |w0| times 10^-2 ... 10^1 (small beta:
  close to negative entropy; large: close to the 2-norm)."""
  scale = float(np.median(np.abs(w0))) if w0 is not None and np.size(w0) else 1.0
  scale = scale if scale > 0 and np.isfinite(scale) else 1.0
  return [float(f"{b:.3g}") for b in scale * np.logspace(-2, 1, 7)]


def default_candidates(w0=None, *, p_min: float = 1.1, p_max: float = 4.0, p_step: float = 0.05,
                       betas: Sequence[float] | None = None) -> list[Potential]:
  """Negative entropy, the p-norms p_min..p_max, hypentropy over `betas`, and every potential
  registered with `mdgeom.potentials.register`."""
  pots = [potentials_lib.negative_entropy()]
  pots += [potentials_lib.pnorm(p) for p in pnorm_grid(p_min, p_max, p_step)]
  for b in default_betas(w0) if betas is None else betas:
    pots.append(_hypentropy(b))
  pots += [potentials_lib.get(n) for n in potentials_lib.registered_names()]
  return dedupe(pots)


def _hypentropy(beta) -> Potential:
  try:
    return potentials_lib.hypentropy(float(beta))
  except (TypeError, ValueError) as e:
    raise InferenceError(f"hypentropy beta {beta!r}: {e}") from None


def dedupe(pots: Iterable[Potential]) -> list[Potential]:
  out, seen = [], set()
  for p in pots:
    if id(p) not in seen:
      seen.add(id(p))
      out.append(p)
  return out


def resolve(candidates: Iterable) -> list[Potential]:
  """Potential objects for names, user potentials ("module:function") and Potentials."""
  out = []
  for c in candidates:
    try:
      # a Potential object is checked like a name (names of user potentials are checked when
      # imported; built-in names need no check)
      out.append(potentials_lib.checked(c) if isinstance(c, potentials_lib.Potential)
                 else potentials_lib.get(c))
    except (ValueError, TypeError) as e:
      raise InferenceError(str(e)) from None
  if not out:
    raise InferenceError("no candidate potentials.")
  return dedupe(out)


@functools.partial(jax.jit, static_argnums=0)
def _batched_change(make, params, a, b):
  return jax.vmap(lambda t: analysis.dual_change_raw(make(t), a, b))(params)


@functools.partial(jax.jit, static_argnums=0)
def _single_change(pot, a, b):
  return analysis.dual_change_raw(pot, a, b)


def dual_changes(pots: Sequence[Potential], w0: np.ndarray, w: np.ndarray,
                 chunk: int = CHUNK) -> Iterator[tuple[list[int], np.ndarray]]:
  """Yields (candidate indices, float64 dual changes [k, n]) for all candidates, at most `chunk`
  at a time (memory stays O(chunk * n) for millions of synapses); p-norms and hypentropies are
  batched with vmap over their parameter."""
  groups: dict[str, list[tuple[int, float]]] = {"pnorm": [], "hypentropy": []}
  others = []
  for i, pot in enumerate(pots):
    f = family(pot)
    if f == "pnorm":
      groups["pnorm"].append((i, pnorm_p(pot)))
    elif f == "hypentropy":
      groups["hypentropy"].append((i, hypentropy_beta(pot)))
    else:
      others.append(i)
  with jax.enable_x64(True):
    a = jnp.asarray(np.ravel(w0), jnp.float64)
    b = jnp.asarray(np.ravel(w), jnp.float64)
    for key, make in (("pnorm", potentials_lib.pnorm), ("hypentropy", potentials_lib.hypentropy)):
      items = groups[key]
      for start in range(0, len(items), chunk):
        part = items[start:start + chunk]
        idx = [i for i, _ in part]
        params = np.asarray([t for _, t in part] + [part[-1][1]] * (chunk - len(part)))
        d = np.asarray(_batched_change(make, jnp.asarray(params, jnp.float64), a, b))
        yield idx, d[: len(part)]
    for i in others:
      try:
        d = np.asarray(_single_change(pots[i], a, b), np.float64)
      except Exception as e:  # a user's potential that fails on these weights
        raise InferenceError(f"candidate {pots[i].name}: its mirror map failed on these weights "
                             f"({type(e).__name__}: {e}).") from None
      yield [i], d[None]
