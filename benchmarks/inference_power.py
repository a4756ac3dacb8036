"""Identification of the true geometry on data that look like measurements: the paper's statistic
against mdgeom.infer_geometry's defaults, side by side.

    python benchmarks/inference_power.py [--seeds 8] [--n 300,2000,20000] [--json out.json]

For each scenario (clean; drift: a net change of 0.5 SD; silent: 20% of synapses unchanged;
units: a [rows, cols] matrix with per-unit scales, SD 0.5 of log a_i and log b_j; noise: 2, 5,
10% multiplicative measurement noise), number of synapses n and true geometry (negative entropy,
2-norm, 3-norm), `--seeds` pairs are drawn with mdgeom.synthetic.weight_pair (the paper's
robustness protocol: w0 ~ N(0, 0.01), dual change 0.1 |f'(0.1)| z) and analysed by

  paper  mdgeom.rank_potentials with its defaults: the uncentred, pooled Delta-CDF with unchanged
         weights kept (the paper's statistic); negative entropy ruled out by sign flips;
  new    mdgeom.infer_geometry with its defaults (centred; unchanged weights excluded; per-unit
         scales for 2-D input; --noise given the true noise level in the noise scenarios).

The candidates are the paper's hypotheses for networks: NE and the 1.5, 2, 2.5, 3-norms. A pair
is identified when the best candidate is the true one. Prints "hits/seeds" per cell, and the
seconds each method took in all.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from mdgeom import analysis, potentials, synthetic
from mdgeom.inference import infer_geometry

CANDIDATES = ["negative_entropy", "1.5-norm", "2-norm", "2.5-norm", "3-norm"]
TRUE = ["negative_entropy", "2-norm", "3-norm"]
SCENARIOS = {
    "clean": {},
    "drift 0.5 SD": {"drift": 0.5},
    "silent 20%": {"silent": 0.2},
    "per-unit scales": {"unit_spread": 0.5},
    "noise 2%": {"noise": 0.02},
    "noise 5%": {"noise": 0.05},
    "noise 10%": {"noise": 0.1},
}


def matrix_shape(n: int) -> tuple[int, int]:
  rows = int(round(np.sqrt(n / 2)))
  return rows, int(round(n / rows))


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--seeds", type=int, default=8)
  ap.add_argument("--n", default="300,2000,20000")
  ap.add_argument("--json", default=None)
  args = ap.parse_args()
  ns = [int(x) for x in args.n.split(",")]
  out = {"seeds": args.seeds, "n": ns, "candidates": CANDIDATES, "cells": []}
  seconds = {"paper": 0.0, "new": 0.0}
  head = "".join(f"{potentials.short_label(t):>6}" for t in TRUE)
  labels = ", ".join(potentials.short_label(c) for c in CANDIDATES)
  print(f"hits out of {args.seeds} seeds: the best of {labels} is the true geometry")
  print(f"{'scenario':<16}{'n':>7}   paper:{head}    new:{head}")
  for s_index, (name, kw) in enumerate(SCENARIOS.items()):
    for n in ns:
      shape = matrix_shape(n) if "unit_spread" in kw else (n,)
      hits = {"paper": [], "new": []}
      for t in TRUE:
        pot = potentials.get(t)
        h = {"paper": 0, "new": 0}
        for seed in range(args.seeds):
          key = jax.random.fold_in(jax.random.PRNGKey(seed), 1000 * s_index + n)
          w0, w = synthetic.weight_pair(key, pot, shape, **kw)
          w0, w = np.asarray(w0, np.float64), np.asarray(w, np.float64)
          t0 = time.perf_counter()
          paper = analysis.rank_potentials(w0, w, CANDIDATES)
          seconds["paper"] += time.perf_counter() - t0
          h["paper"] += paper.best.name == pot.name
          t0 = time.perf_counter()
          new = infer_geometry(w0, w, CANDIDATES, method="delta_cdf", noise=kw.get("noise", 0.0),
                               n_boot=50,
                               n_null=50, n_sim=100, seed=seed)
          seconds["new"] += time.perf_counter() - t0
          h["new"] += new.best == pot.name
        hits["paper"].append(h["paper"])
        hits["new"].append(h["new"])
      out["cells"].append({"scenario": name, "n": n, "shape": shape, **hits})
      print(f"{name:<16}{n:>7}         " + "".join(f"{x:>6}" for x in hits["paper"]) +
            "         " + "".join(f"{x:>6}" for x in hits["new"]), flush=True)
  total = {k: sum(sum(c[k]) for c in out["cells"]) for k in ("paper", "new")}
  cells = len(out["cells"]) * len(TRUE) * args.seeds
  print(f"identified: paper {total['paper']}/{cells}, new {total['new']}/{cells}; seconds: "
        f"paper {seconds['paper']:.0f}, new {seconds['new']:.0f} (n_boot=50, n_null=50, "
        "n_sim=100)")
  out["seconds"] = seconds
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
