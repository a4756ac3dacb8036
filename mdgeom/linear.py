"""Full-batch mirror descent on linear regression (the paper's section 4.1 setting).

Model f(x) = <w, x> without bias, loss L(w) = mean_n (<w, x_n> - y_n)^2 (torch's MSELoss, as the
authors), heavy-ball momentum and a cosine-annealed learning rate (torch's CosineAnnealingLR with
T_max = the number of epochs, one full-batch step per epoch).

`fit` trains C "columns" at once on the same data: each column has its own potential, learning
rate and number of steps. All columns share one pass over X per matrix product (X W for the
predictions, R^T X for the gradients), so a learning-rate grid or several potentials cost little
more than one run: the products are memory-bound and X is read twice per step whatever C is.
`jax.vmap` over seeds batches independent data sets. `search_learning_rate` is the paper's grid
search with epoch extension (appendix B.1).

Precision: everything runs in the dtype of the data (X, y, w0), learning rates and the cosine
schedule included, so with JAX's x64 flag on and float64 inputs a run is float64 end to end
(it agrees with an independent float64 loop to ~1e-13; tests/test_linear.py).

"Final loss" (the learning-rate search's criterion, appendix B.1) has two readings: the loss at
the weights training ends with (loss="final", the default here), or the loss of the last forward
pass, computed before the last update (loss="last_forward", what the authors' training loop
returns; slightly higher, as the last step still lowers the loss). Both are offered; `fit` and
`search_learning_rate` take `loss=`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mdgeom import optim
from mdgeom import potentials as potentials_lib


def mse(X, y, w) -> jax.Array:
  """mean_n (<w, x_n> - y_n)^2 for w of shape (C, D) (or (D,))."""
  return jnp.mean((X @ jnp.atleast_2d(w).T - y[:, None]) ** 2, axis=0).reshape(jnp.shape(w)[:-1])


LOSSES = ("final", "last_forward")


def cosine_learning_rate(lr, num_steps, t):
  """lr * (1 + cos(pi t / T)) / 2 for t < T, else 0 (torch CosineAnnealingLR, eta_min = 0).

  Computed in lr's floating dtype (float64 for a float64 lr under x64; float32 otherwise), so a
  float64 run's schedule is not rounded to float32.
  """
  lr = jnp.asarray(lr)
  dtype = jnp.promote_types(lr.dtype, jnp.float32)
  t = jnp.asarray(t, dtype)
  T = jnp.asarray(num_steps, dtype)
  return jnp.where(t < T, lr.astype(dtype) * 0.5 * (1.0 + jnp.cos(jnp.pi * t / T)), 0.0)


def _blocks(potentials: Sequence[potentials_lib.Potential]):
  """Groups column indices by potential (identity), in order of first appearance."""
  order, groups = [], {}
  for i, p in enumerate(potentials):
    if id(p) not in groups:
      groups[id(p)] = []
      order.append(p)
    groups[id(p)].append(i)
  return [(p, np.asarray(groups[id(p)])) for p in order]


@functools.partial(jax.jit, static_argnames=("potentials", "momentum", "loss"))
def _fit(X, y, w0, learning_rates, num_steps, max_steps, *, potentials, momentum, loss):
  n = X.shape[0]
  blocks = _blocks(potentials)
  order = np.concatenate([idx for _, idx in blocks])  # block order -> column
  txs = []
  for pot, idx in blocks:
    lrs, steps = learning_rates[idx][:, None], num_steps[idx][:, None]
    schedule = lambda t, lrs=lrs, steps=steps: cosine_learning_rate(lrs, steps, t)
    txs.append(optim.mirror_descent(pot, schedule, momentum))
  W = jnp.broadcast_to(w0, (len(potentials),) + w0.shape)
  params = [W[idx] for _, idx in blocks]
  states = [tx.init(p) for tx, p in zip(txs, params)]

  last = jnp.full((len(potentials),), jnp.nan, W.dtype)  # the loss of each last forward pass

  def step_and_record(t, carry):
    (params, states), last = carry
    W = jnp.concatenate(params)  # block order
    # X @ W.T and R^T @ X: these operand orders are the fast ones on XLA:CPU (the transposed
    # forms W @ X.T and X.T @ R run several times slower for skinny W).
    R = X @ W.T - y[:, None]  # (N, C)
    if loss == "last_forward":
      # the forward pass of step t is a column's last when t = num_steps - 1 (its last update)
      last = jnp.where(t == num_steps[order] - 1, jnp.mean(R * R, axis=0), last)
    return step(R, params, states), last

  def step(R, params, states):
    G = (2.0 / n) * (R.T @ X)  # (C, D): one pass over X for every column
    new_params, new_states, start = [], [], 0
    for tx, p, s in zip(txs, params, states):
      g = G[start:start + p.shape[0]]
      start += p.shape[0]
      u, s = tx.update(g, s, p)
      new_params.append(optax.apply_updates(p, u))
      new_states.append(s)
    return new_params, new_states

  # a traced trip count: more epochs (the lr search's extension) do not recompile
  (params, _), last = jax.lax.fori_loop(0, max_steps, step_and_record, ((params, states), last))
  W_blocks = jnp.concatenate(params)
  inverse = np.argsort(order)
  W_final = W_blocks[inverse]
  if loss == "last_forward":
    return W_final, last[inverse]
  return W_final, mse(X, y, W_final)


class Fit(NamedTuple):
  weights: jax.Array  # (..., C, D) final weights
  loss: jax.Array  # (..., C) final training loss, as `loss=` defines it (NaN/inf: diverged)


def _check_loss(loss: str) -> str:
  if loss not in LOSSES:
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}.")
  return loss


def fit(X, y, w0, potentials: Sequence, learning_rates, num_steps, momentum: float = 0.9, *,
        loss: str = "final") -> Fit:
  """Trains C columns of full-batch mirror descent on (X, y) from w0.

  Args:
    X: (N, D) inputs, or (S, N, D) for S independent data sets (vmapped).
    y: (N,) or (S, N) targets. w0: (D,) or (S, D) initial weights.
    potentials: C potentials or names (one per column; repeat one to scan learning rates).
    learning_rates: (C,) initial learning rates; num_steps: (C,) steps (epochs) per column.
    loss: "final": Fit.loss is the loss at the final weights; "last_forward": the loss of each
      column's last forward pass, before its last update (the authors' loop; module docstring).

  The computation runs in the floating dtype of (X, y, w0): learning rates and the schedule too.
  """
  _check_loss(loss)
  pots = tuple(potentials_lib.get(p) for p in potentials)
  X, y, w0 = jnp.asarray(X), jnp.asarray(y), jnp.asarray(w0)
  dtype = jnp.promote_types(jnp.result_type(X, y, w0), jnp.float32)
  X, y, w0 = X.astype(dtype), y.astype(dtype), w0.astype(dtype)
  lrs = jnp.asarray(learning_rates, dtype).reshape(-1)
  steps = np.asarray(num_steps, np.int32).reshape(-1)
  if not (len(pots) == lrs.size == steps.size):
    raise ValueError(f"need one learning rate and step count per potential: got {len(pots)} "
                     f"potentials, {lrs.size} learning rates, {steps.size} step counts.")
  kw = {"potentials": pots, "momentum": float(momentum), "loss": loss}
  max_steps = jnp.asarray(int(steps.max()), jnp.int32)
  if X.ndim == 3:
    fn = jax.vmap(lambda a, b, c: _fit(a, b, c, lrs, jnp.asarray(steps), max_steps, **kw))
    return Fit(*fn(X, y, w0))
  return Fit(*_fit(X, y, w0, lrs, jnp.asarray(steps), max_steps, **kw))


class LearningRateSearch(NamedTuple):
  learning_rate: float
  num_steps: int
  loss: float  # the best final loss (as `loss=` defines it)
  converged: bool  # best loss below the target
  losses: np.ndarray  # final loss per grid value at the final number of steps


def search_learning_rate(X, y, w0, potentials: Sequence, grid, *, num_steps: int = 100,
                         extra_steps: int = 100, max_steps: int = 500, target: float = 1e-3,
                         momentum: float = 0.9, loss: str = "final") -> list[LearningRateSearch]:
  """The paper's grid search (appendix B.1), for several potentials at once.

  For each potential: train with every learning rate of `grid` for `num_steps` epochs and keep
  the one with the lowest final loss; while that loss is above `target`, add `extra_steps`
  epochs and search again, up to `max_steps`. Diverged runs (NaN/inf) never win. loss: which
  final loss selects and is compared with the target, "final" (at the final weights, the
  default) or "last_forward" (the authors' loop: the last forward pass, before the last update).
  """
  _check_loss(loss)
  pots = [potentials_lib.get(p) for p in potentials]
  grid = np.asarray(grid, np.float64)
  steps = {i: num_steps for i in range(len(pots))}
  out: dict[int, LearningRateSearch] = {}
  pending = list(range(len(pots)))
  while pending:
    cols = [pots[i] for i in pending for _ in grid]
    lrs = np.tile(grid, len(pending))
    nsteps = np.concatenate([np.full(grid.size, steps[i]) for i in pending])
    losses = np.asarray(fit(X, y, w0, cols, lrs, nsteps, momentum, loss=loss).loss, np.float64)
    losses = losses.reshape(len(pending), grid.size)
    still = []
    for row, i in zip(losses, pending):
      finite = np.where(np.isfinite(row), row, np.inf)
      best = int(np.argmin(finite))
      res = LearningRateSearch(float(grid[best]), steps[i], float(finite[best]),
                               bool(finite[best] < target), row)
      out[i] = res
      if not res.converged and steps[i] + extra_steps <= max_steps:
        steps[i] += extra_steps
        still.append(i)
    pending = still
  return [out[i] for i in range(len(pots))]
