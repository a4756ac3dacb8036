"""Mirror descent as an optax GradientTransformation.

    m_{t+1} = mu m_t + g_t                                  (heavy ball, as torch.optim.SGD / optax.sgd)
    d_t     = m_{t+1}          (or g_t + mu m_{t+1} with nesterov=True; d_t = g_t without momentum)
    w_{t+1} = (grad phi)^{-1}( grad phi(w_t) - eta_t d_t )   (Eq. 6, docs/theory.md)

The transformation returns updates = w_{t+1} - w_t, so `optax.apply_updates` gives w_{t+1}; it
composes with `optax.chain`, `optax.masked`, `optax.partition` and `optax.inject_hyperparams`.

Bad inputs. Hyperparameters are validated at construction (momentum in [0, 1), a finite real
learning rate; NumPy and concrete JAX scalars like Python floats), parameters at `init` (floating
point, finite, in the potential's domain; and, for potentials other than the built-ins, the
conditions of `potentials.check_potential` at the parameters), and gradient trees in `update`
(same tree and shapes as the parameters, real). Values inside a jitted step cannot raise, so a
step that produces NaN or Inf is caught only on request: `mirror_descent(..., check_finite=True)`
raises `NonFiniteError` naming the parameter and the cause (non-finite gradient, learning rate or
momentum buffer; f'' < 0; a dual weight outside the range of f'; overflow). To skip such steps
instead, wrap the optimizer in `optax.apply_if_finite`. After training, `check_finite(params,
opt_state)` says whether (and where) anything became NaN or Inf.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mdgeom import _checks
from mdgeom import potentials as potentials_lib

NonFiniteError = _checks.NonFiniteError

# At most this many parameter values (evenly spaced, plus each leaf's extremes) go through
# `check_potential` at init: the check is about the potential, and a sample keeps init cheap.
_POTENTIAL_CHECK_SAMPLE = 1 << 16


class MirrorDescentState(NamedTuple):
  """count: steps taken (drives a schedule); momentum: the heavy-ball buffer or None."""

  count: jax.Array
  momentum: Any


def _compute_dtype(dtype):
  # bf16/f16 parameters are updated in float32; float64 stays float64.
  return jnp.promote_types(dtype, jnp.float32)


def _is_zero(x) -> bool:
  return isinstance(x, (int, float, np.number)) and float(x) == 0.0


def _where(path, index=()) -> str:
  """'parameters at ['w'][3]' (or 'parameters[3]' when the parameters are one array)."""
  at = "".join(f"[{int(i)}]" for i in index)
  key = jax.tree_util.keystr(path)
  return f"parameters at {key}{at}" if key else f"parameters{at}"


def _check_momentum(momentum) -> None:
  """Python, NumPy and concrete JAX scalars alike: real, scalar, in [0, 1)."""
  if momentum is None or not _checks.is_concrete(momentum):
    return  # traced (inject_hyperparams under jit): a value cannot be checked
  mu = _checks.real_scalar(momentum, "momentum", finite=False)
  if not 0.0 <= mu < 1.0:
    raise ValueError(f"momentum must be in [0, 1), got {mu} (heavy-ball coefficient mu of "
                     "m <- mu m + g; mu >= 1 makes the buffer grow without bound).")


def _check_learning_rate(learning_rate) -> None:
  if callable(learning_rate) or not _checks.is_concrete(learning_rate):
    return  # a schedule is checked step by step with check_finite=True
  lr = _checks.real_scalar(learning_rate, "learning_rate", finite=False)
  if not math.isfinite(lr):
    raise ValueError(f"learning_rate must be finite, got {lr}: every step would turn the "
                     "weights into NaN.")


def _check_param_dtype(leaf, where: str) -> None:
  _checks.check_float_dtype(
      leaf, where,
      "mirror descent moves floating-point parameters only (an integer or boolean parameter "
      "would silently never change: its update rounds to 0). Cast it, e.g. "
      "jax.tree.map(lambda p: p.astype(jnp.float32), params), or leave it out of the optimizer "
      "with optax.masked / optax.partition.")


def _check_potential_at_params(pot, leaves) -> None:
  """`potentials.check_potential` at (a sample of) the concrete parameters, naming the leaf."""
  leaves = [(path, leaf) for path, leaf in leaves if _checks.is_concrete(leaf) and np.size(leaf)]
  if not leaves:
    return
  total = sum(int(np.size(leaf)) for _, leaf in leaves)
  dtype = np.float64 if any(jnp.result_type(leaf) == jnp.float64 for _, leaf in leaves) \
      and jax.config.jax_enable_x64 else np.float32
  parts, index = [], []
  for path, leaf in leaves:
    flat = np.asarray(leaf).astype(dtype).reshape(-1)
    idx = np.arange(flat.size)
    if total > _POTENTIAL_CHECK_SAMPLE:
      k = max(2, _POTENTIAL_CHECK_SAMPLE * flat.size // total)
      idx = np.unique(np.concatenate([np.linspace(0, flat.size - 1, k).astype(np.int64),
                                      [np.argmin(flat), np.argmax(flat)]]))
    parts.append(flat[idx])
    index.extend((path, leaf, int(i)) for i in idx)
  problem = potentials_lib.potential_problem(pot, jnp.asarray(np.concatenate(parts), dtype))
  if problem is None:
    return
  k, message = problem
  path, leaf, i = index[k]
  pos = np.unravel_index(i, np.shape(leaf)) if np.ndim(leaf) else ()
  raise ValueError(f"mirror_descent: potential {pot.name!r} fails at {_where(path, pos)}: "
                   f"{message} (mdgeom.potential says what a potential must satisfy.)")


# ----------------------------------------------------------------------------------------------
# check_finite: why a step is not finite
# ----------------------------------------------------------------------------------------------

# Reasons, in the order they are tested (the first that holds at an entry is reported).
_REASONS = ("lr", "grad", "direction", "param", "mirror", "nonconvex", "dual", "range", "overflow")
_NONCONVEX = _REASONS.index("nonconvex") + 1


def _leaf_diagnosis(pot, w, g, d, new_w, lr, check_convexity: bool) -> dict:
  """Per-entry reason codes (0 = fine) and the values at the first entry with the first reason.

  All in JAX (jit-able): under jit only these few scalars go to the host, and only on failure.
  """
  if w.size == 0:  # nothing can be wrong, and argmax of nothing is an error
    zero = jnp.zeros([], w.dtype)
    return {"n_bad": jnp.zeros([], jnp.int32), "code": jnp.zeros([], jnp.int32),
            "index": jnp.zeros([], jnp.int32), "w": zero, "g": zero, "d": zero, "fp": zero,
            "fpp": zero, "y": zero, "new": zero, "lr": jnp.asarray(lr)}
  fp = pot.mirror_map(w)
  y = fp - lr * d
  conditions = [jnp.broadcast_to(~jnp.isfinite(lr), w.shape), ~jnp.isfinite(g), ~jnp.isfinite(d),
                ~jnp.isfinite(w), ~jnp.isfinite(fp)]
  fpp = jnp.zeros_like(w)
  if check_convexity:
    # A negative autodiff f'' can be rounding garbage where terms cancel, so it counts only
    # where f' also decreases across a small interval around w (cf. potential_problem).
    fpp = pot.hessian_diag(w)
    h = 2.0 ** -7 * jnp.where(w != 0, jnp.abs(w), 1.0)
    lo, hi = pot.mirror_map(w - h), pot.mirror_map(w + h)
    eps = jnp.finfo(w.dtype).eps
    conditions.append(((fpp < 0) | jnp.isneginf(fpp))
                      & (lo - hi > jnp.sqrt(eps) * (jnp.abs(lo) + jnp.abs(hi))))
  else:
    conditions.append(jnp.zeros(w.shape, bool))
  conditions += [~jnp.isfinite(y), jnp.isnan(new_w), jnp.isinf(new_w)]
  code = jnp.zeros(w.shape, jnp.int32)
  for k in range(len(conditions), 0, -1):
    code = jnp.where(conditions[k - 1], k, code)
  code = code.reshape(-1)
  worst = jnp.min(jnp.where(code > 0, code, len(conditions) + 1))
  i = jnp.argmax(code == worst)
  at = lambda a: jnp.reshape(jnp.broadcast_to(a, w.shape), (-1,))[i]
  return {"n_bad": jnp.sum(code > 0), "code": worst, "index": i, "w": at(w), "g": at(g),
          "d": at(d), "fp": at(fp), "fpp": at(fpp), "y": at(y), "new": at(new_w),
          "lr": jnp.asarray(lr)}


def _reason_text(pot, r: dict, dtype_name: str) -> str:
  f = potentials_lib.format_number
  reason = _REASONS[int(r["code"]) - 1]
  w, g, d, fp, y, lr = r["w"], r["g"], r["d"], r["fp"], r["y"], r["lr"]
  if reason == "lr":
    return (f"the learning rate is {f(lr)} at this step (a schedule that returns NaN or Inf?); "
            "it must be finite.")
  if reason == "grad":
    return (f"the gradient there is {f(g)}: the loss or the data produced a non-finite gradient, "
            "not the mirror step. Find where with jax.config.update('jax_debug_nans', True), or "
            "skip such steps with optax.apply_if_finite(mirror_descent(...), "
            "max_consecutive_errors=...).")
  if reason == "direction":
    return (f"the momentum buffer makes the step direction {f(d)} although the gradient {f(g)} "
            "is finite: an earlier step put NaN or Inf into the buffer (mdgeom.optim.check_finite"
            "(params, opt_state) shows where); restart from a state before it.")
  if reason == "param":
    return (f"the parameter is already {f(w)} (an earlier step diverged, or it was loaded so).")
  if reason == "mirror":
    return (f"the mirror map f'(w) = {f(fp)} is not finite at w = {f(w)}: the weight is outside "
            f"the domain of {pot.name}, or f' overflows {dtype_name} there.")
  if reason == "nonconvex":
    return (f"f''(w) = {f(r['fpp'])} < 0 at w = {f(w)}: {pot.name} is not convex there, so the "
            "mirror step is wrong even where it is finite. Mirror descent needs a strictly convex "
            "potential (see mdgeom.potential).")
  if reason == "dual":
    return (f"the dual weight f'(w) - lr d = {f(y)} overflows {dtype_name} (w = {f(w)}, f'(w) = "
            f"{f(fp)}, lr d = {f(lr * d)}): the step is too large; lower the learning rate or "
            "clip the gradients (optax.clip_by_global_norm).")
  if reason == "range":
    return (f"the dual weight y = f'(w) - lr d = {f(y)} (w = {f(w)}, f'(w) = {f(fp)}, lr d = "
            f"{f(lr * d)}) is outside the range of f', so no weight has f'(w) = y and the step "
            f"is NaN. {pot.name}'s derivative is bounded on this side (like tanh, the derivative "
            "of log cosh): mirror descent needs f' onto all reals (see mdgeom.potential), or "
            "smaller steps that stay in range.")
  return (f"(f')^{{-1}}(y) overflows {dtype_name} at y = f'(w) - lr d = {f(y)} (w = {f(w)}, "
          f"lr d = {f(lr * d)}): the step is too large; lower the learning rate or clip the "
          "gradients (optax.clip_by_global_norm).")


def _raise_diagnosis(pot, names, sizes, dtype_names, count, diags) -> None:
  """Host side: raises NonFiniteError (or ValueError for f'' < 0) describing the failed leaves."""
  diags = jax.tree.map(np.asarray, diags)
  bad = [(name, size, dt, r) for name, size, dt, r in zip(names, sizes, dtype_names, diags)
         if int(r["n_bad"]) > 0]
  if not bad:
    return
  lines = []
  for name, size, dt, r in bad[:5]:
    lines.append(f"{name}: {int(r['n_bad'])} of {size} entries, first at flat index "
                 f"{int(r['index'])}: {_reason_text(pot, r, dt)}")
  more = f"\n  ... and {len(bad) - 5} more parameter arrays" if len(bad) > 5 else ""
  head = (f"mirror_descent({pot.name!r}) step {int(np.asarray(count))}: the update is not finite "
          "or not valid for")
  message = head + "\n  " + "\n  ".join(lines) + more
  if all(int(r["code"]) == _NONCONVEX for _, _, _, r in bad):
    raise ValueError(message)
  raise NonFiniteError(message)


# ----------------------------------------------------------------------------------------------
# The optimizer
# ----------------------------------------------------------------------------------------------


def mirror_descent(
    potential: Union[str, potentials_lib.Potential],
    learning_rate: optax.ScalarOrSchedule,
    momentum: Optional[float] = 0.0,
    nesterov: bool = False,
    *,
    check_finite: bool = False,
) -> optax.GradientTransformation:
  """Mirror descent under `potential` (Eq. 5-7; docs/theory.md) with heavy-ball momentum.

  Args:
    potential: a Potential or a name for `potentials.get` ("2-norm", "negative_entropy", ...).
    learning_rate: a float or an optax schedule of the step count.
    momentum: heavy-ball coefficient mu (torch.optim.SGD semantics, no dampening). 0 or None:
      no buffer.
    nesterov: Nesterov momentum, d_t = g_t + mu m_{t+1}.
    check_finite: check every step's result (opt-in; it costs a few elementwise passes). A step
      is invalid where the new weight is NaN or Inf, or, for potentials other than the
      built-ins, where f''(w) < 0. Called eagerly, `update` raises `NonFiniteError` (a
      ValueError; a plain ValueError when the only problem is f'' < 0) whose message names the
      parameter, the entry and the cause: a non-finite gradient, learning rate, momentum buffer
      or weight, f'(w) not finite, f'' < 0, a dual weight f'(w) - lr d outside the range of f'
      (a bounded derivative) or an overflow. Under `jax.jit` a value cannot raise: the same
      message then comes from a host callback and surfaces as the runtime error JAX raises for a
      failed callback (`jax.errors.JaxRuntimeError`, a RuntimeError). To skip bad steps rather
      than stop, wrap the optimizer in `optax.apply_if_finite` instead.

  With `pnorm(2)` this is `optax.sgd(learning_rate, momentum, nesterov)`; with
  `negative_entropy()` it is the exponentiated-gradient update w exp(-eta sign(w) d) (Eq. 7).
  The update needs `params`. Parameters in bfloat16/float16 are updated in float32.

  Raises (at construction): ValueError for momentum outside [0, 1), a non-finite learning rate,
  nesterov without momentum or an unknown potential; TypeError for a complex or non-numeric
  momentum or learning rate. `init` raises TypeError for integer, boolean or complex parameters
  (they would never move), NonFiniteError/SignFlipError for parameters outside the domain, and
  ValueError when a user potential fails `potentials.check_potential` at the parameters (at up
  to 65,536 of them, evenly spaced, plus each array's extremes; built-ins are not checked).
  `update` raises ValueError when the gradients' tree or shapes differ from the parameters'.
  """
  pot = potentials_lib.get(potential)
  _check_learning_rate(learning_rate)
  _check_momentum(momentum)
  use_momentum = momentum is not None and not _is_zero(momentum)
  if nesterov and not use_momentum:
    raise ValueError("nesterov=True needs a nonzero momentum.")
  builtin = potentials_lib.is_builtin(pot)

  def init_fn(params):
    leaves = jax.tree_util.tree_leaves_with_path(params)
    for path, leaf in leaves:
      where = _where(path)
      _check_param_dtype(leaf, where)
      pot.check_weights(leaf, what=where)
    if not builtin:
      _check_potential_at_params(pot, leaves)
    buf = None
    if use_momentum:
      buf = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), _compute_dtype(jnp.result_type(p))),
                         params)
    return MirrorDescentState(count=jnp.zeros([], jnp.int32), momentum=buf)

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("mirror_descent needs params in update(grads, state, params): the mirror "
                       "step depends on the current weights.")
    with_path, treedef = jax.tree_util.tree_flatten_with_path(params)
    if jax.tree.structure(updates) != treedef:
      raise ValueError(
          "mirror_descent: the gradients' tree does not match the parameters' tree (pass the "
          f"gradients of the same params to update): gradients {jax.tree.structure(updates)}, "
          f"parameters {treedef}.")
    for (path, p), g in zip(with_path, treedef.flatten_up_to(updates)):
      _check_param_dtype(p, _where(path))
      grads_at = f"gradients{' at ' + jax.tree_util.keystr(path) if path else ''}"
      _checks.check_real(g, grads_at)
      if np.shape(g) != np.shape(p):
        raise ValueError(
            f"shape mismatch: {grads_at} have shape {np.shape(g)} but the parameters have shape "
            f"{np.shape(p)} (they would broadcast into a wrong update).")

    lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
    grads = jax.tree.map(lambda g: g.astype(_compute_dtype(g.dtype)), updates)
    if use_momentum:
      buf = jax.tree.map(lambda g, m: g + momentum * m.astype(g.dtype), grads, state.momentum)
      if nesterov:
        direction = jax.tree.map(lambda g, m: g + momentum * m, grads, buf)
      else:
        direction = buf
    else:
      buf, direction = None, grads

    p_leaves = [p for _, p in with_path]
    ws = [p.astype(_compute_dtype(p.dtype)) for p in p_leaves]
    ds = [d.astype(w.dtype) for w, d in zip(ws, treedef.flatten_up_to(direction))]
    new_ws = [pot.step(w, -lr * d) for w, d in zip(ws, ds)]
    if check_finite:
      _guard(state.count, lr, with_path, ws, treedef.flatten_up_to(grads), ds, new_ws)
    new_updates = treedef.unflatten(
        [(nw - w).astype(p.dtype) for p, w, nw in zip(p_leaves, ws, new_ws)])
    count = optax.safe_increment(state.count)
    return new_updates, MirrorDescentState(count=count, momentum=buf)

  def _guard(count, lr, with_path, ws, gs, ds, new_ws):
    names = [_where(path) for path, _ in with_path]
    sizes = [int(np.size(w)) for w in ws]
    dtype_names = [jnp.dtype(w.dtype).name for w in ws]
    diagnose = lambda: [
        _leaf_diagnosis(pot, w, g.astype(w.dtype), d, nw, lr, not builtin)
        for w, g, d, nw in zip(ws, gs, ds, new_ws)]
    arrays = [count, lr, *ws, *gs, *ds, *new_ws]
    if all(_checks.is_concrete(a) for a in arrays):
      _raise_diagnosis(pot, names, sizes, dtype_names, count, diagnose())
      return
    diags = diagnose()
    ok = jnp.all(jnp.stack([r["n_bad"] == 0 for r in diags])) if diags else jnp.asarray(True)
    report = lambda c, ds_: _raise_diagnosis(pot, names, sizes, dtype_names, c, ds_)
    # The callback (and its transfer) runs only on failure; it checks again, because under vmap
    # the cond becomes a select that runs both branches.
    jax.lax.cond(ok, lambda c, r: None,
                 lambda c, r: jax.debug.callback(report, c, r), count, diags)

  return optax.GradientTransformation(init_fn, update_fn)


def check_finite(params, state=None, *, potential=None) -> None:
  """Raises NonFiniteError when training left NaN or Inf in `params` or in the optimizer state.

  A non-jitted check to call on concrete values, e.g. after training or every few hundred steps
  of a jitted loop (it transfers the arrays to the host):

      params, opt_state = train(...)
      mdgeom.optim.check_finite(params, opt_state, potential="negative_entropy")

  The message lists the arrays (by tree path) with their numbers of NaN and Inf entries and the
  first bad index. `state` may be any optax state (a chain, `apply_if_finite`, ...); its
  floating-point leaves are checked (the momentum buffer of `MirrorDescentState`, for example).
  With `potential`, the parameters are also checked against its domain (`check_weights`: e.g.
  weights that reached exactly 0 under negative entropy, where they stay forever).

  Raises:
    NonFiniteError (a ValueError): NaN or Inf found. SignFlipError (a ValueError): zeros under a
    sign-preserving potential. TypeError: called inside jit (on traced values).
  """
  found = []
  for tree, root in ((params, "params"), (state, "opt_state")):
    if tree is None:
      continue
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
      if not _checks.is_concrete(leaf):
        raise TypeError("mdgeom.optim.check_finite inspects values, so it runs outside jax.jit; "
                        "inside a jitted step use mirror_descent(..., check_finite=True).")
      try:
        _checks.check_finite(leaf, f"{root}{jax.tree_util.keystr(path)}")
      except NonFiniteError as e:
        found.append(str(e).split(";")[0])
  if found:
    shown = _checks.first_items(found, 20, "\n  ")
    raise NonFiniteError(
        f"training produced non-finite values in {len(found)} arrays:\n  {shown}\nFind the first "
        "bad step with mirror_descent(..., check_finite=True) (it names the cause), or skip such "
        "steps with optax.apply_if_finite.")
  if potential is not None:
    pot = potentials_lib.get(potential)
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
      pot.check_weights(leaf, what=f"params{jax.tree_util.keystr(path)}")


__all__ = ["MirrorDescentState", "NonFiniteError", "check_finite", "mirror_descent"]
