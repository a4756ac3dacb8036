"""Benchmark: wall time of the linear-regression grid (Fig. 3A/6) and of its parts against the
authors' approach, measured in one run.

    python -m benchmarks.linear_regression_grid            # components + the :small grid
    python -m benchmarks.linear_regression_grid --full     # + the paper's full grid (Fig. 6 run)

Components, each against the authors' logic on the same sizes (D = 2e4, N = D^0.75 = 1681):
  inputs    correlated inputs for one seed: circulant embedding + FFT (mdgeom.data) vs a dense
            Cholesky factor of the D x D correlation matrix and a matrix product (authors). The
            authors factor once per correlation power and multiply 31 seeds' worth of normals.
  training  the learning-rate search (16 rates) and 30 seeds for one potential at the largest
            cell: fused columns + vmap over seeds (mdgeom.linear) vs one run after another
            (authors), the latter measured on a few runs and scaled to 16 + 30 runs.
The grids are run with the experiment itself, the exact solution (Eq. 8/13) of every seed
included, and their wall time is split into input pools, learning-rate search, training and
exact solutions (from the cells' timing fields). `python -m benchmarks.closed_form` compares the
exact solver with the one it replaced at the largest cell.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import jax
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


def grid(variant: str):
  config = lr_config.get_config(variant)
  with tempfile.TemporaryDirectory() as workdir:
    t = time.perf_counter()
    res = linear_regression.run(config, workdir)
    wall = time.perf_counter() - t
  return wall, res


def _parts(res) -> str:
  """The wall time's parts, from the cells' timing fields (per-group times divided evenly)."""
  cells = res["cells"]
  pools = sum(res.get("input_pool_seconds", {}).values())
  search = sum(c["lr_search_seconds"] + c["data_seconds"] for c in cells)
  train = sum(c["train_seconds"] - c["lr_search_seconds"] for c in cells)
  exact = sum(c["closed_form_seconds"] for c in cells)
  solves = sum(c["closed_form_seeds"] for c in cells)
  return (f"input pools {pools:.0f} s, data + lr search {search:.0f} s, training {train:.0f} s, "
          f"exact solutions {exact:.0f} s ({solves} solves)")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--full", action="store_true", help="also run the paper's full grid")
  parser.add_argument("--skip-components", action="store_true")
  args = parser.parse_args()
  print(f"device: {jax.devices()[0]}, {os.cpu_count()} CPUs")
  if not args.skip_components:
    inputs_component()
    training_component()
  wall, res = grid("small")
  print(f":small grid (4 widths x 2 N-scalings x 2 correlations x 3 potentials, 5 seeds, exact "
        f"solution for every seed): {wall:.1f} s wall; {_parts(res)}")
  if args.full:
    print(f"before the full grid: load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    wall, res = grid("paper")
    unconverged = sum(len(c["converged"]) - sum(c["converged"]) for c in res["cells"])
    exact_failed = sum(x is False for c in res["cells"] for x in c["closed_form_converged"])
    print(f"full grid (10 widths x 2 x 2 x 3 potentials, 30 seeds, lr search, exact solution for "
          f"every seed): {wall:.0f} s = {wall / 60:.1f} min; {_parts(res)}; {unconverged} of "
          f"{sum(len(c['converged']) for c in res['cells'])} seed runs above the loss target, "
          f"{exact_failed} exact solves not converged; load average after "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
  main()
