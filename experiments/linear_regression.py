"""Linear regression (paper section 4.1, Fig. 3A and 6): is the dual change Gaussian?

For each correlation power c, data-set scaling N = D^a, width D and potential (negative entropy,
2-norm, 3-norm): take correlated inputs (paper section 4.1) and +-1 labels for num_seeds + 1
seeds (the leading N rows and D columns of one input pool per correlation power, as in the
authors' code) and draw w0 ~ N(0, 1/D); pick the learning rate on the held-out seed (16-value grid, epoch extension,
appendix B.1; "final loss" read as config.lr_search_loss: at the final weights by default, or the
authors' last forward pass); train every seed with mirror descent (momentum 0.9, cosine
schedule, full batch); measure the Delta-CDF and magnitude of the dual change under the trained
potential; and compare with the exact minimum-Bregman solution (Eq. 8/13) of every seed.

    python -m experiments.linear_regression --config=configs/linear_regression.py --workdir=runs/linreg

Writes workdir/results.json = {"config": {...}, "cells": [...]}, one cell per (potential, n_d,
corr_power, width):
    {"potential", "n_d", "corr_power", "width", "n_data", "learning_rate", "epochs",
     "lr_search_loss", "delta_cdf": [per seed], "delta_cdf_centered": [per seed, the statistic
     centred by its mean], "magnitude": [per seed], "final_loss": [per seed],
     "converged": [per seed: final loss < loss_target], "closed_form_delta_cdf": [per seed],
     "closed_form_dual_distance": [per seed], "closed_form_converged": [per seed],
     "closed_form_seeds": k, "train_seconds",
     "closed_form_seconds"}
closed_form_dual_distance = ||grad phi(w_trained) - grad phi(w*)|| / ||grad phi(w*) - grad phi(w0)||
(the trained solution's distance to the exact one in the dual space, relative to the size of the
dual change); closed-form entries are null for seeds beyond closed_form_seeds (all seeds by
default; see the config). final_loss is the loss at the final weights whatever lr_search_loss
says. Unconverged seeds are kept and flagged. Each finished cell is stored at once; a rerun
skips it.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from configs import linear_regression as lr_config
from experiments import _cli
from mdgeom import analysis, linear, potentials, results, solve
from mdgeom.data import regression_problem

PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")



def group_key(config, corr_power, n_d, width):
  base = jax.random.PRNGKey(config.seed)
  return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(base, int(corr_power * 1000)),
                                               int(round(n_d * 1000))), width)


def pool_shape(config) -> tuple[int, int]:
  """(N_max, D_max): every cell's data are the leading rows and columns of one pool."""
  return (max(int(w ** a) for w in config.widths for a in config.n_d_exponents),
          max(config.widths))


def make_pool(config, corr_power):
  """Inputs (S + 1, N_max, D_max) and labels (S + 1, N_max) for one correlation power.

  As in the authors' protocol, a cell of width D and N points uses the first N rows and the first
  D columns of each seed's pool (the first D entries of a D_max-dimensional sample have the
  correlations of a D-dimensional one), so the inputs are generated once per correlation power
  rather than once per cell.
  """
  n_max, d_max = pool_shape(config)
  # prng_impl "rbg" draws the ~3 N D random numbers per seed about 2-3x faster on CPU than
  # threefry; threefry (the default) gives the same inputs on every backend.
  key = jax.random.fold_in(jax.random.key(config.seed, impl=config.prng_impl),
                           int(corr_power * 1000))
  X, y = [], []
  for s in range(config.num_seeds + 1):
    xs, ys = regression_problem(jax.random.fold_in(key, s), n_max, d_max, corr_power,
                                scale=config.corr_scale, noise=config.input_noise)
    X.append(xs)
    y.append(ys)
  return jnp.stack(X), jnp.stack(y).astype(jnp.float32)


def make_data(config, corr_power, n_d, width, pool=None):
  """Inputs, labels and initial weights w0 ~ N(0, 1/D) for num_seeds + 1 seeds (the last seed
  picks the learning rate); w0 is drawn afresh for every cell."""
  n = int(width ** n_d)
  X_pool, y_pool = make_pool(config, corr_power) if pool is None else pool
  key = group_key(config, corr_power, n_d, width)
  w0 = jax.vmap(lambda s: jax.random.normal(jax.random.fold_in(key, s), (width,)))(
      jnp.arange(config.num_seeds + 1)) / np.sqrt(width)
  return X_pool[:, :n, :width], y_pool[:, :n], w0


def _seed_batches(config, n, width):
  per_seed = 4 * n * width
  size = max(1, min(config.num_seeds, config.max_batch_bytes // per_seed))
  return [range(i, min(i + size, config.num_seeds)) for i in range(0, config.num_seeds, size)]


def closed_form(config, pots, X, y, w0, W_trained):
  """Exact solutions (Eq. 8/13) for the first k seeds, every potential of the group.

  Per seed, one `solve.min_bregman_solutions` call solves all potentials (they share the checks
  of X, its rank and the solver's preconditioner) and, with closed_form.warm_start, starts each
  from its trained weights (the solution does not depend on the start). Returns, per potential,
  per-seed lists (Delta-CDF of the exact dual change, dual distance to the trained solution,
  converged flag), None beyond k, and k; a solve that does not converge within
  closed_form.max_iter Newton steps is kept with converged = False and None values."""
  cf = config.closed_form
  k = min(cf.num_seeds, config.num_seeds) if cf.enabled else 0
  out = {name: ([None] * config.num_seeds, [None] * config.num_seeds, [None] * config.num_seeds)
         for name in pots}
  pot_objs = [potentials.get(name) for name in pots]
  for s in range(k):
    w0s = np.asarray(w0[s], np.float64)
    trained = [np.asarray(W_trained[s, i], np.float64) for i in range(len(pots))]
    guesses = warm_starts(pot_objs, trained, w0s) if cf.warm_start else None
    # X and y as stored (float32, exact in float64; the solver casts, and uses X as it is for
    # its float32 Hessian products)
    sols = solve.min_bregman_solutions(pot_objs, X[s], np.asarray(y[s]), w0s,
                                       tol=cf.tol, max_iter=cf.max_iter, raise_on_failure=False,
                                       initial_guesses=guesses)
    for name, pot, sol, w_tr in zip(pots, pot_objs, sols, trained):
      dc, dist, ok = out[name]
      ok[s] = bool(sol.converged)
      if not sol.converged:
        logging.warning("closed form for %s, seed %d did not converge (residual %.2e)", pot.name,
                        s, sol.residual)
        continue
      dc[s] = analysis.delta_cdf(analysis.dual_change(pot, w0s, np.asarray(sol.w, np.float64)))
      d = float(analysis.dual_distance(pot, w_tr, sol.w, w0s))
      dist[s] = d if np.isfinite(d) else None  # not finite: training diverged (flagged in the cell)
  return out, k


def warm_starts(pots, trained, w0) -> list:
  """Each potential's trained weights as the exact solver's start, or None (the linearised start)
  where they are unusable: not finite (a diverged run), or, under a sign-preserving potential, a
  zero or a sign change."""
  return [w if np.all(np.isfinite(w)) and (not p.sign_preserving
                                           or bool(np.all(np.sign(w) == np.sign(w0)))) else None
          for p, w in zip(pots, trained)]


def train(config, X, y, w0, pots, n, width):
  """The learning-rate search on the held-out last seed, then every seed trained with the chosen
  rates (vmapped in batches of seeds). Returns (search results, weights (seeds, P, D), final
  losses (seeds, P), seconds the search took)."""
  t0 = time.time()
  search = linear.search_learning_rate(
      X[-1], y[-1], w0[-1], pots, config.lr_grid, num_steps=config.epochs,
      extra_steps=config.extra_epochs, max_steps=config.max_epochs, target=config.loss_target,
      momentum=config.momentum, loss=config.lr_search_loss)
  search_seconds = time.time() - t0
  lrs = [s.learning_rate for s in search]
  steps = [s.num_steps for s in search]
  weights, losses = [], []
  for batch in _seed_batches(config, n, width):
    idx = np.asarray(batch)
    out = linear.fit(X[idx], y[idx], w0[idx], pots, lrs, steps, config.momentum)
    weights.append(np.asarray(out.weights))  # (seeds, P, D)
    losses.append(np.asarray(out.loss))
  return search, np.concatenate(weights), np.concatenate(losses), search_seconds


def run_group(config, corr_power, n_d, width, pots, pool=None) -> dict:
  """Trains every potential of `pots` on one (corr_power, n_d, width) group; returns its cells."""
  n = int(width ** n_d)
  t_data = time.time()
  X, y, w0 = make_data(config, corr_power, n_d, width, pool)
  jax.block_until_ready(X)
  t0 = time.time()
  data_seconds = t0 - t_data
  search, W, L, search_seconds = train(config, X, y, w0, pots, n, width)
  lrs = [s.learning_rate for s in search]
  steps = [s.num_steps for s in search]
  cells = {}
  train_seconds = time.time() - t0
  t1 = time.time()
  exact, k = closed_form(config, pots, X, y, w0, W)
  closed_form_seconds = time.time() - t1
  for p_index, name in enumerate(pots):
    pot = potentials.get(name)
    w_tr = W[:, p_index]
    w0s = np.asarray(w0[:config.num_seeds])
    d = analysis.dual_change_raw(pot, jnp.asarray(w0s), jnp.asarray(w_tr))
    dc = analysis.delta_cdf_batch(d)
    dc_centered = analysis.delta_cdf_batch(d, center=True)
    mag = np.asarray(analysis.change_magnitude_raw(pot, jnp.asarray(w0s), jnp.asarray(w_tr)))
    cf_dc, cf_dist, cf_ok = exact[name]
    cells[name] = {
        "potential": pot.name, "n_d": n_d, "corr_power": corr_power, "width": width, "n_data": n,
        "learning_rate": lrs[p_index], "epochs": steps[p_index],
        "lr_search_loss": search[p_index].loss, "lr_search_converged": search[p_index].converged,
        "delta_cdf": dc, "delta_cdf_centered": dc_centered, "magnitude": mag,
        "final_loss": L[:, p_index],
        "converged": L[:, p_index] < config.loss_target,
        "closed_form_delta_cdf": cf_dc, "closed_form_dual_distance": cf_dist,
        "closed_form_converged": cf_ok, "closed_form_seeds": k,
        # wall times of the group, shared by its potentials (divided evenly)
        "data_seconds": data_seconds / len(pots), "lr_search_seconds": search_seconds / len(pots),
        "train_seconds": train_seconds / len(pots),
        "closed_form_seconds": closed_form_seconds / len(pots)}
  return cells


def _validate(config):
  """Everything the run needs, before any group: keys, types, finite values, non-empty lists."""
  _cli.check_config(config, lr_config.get_config(), where=" of configs/linear_regression.py")
  if config.prng_impl not in PRNG_IMPLS:
    raise _cli.ConfigError(f"config.prng_impl must be one of {PRNG_IMPLS}, got "
                           f"{config.prng_impl!r}.")
  _cli.check_potentials(config, "potentials")
  if config.num_seeds < 1:
    raise _cli.ConfigError(f"config.num_seeds must be at least 1, got {config.num_seeds!r}.")
  for w in config.widths:
    if w < 2:
      raise _cli.ConfigError(f"config.widths must be >= 2, got {w}.")
  for a in config.n_d_exponents:
    if not 0 < a < 1:
      raise _cli.ConfigError(f"config.n_d_exponents must be in (0, 1) so that N < D, got {a}.")
  if not config.epochs <= config.max_epochs:
    raise _cli.ConfigError(f"config.epochs ({config.epochs}) must not exceed config.max_epochs "
                           f"({config.max_epochs}).")
  if config.lr_search_loss not in linear.LOSSES:
    raise _cli.ConfigError(f"config.lr_search_loss must be one of {linear.LOSSES}, got "
                           f"{config.lr_search_loss!r}.")
  _cli.finite_positive(config, "loss_target", "closed_form.tol")


def run(config, workdir: str) -> dict:
  _validate(config)
  cfg = results.config_dict(config)
  # (cells from before the centred statistic existed are recomputed)
  store = results.CellStore(workdir, {
      **cfg, "potential_code": results.potential_fingerprints(config.potentials)},
      valid=lambda value: "delta_cdf_centered" in value)
  pot_names = [potentials.get(p).name for p in config.potentials]
  groups = [(c, a, w) for c in config.corr_powers for a in config.n_d_exponents
            for w in config.widths]
  key = lambda p, c, a, w: f"{p}__nd{a}__c{c}__D{w}"
  pools = {}  # the input pool of the current correlation power, made when first needed
  pool_seconds = {}

  def group(c, a, w):
    if c not in pools:
      pools.clear()  # one pool in memory at a time
      t = time.time()
      pools[c] = jax.block_until_ready(make_pool(config, c))
      pool_seconds[str(c)] = time.time() - t
      logging.info("inputs for c=%s: %s in %.1f s", c, pools[c][0].shape, pool_seconds[str(c)])
    fresh = run_group(config, c, a, w, pot_names, pools[c])
    return {key(p, c, a, w): fresh[p] for p in pot_names}

  # A group's potentials are trained together: one claim per group, one cell file per potential,
  # each group computed once by whichever worker of a sweep claims it (results.run_cells).
  done = store.run([store.cell(f"group__nd{a}__c{c}__D{w}", lambda c=c, a=a, w=w: group(c, a, w),
                               outputs=[key(p, c, a, w) for p in pot_names])
                    for c, a, w in groups])
  all_cells = [done[key(p, c, a, w)] for c, a, w in groups for p in pot_names]
  # input_pool_seconds: time to generate each correlation power's inputs in this run (absent
  # when all its cells were already done)
  out = {"config": cfg, "cells": all_cells, "input_pool_seconds": pool_seconds}
  results.write_json_atomic(os.path.join(workdir, "results.json"), out)
  return out


def _median(values) -> float:
  v = [x for x in values if x is not None]  # null: not finite (a diverged seed)
  return float(np.median(v)) if v else float("nan")


def summary(res: dict) -> str:
  """One line per cell: medians over seeds of the trained and closed-form measures."""
  lines = [f"{'potential':<17} {'n_d':>5} {'c':>2} {'D':>6} {'N':>5} {'lr':>8} {'ep':>4} "
           f"{'dCDF med':>8} {'mag med':>8} {'cf dCDF':>8} {'cf dist':>8} {'conv':>5}"]
  for cell in res["cells"]:
    lines.append(
        f"{cell['potential']:<17} {cell['n_d']:>5} {cell['corr_power']:>2} {cell['width']:>6} "
        f"{cell['n_data']:>5} {cell['learning_rate']:>8.1e} {cell['epochs']:>4} "
        f"{_median(cell['delta_cdf']):>8.4f} {_median(cell['magnitude']):>8.4f} "
        f"{_median(cell['closed_form_delta_cdf']):>8.4f} "
        f"{_median(cell['closed_form_dual_distance']):>8.4f} "
        f"{sum(cell['converged'])}/{len(cell['converged'])}")
  return "\n".join(lines)


if __name__ == "__main__":
  _cli.main(run, summary, "configs/linear_regression.py", "runs/linreg")
