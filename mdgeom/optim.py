"""Mirror descent as an optax GradientTransformation.

    m_{t+1} = mu m_t + g_t                                  (heavy ball, as torch.optim.SGD / optax.sgd)
    d_t     = m_{t+1}          (or g_t + mu m_{t+1} with nesterov=True; d_t = g_t without momentum)
    w_{t+1} = (grad phi)^{-1}( grad phi(w_t) - eta_t d_t )   (Eq. 6 with momentum; docs/theory.md)

The transformation returns updates = w_{t+1} - w_t, so `optax.apply_updates` gives w_{t+1}; it
composes with `optax.chain`, `optax.masked`, `optax.partition` and `optax.inject_hyperparams`.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mdgeom import _checks
from mdgeom import potentials as potentials_lib


class MirrorDescentState(NamedTuple):
  """count: steps taken (drives a schedule); momentum: the heavy-ball buffer or None."""

  count: jax.Array
  momentum: Any


def _compute_dtype(dtype):
  # bf16/f16 parameters are updated in float32; float64 stays float64.
  return jnp.promote_types(dtype, jnp.float32)


def _is_zero(x) -> bool:
  return isinstance(x, (int, float, np.number)) and float(x) == 0.0


def mirror_descent(
    potential: Union[str, potentials_lib.Potential],
    learning_rate: optax.ScalarOrSchedule,
    momentum: Optional[float] = 0.0,
    nesterov: bool = False,
) -> optax.GradientTransformation:
  """Mirror descent under `potential` (Eq. 5-7; docs/theory.md) with heavy-ball momentum.

  Args:
    potential: a Potential or a name for `potentials.get` ("2-norm", "negative_entropy", ...).
    learning_rate: a float or an optax schedule of the step count.
    momentum: heavy-ball coefficient mu (torch.optim.SGD semantics, no dampening). 0 or None:
      no buffer.
    nesterov: Nesterov momentum, d_t = g_t + mu m_{t+1}.

  With `pnorm(2)` this is `optax.sgd(learning_rate, momentum, nesterov)`; with
  `negative_entropy()` it is the exponentiated-gradient update w exp(-eta sign(w) d) (Eq. 7).
  The update needs `params`. Parameters in bfloat16/float16 are updated in float32.
  """
  pot = potentials_lib.get(potential)
  use_momentum = momentum is not None and not _is_zero(momentum)
  if nesterov and not use_momentum:
    raise ValueError("nesterov=True needs a nonzero momentum.")
  if isinstance(momentum, (int, float)) and not 0.0 <= momentum < 1.0:
    raise ValueError(f"momentum must be in [0, 1), got {momentum}.")

  def init_fn(params):
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
      where = f"parameters at {jax.tree_util.keystr(path) or 'the root'}"
      pot.check_weights(leaf, what=where)
    buf = None
    if use_momentum:
      buf = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), _compute_dtype(jnp.result_type(p))),
                         params)
    return MirrorDescentState(count=jnp.zeros([], jnp.int32), momentum=buf)

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("mirror_descent needs params in update(grads, state, params): the mirror "
                       "step depends on the current weights.")
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

    def leaf_update(p, d):
      w = p.astype(_compute_dtype(p.dtype))
      new_w = pot.step(w, -lr * d.astype(w.dtype))
      return (new_w - w).astype(p.dtype)

    new_updates = jax.tree.map(leaf_update, params, direction)
    count = optax.safe_increment(state.count)
    return new_updates, MirrorDescentState(count=count, momentum=buf)

  return optax.GradientTransformation(init_fn, update_fn)
