"""Benchmark (b): the analysis of a 53.4M-weight network under 5 potentials vs brute force.

    python benchmarks/analysis_speed.py [--brute-force-weights N]

Weights before/after learning for a 53.4M-weight parameter tree (a multiplicative, sign-keeping
change, plus 0.5% dead weights that are exactly zero and never change). mdgeom.rank_potentials
computes, for negative entropy and the 1.5, 2, 2.5, 3-norms, the dual change, its magnitude and
the paper's grid Delta-CDF. The reference is the authors' brute force: the dual change, then an
n x 1000 comparison matrix against the grid (in chunks), in numpy float64. Prints both times, the
ratio, and the largest difference between the values. By default the brute force runs on all
weights (minutes per potential); --brute-force-weights N runs it on the first N weights of each
potential's change and scales its time to the full size (stated in the output).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

import mdgeom

CANDIDATES = ["negative_entropy", "1.5-norm", "2-norm", "2.5-norm", "3-norm"]
GRID = np.linspace(-5, 5, 1000)


def make_network(n_total=53_400_000, seed=0):
  """A parameter tree of 53.4M float32 weights in conv-like leaves."""
  sizes = [n_total // 8] * 7
  sizes.append(n_total - sum(sizes))
  key = jax.random.PRNGKey(seed)
  w0, w = {}, {}
  for i, size in enumerate(sizes):
    k0, k1, k2 = jax.random.split(jax.random.fold_in(key, i), 3)
    a = 0.02 * jax.random.normal(k0, (size,))
    b = a * jnp.exp(0.05 * jax.random.normal(k1, (size,)))
    dead = jax.random.bernoulli(k2, 0.005, (size,))
    w0[f"layer{i}"] = jnp.where(dead, 0.0, a)
    w[f"layer{i}"] = jnp.where(dead, 0.0, b)
  return w0, w


def brute_force(pot, a, b, n_use, chunk=200_000, naive=False):
  """The authors' method on the first n_use weights: dual change (naively: NaN at log 0), scale by
  its std over ALL weights, then mean(grid[:, None] > x[None, :]) chunk by chunk.

  Returns (Delta-CDF, seconds for the dual change and scale, seconds for the comparisons)."""
  t0 = time.perf_counter()
  fp = lambda v: np.asarray(pot.mirror_map(jnp.asarray(v)), np.float64)
  d = fp(b) - fp(a)
  if not naive:
    d = np.where(a == b, 0.0, d)  # unchanged weights: zero dual change
  s = np.std(d, ddof=1)
  x = d[:n_use] / s
  t1 = time.perf_counter()
  below = np.zeros(GRID.size)
  for i in range(0, x.size, chunk):
    below += (GRID[:, None] > x[None, i:i + chunk]).sum(axis=1)
  f = below / x.size
  value = float(np.abs(f - special.ndtr(GRID)).sum() * (GRID[1] - GRID[0]))
  return value, t1 - t0, time.perf_counter() - t1


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--brute-force-weights", type=int, default=0,
                      help="weights per potential for the brute force (0 = all)")
  args = parser.parse_args()
  w0, w = make_network()
  n = sum(x.size for x in jax.tree.leaves(w0))
  print(f"network: {n / 1e6:.1f}M weights, {int(sum(jnp.sum(x == 0) for x in jax.tree.leaves(w0)))} "
        "exact zeros (unchanged)")
  mdgeom.rank_potentials(jax.tree.map(lambda x: x[:1000], w0), jax.tree.map(lambda x: x[:1000], w),
                         CANDIDATES)  # compile on a small input
  times = []
  for _ in range(3):
    t = time.perf_counter()
    ranking = mdgeom.rank_potentials(w0, w, CANDIDATES)
    times.append(time.perf_counter() - t)
  ours = min(times)
  print(f"mdgeom.rank_potentials, 5 potentials: {ours:.2f} s (best of 3: "
        f"{', '.join(f'{t:.2f}' for t in times)})")
  print(ranking.table())

  a = np.concatenate([np.asarray(w0[k]).ravel() for k in sorted(w0)])
  b = np.concatenate([np.asarray(w[k]).ravel() for k in sorted(w)])
  n_use = min(args.brute_force_weights or a.size, a.size)
  by_name = {r.name: r.delta_cdf for r in ranking.results}
  scale = a.size / n_use
  bf_time, worst = 0.0, 0.0
  for name in CANDIDATES:
    pot = mdgeom.potentials.get(name)
    ref, t_change, t_compare = brute_force(pot, a, b, n_use)
    bf_time += t_change + t_compare * scale  # comparisons scale with the weights compared
    if n_use == a.size:
      worst = max(worst, abs(ref - by_name[pot.name]))
      print(f"  {pot.name:<18} brute force {ref:.8f}  mdgeom {by_name[pot.name]:.8f}")
  print(f"brute force, 5 potentials: {bf_time:.1f} s"
        + ("" if scale == 1 else f" (comparisons measured on {n_use} weights each, scaled "
           f"x{scale:.1f})")
        + f" = {bf_time / len(CANDIDATES) / 60:.1f} min per potential, "
        f"{a.size * len(CANDIDATES) / bf_time:.3g} weights/s")
  print(f"ratio brute force / mdgeom: {bf_time / ours:.0f}x")
  if n_use == a.size:
    print(f"largest |difference| in Delta-CDF: {worst:.2e} (goal <= 1e-6)")
  ne = mdgeom.potentials.negative_entropy()
  naive, _, _ = brute_force(ne, a[:2_000_000], b[:2_000_000], 2_000_000, naive=True)
  print(f"naive brute force under negative entropy with the exact zeros: {naive:.4f} "
        f"(NaN from log 0; mdgeom: {by_name['negative_entropy']:.4f})")


if __name__ == "__main__":
  main()
