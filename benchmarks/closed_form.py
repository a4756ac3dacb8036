"""Benchmark: the exact implicit bias (Eq. 8/13) at the paper's largest cell, the solver before
issue 12 against the current one, on the same problems in one run.

    python -m benchmarks.closed_form                       # D = 2e4, N = D^0.75 = 1681, c = 1, 1 seed
    python -m benchmarks.closed_form --seeds 3 --corr 1 2 --width 6161

For each seed and potential (negative entropy, 2-norm, 3-norm), `mdgeom.min_bregman_solution` with
  dense   method="dense": dual Newton, X H^{-1} X^T formed and Cholesky-factorised at every step
          (the method before issue 12; now the same Newton loop as cg, with a direct inner solve),
  cg      method="cg" (the default): matrix-free inexact Newton, preconditioned CG inside, Hessian
          products in float32, primal-dual iteration for the 3-norm,
  cg+w    method="cg" started from the trained weights (initial_guess), as the experiment does,
and then all three potentials in one `min_bregman_solutions` call from the trained weights (the
checks of X, its rank and the preconditioner shared), the experiment's cost per seed. Printed: wall
time per call, Newton steps, residual max|X w - y|, max|w_dense - w_cg| (and |w_cg - w_cg+w|),
and the ratio of times. Compilation is excluded: every jitted solver first runs once on the same
shapes with y = X w0 (which converges at once). The problems are the experiment's own
(`experiments.linear_regression.make_data`), and so are the trained weights and the starts made
from them (`train`, `warm_starts`).

Other jobs on a shared machine slow both solvers, not always alike: the load average is printed
before and after; compare ratios within one run, and absolute times only from a quiet run.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

from configs import linear_regression as lr_config
from experiments import linear_regression
from mdgeom import potentials, solve

POTENTIALS = ("negative_entropy", "2-norm", "3-norm")


def _load() -> str:
  return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _timed(fn, *args, **kwargs):
  t = time.perf_counter()
  out = fn(*args, **kwargs)
  return time.perf_counter() - t, out


def problems(width: int, n_d: float, corr: int, seeds: int):
  """(X, y, w0) for `seeds` seeds of one cell, and the trained weights (seeds, potentials, D),
  made by the experiment's own code (experiments.linear_regression.make_data and train)."""
  config = lr_config.get_config("paper")
  config.num_seeds = seeds
  X, y, w0 = linear_regression.make_data(config, corr, n_d, width)
  _, trained, _, _ = linear_regression.train(config, X, y, w0, POTENTIALS, X.shape[1], width)
  return (np.asarray(X[:seeds]), np.asarray(y[:seeds], np.float64),
          np.asarray(w0[:seeds], np.float64), np.asarray(trained, np.float64), config)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--width", type=int, default=20_000)
  parser.add_argument("--n-d", type=float, default=0.75, help="N = int(D ** n_d)")
  parser.add_argument("--corr", type=int, nargs="+", default=[1])
  parser.add_argument("--seeds", type=int, default=1)
  parser.add_argument("--max-iter", type=int, default=300)
  parser.add_argument("--skip-dense", action="store_true", help="time the new solver only")
  args = parser.parse_args()
  print(f"device: {jax.devices()[0]}, {os.cpu_count()} CPUs; {_load()}")
  rows = []
  for corr in args.corr:
    X, y, w0, trained, config = problems(args.width, args.n_d, corr, args.seeds)
    tol = config.closed_form.tol
    n, d = X.shape[1:]
    print(f"\nD = {d}, N = {n}, c = {corr}: tol {tol:g} (relative to 1 + max|y|), "
          f"max_iter {args.max_iter}")
    kw = {"tol": tol, "max_iter": args.max_iter, "raise_on_failure": False}
    # compile every solver on these shapes (y = X w0: converges at once)
    y_easy = X[0].astype(np.float64) @ w0[0]
    for name in POTENTIALS:
      solve.min_bregman_solution(name, X[0], y_easy, w0[0], **kw)
      solve.min_bregman_solution(name, X[0], y_easy, w0[0], initial_guess=w0[0], **kw)
      if not args.skip_dense:
        solve.min_bregman_solution(name, X[0], y_easy, w0[0], method="dense", **kw)
    print(f"{'seed':>4} {'potential':<17} {'dense s':>8} {'cg s':>6} {'cg+w s':>7} "
          f"{'dense/cg':>8} {'steps d/cg/cg+w':>16} {'residual cg':>11} "
          f"{'max|w_d-w_cg|':>13} {'|w_cg-w_cg+w|':>13}")
    for s in range(args.seeds):
      for i, name in enumerate(POTENTIALS):
        problem = (name, X[s], y[s], w0[s])
        t_cg, cg = _timed(solve.min_bregman_solution, *problem, **kw)
        guess = linear_regression.warm_starts([potentials.get(name)], [trained[s, i]], w0[s])[0]
        t_w, cgw = _timed(solve.min_bregman_solution, *problem, initial_guess=guess, **kw)
        if args.skip_dense:
          t_d, dense = float("nan"), None
        else:
          t_d, dense = _timed(solve.min_bregman_solution, *problem, method="dense", **kw)
        diff = np.max(np.abs(dense.w - cg.w)) if dense is not None else float("nan")
        steps = f"{dense.iterations if dense else '-'}/{cg.iterations}/{cgw.iterations}"
        flags = "" if cg.converged and cgw.converged else " (cg not converged)"
        if dense is not None and not dense.converged:
          flags += f" (dense not converged: residual {dense.residual:.1e})"
        print(f"{s:>4} {name:<17} {t_d:>8.2f} {t_cg:>6.2f} {t_w:>7.2f} {t_d / t_cg:>8.1f} "
              f"{steps:>16} {cg.residual:>11.1e} {diff:>13.1e} "
              f"{np.max(np.abs(cg.w - cgw.w)):>13.1e}{flags}", flush=True)
        rows.append((corr, name, t_d, t_cg, t_w, diff))
      pots = [potentials.get(p) for p in POTENTIALS]
      t_all, sols = _timed(solve.min_bregman_solutions, pots, X[s], y[s], w0[s],
                           initial_guesses=linear_regression.warm_starts(pots, trained[s], w0[s]),
                           **kw)
      print(f"{s:>4} all three in one call from the trained weights: {t_all:.2f} s (steps "
            f"{'/'.join(str(x.iterations) for x in sols)}; converged "
            f"{all(x.converged for x in sols)})", flush=True)
  print(f"\n{_load()}")
  print("medians over seeds (and correlation powers):")
  for name in POTENTIALS:
    r = np.array([row[2:] for row in rows if row[1] == name], np.float64)
    t_d, t_cg, t_w, diff = np.median(r, axis=0)
    print(f"  {name:<17} dense {t_d:6.2f} s  cg {t_cg:5.2f} s  cg+w {t_w:5.2f} s  "
          f"dense/cg {t_d / t_cg:5.1f}x  max|w_dense - w_cg| {np.max(r[:, 3]):.1e}")


if __name__ == "__main__":
  main()
