"""Benchmark: wall time of the linear-regression grid (Fig. 3A/6) and of its parts against the
authors' approach, measured in one run.

    python benchmarks/linear_regression_grid.py            # components + the :small grid
    python benchmarks/linear_regression_grid.py --full     # + the paper's full trained grid, then
                                                           #   the closed-form comparison alone

Components, each against the authors' logic on the same sizes (D = 2e4, N = D^0.75 = 1681):
  inputs    correlated inputs for one seed: circulant embedding + FFT (mdgeom.data) vs a dense
            Cholesky factor of the D x D correlation matrix and a matrix product (authors). The
            authors factor once per correlation power and multiply 31 seeds' worth of normals.
  training  the learning-rate search (16 rates) and 30 seeds for one potential at the largest
            cell: fused columns + vmap over seeds (mdgeom.linear) vs one run after another
            (authors), the latter measured on a few runs and scaled to 16 + 30 runs.
The full grid is run with the experiment itself (closed form off); the closed-form comparison is
timed separately: for the :small grid (all seeds) and, per potential, for one seed of the
largest cell (its cost decides how many seeds the full grid's config compares).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from configs import linear_regression as lr_config
from experiments import linear_regression
from mdgeom import data, linear


def _time(fn, repeats=1):
  best = float("inf")
  out = None
  for _ in range(repeats):
    t = time.perf_counter()
    out = fn()
    jax.block_until_ready(jax.tree.leaves(out))
    best = min(best, time.perf_counter() - t)
  return best, out


def inputs_component(dim=20_000, n=1681, power=1, dense_dim=5_000):
  """FFT embedding at the paper's size vs the dense method. The dense Cholesky of the 2e4 x 2e4
  matrix crashes numpy's OpenBLAS here (segfault), so it is measured at dense_dim and scaled:
  the factorisation by (dim / dense_dim)^3, the product by (n dim^2) / (n' dense_dim^2)."""
  key = jax.random.PRNGKey(0)
  data.regression_inputs(key, n, dim, power)  # compile
  ours, _ = _time(lambda: data.regression_inputs(key, n, dim, power), repeats=2)
  n_dense = int(dense_dim ** 0.75)
  r = data.correlation_sequence(dense_dim, power)
  t = time.perf_counter()
  L = np.linalg.cholesky(scipy.linalg.toeplitz(r))
  t_chol = (time.perf_counter() - t) * (dim / dense_dim) ** 3
  rng = np.random.default_rng(0)
  z = rng.standard_normal((n_dense, dense_dim)).astype(np.float32)
  L32 = L.astype(np.float32)
  t = time.perf_counter()
  _ = z @ L32.T + (rng.random((n_dense, dense_dim), dtype=np.float32) - 0.5)
  t_mat = (time.perf_counter() - t) * (n * dim**2) / (n_dense * dense_dim**2)
  print(f"inputs, D={dim}, N={n}, one seed: FFT embedding {ours:.2f} s (measured); dense: "
        f"Cholesky {t_chol:.0f} s once per correlation power + product {t_mat:.1f} s per seed "
        f"(measured at D={dense_dim}, N={n_dense}, scaled)")
  per_c_ours = 31 * ours
  per_c_dense = t_chol + 31 * t_mat
  print(f"  31 seeds per correlation power: {per_c_ours:.0f} s vs {per_c_dense:.0f} s "
        f"(ratio {per_c_dense / per_c_ours:.1f}x)")


def training_component(dim=20_000, n=1681, sequential_runs=3):
  config = _cfg_with_seeds(lr_config.get_config(), 30)
  X, y, w0 = linear_regression.make_data(config, 1, 0.75, dim)
  grid = config.lr_grid
  pot = "negative_entropy"
  search = lambda: linear.search_learning_rate(X[-1], y[-1], w0[-1], [pot], grid, max_steps=100)
  search()  # compile
  fused_search, found = _time(search)
  lr = found[0].learning_rate
  linear.fit(X[:30], y[:30], w0[:30], [pot], [lr], [100]).loss.block_until_ready()  # compile
  fused_seeds, _ = _time(lambda: linear.fit(X[:30], y[:30], w0[:30], [pot], [lr], [100]).loss)
  # the authors' order: one (learning rate or seed) run at a time, 100 full-batch epochs each
  one = lambda s: linear.fit(X[s], y[s], w0[s], [pot], [lr], [100]).loss
  one(0).block_until_ready()
  t = time.perf_counter()
  for s in range(sequential_runs):
    one(s).block_until_ready()
  per_run = (time.perf_counter() - t) / sequential_runs
  seq_total = per_run * (len(grid) + 30)
  ours = fused_search + fused_seeds
  print(f"training, largest cell (D={dim}, N={n}, {pot}, 100 epochs): lr search over "
        f"{len(grid)} rates {fused_search:.1f} s + 30 seeds {fused_seeds:.1f} s = {ours:.1f} s; "
        f"one run after another: {per_run:.2f} s per run x {len(grid) + 30} runs = "
        f"{seq_total:.0f} s (measured on {sequential_runs} runs); ratio {seq_total / ours:.1f}x")


def _cfg_with_seeds(config, seeds):
  config = config.copy_and_resolve_references()
  config.num_seeds = seeds
  return config


def grid(variant: str, closed_form: bool):
  config = lr_config.get_config(variant)
  config.closed_form.enabled = closed_form
  with tempfile.TemporaryDirectory() as workdir:
    t = time.perf_counter()
    res = linear_regression.run(config, workdir)
    wall = time.perf_counter() - t
  return wall, res


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--full", action="store_true", help="also run the paper's full grid")
  parser.add_argument("--skip-components", action="store_true")
  args = parser.parse_args()
  print(f"device: {jax.devices()[0]}, {os.cpu_count()} CPUs")
  if not args.skip_components:
    inputs_component()
    training_component()
  wall, res = grid("small", closed_form=True)
  cf = sum(c["closed_form_seconds"] for c in res["cells"])
  print(f":small grid (4 widths x 2 N-scalings x 2 correlations x 3 potentials, 5 seeds, closed "
        f"form for all seeds): {wall:.1f} s wall, of which closed form {cf:.1f} s")
  if args.full:
    wall, res = grid("paper", closed_form=False)
    unconverged = sum(len(c["converged"]) - sum(c["converged"]) for c in res["cells"])
    print(f"full trained grid (10 widths x 2 x 2 x 3 potentials, 30 seeds, lr search): "
          f"{wall:.0f} s = {wall / 60:.1f} min; {unconverged} of "
          f"{sum(len(c['converged']) for c in res['cells'])} seed runs above the loss target")
    closed_form_largest_cell()


def closed_form_largest_cell(seeds=1, max_iter=40):
  """The exact solution (Eq. 8/13) at the largest cell, per potential, on `seeds` seeds."""
  from mdgeom import solve
  config = lr_config.get_config("paper")
  width, n_d = max(config.widths), max(config.n_d_exponents)
  pool = linear_regression.make_pool(_cfg_with_seeds(config, seeds), 1)
  X, y, w0 = linear_regression.make_data(_cfg_with_seeds(config, seeds), 1, n_d, width, pool)
  for name in config.potentials:
    t = time.perf_counter()
    sol = solve.min_bregman_solution(name, np.asarray(X[0], np.float64),
                                     np.asarray(y[0], np.float64), np.asarray(w0[0], np.float64),
                                     tol=config.closed_form.tol, max_iter=max_iter,
                                     raise_on_failure=False)
    dt = time.perf_counter() - t
    print(f"closed form, D={width}, N={X.shape[1]}, {name}: {dt:.1f} s for {sol.iterations} "
          f"Newton steps ({dt / max(sol.iterations, 1):.2f} s per step), converged "
          f"{sol.converged} (max_iter {max_iter} here, {config.closed_form.max_iter} in the config)")


if __name__ == "__main__":
  main()
