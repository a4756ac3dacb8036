"""Calibration of the measurement-model inference: coverage and informativeness per class of data.

    python benchmarks/inference_calibration.py [--seeds 4] [--classes all] [--out calib.json]

For each class of data and each true geometry (negative entropy, the 2-norm, the 3-norm),
`--seeds` data sets are drawn and analysed by `mdgeom.infer_geometry` with its defaults
(noise, gain and silent fraction estimated; `noise=0` for trained networks, whose weights are
exact). Per cell it prints

  coverage   the fraction of data sets whose p interval contains the true p (p = 1: NE)
  separated  the fraction whose interval does not contain both 1 and 3 (NE and the 3-norm told
             apart)
  width      the median width of the p interval
  paper      how often the paper's statistic (`rank_potentials`, NE and the 1.5-3-norms) puts the
             true geometry first, for comparison

Classes (--classes, comma-separated):
  linreg     weights trained with mdgeom.mirror_descent on linear regression (Fig. 3A protocol:
             D = 2,000, N = D^0.5; the learning rate searched as in the paper)
  noise      synthetic pairs (the paper's robustness protocol, log-normal w0), n = 3,000, unknown
             noise 0%, 5%, 15%
  gain       as noise at 5%, with AFTER x 0.8 and x 1.25
  combined   a 60 x 50 matrix: unit scales (SD 0.5 of log a_i, log b_j), drift 0.3 SD, 15%
             silent, 5% noise, gain 1.1
  n          as noise at 5%, n = 300 and 20,000 (100,000 with --big)
Each data set's seed is fixed (seed index + a class offset), so a rerun reproduces every row.
Results go to --out atomically (temp file + rename), with the settings.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import jax
import numpy as np

from mdgeom import analysis, potentials, synthetic
from mdgeom.inference import infer_geometry

TRUE = {"negative_entropy": 1.0, "2-norm": 2.0, "3-norm": 3.0}
PAPER_CANDIDATES = ["negative_entropy", "1.5-norm", "2-norm", "2.5-norm", "3-norm"]


def synthetic_pair(true, shape, seed, *, noise=0.0, gain=1.0, **kw):
  w0, w = synthetic.weight_pair(jax.random.PRNGKey(seed), potentials.get(true), shape,
                                init="lognormal", **kw)
  w0, w = np.asarray(w0, np.float64), np.asarray(w, np.float64)
  if noise:
    k0, k1 = jax.random.split(jax.random.PRNGKey(10_000 + seed))
    w0 = np.asarray(synthetic.measurement_noise(k0, w0, noise), np.float64)
    w = np.asarray(synthetic.measurement_noise(k1, w, noise), np.float64)
  return w0, gain * w


def trained_linreg(true, seed, d=2000):
  from mdgeom import linear
  from mdgeom.data import regression

  kx, kw = jax.random.split(jax.random.PRNGKey(seed))
  x, y = regression.regression_problem(kx, int(round(d ** 0.5)), d, 1.0)
  w0 = jax.random.normal(kw, (d,)) / np.sqrt(d)
  s = linear.search_learning_rate(x, y, w0, [true], np.logspace(-7, -1, 16))[0]
  w = linear.fit(x, y, w0, [true], [s.learning_rate], [s.num_steps]).weights.reshape(-1)
  return np.asarray(w0, np.float64), np.asarray(w, np.float64)


def cells(big: bool):
  """(class, label, maker(true, seed) -> (w0, w, infer kwargs))."""
  out = [("linreg", "trained, D = 2,000", lambda t, s: (*trained_linreg(t, 100 + s),
                                                         {"noise": 0}))]
  for nz in (0.0, 0.05, 0.15):
    out.append(("noise", f"noise {100 * nz:g}%, n = 3,000",
                lambda t, s, nz=nz: (*synthetic_pair(t, (3000,), 200 + s, noise=nz), {})))
  for g in (0.8, 1.25):
    out.append(("gain", f"gain {g:g}, noise 5%",
                lambda t, s, g=g: (*synthetic_pair(t, (3000,), 300 + s, noise=0.05, gain=g),
                                   {})))
  out.append(("combined", "60 x 50, units, drift, 15% silent, 5% noise, gain 1.1",
              lambda t, s: (*synthetic_pair(t, (60, 50), 400 + s, noise=0.05, gain=1.1,
                                            unit_spread=0.5, drift=0.3, silent=0.15), {})))
  for n in (300, 20_000) + ((100_000,) if big else ()):
    out.append(("n", f"n = {n:,}, noise 5%",
                lambda t, s, n=n: (*synthetic_pair(t, (n,), 500 + s, noise=0.05), {})))
  return out


def paper_best(w0, w) -> str:
  return analysis.rank_potentials(w0, w, PAPER_CANDIDATES).best.name


def write_atomic(path, obj):
  d = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
  with os.fdopen(fd, "w") as f:
    json.dump(obj, f, indent=1)
  os.replace(tmp, path)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--seeds", type=int, default=4)
  ap.add_argument("--classes", default="all")
  ap.add_argument("--big", action="store_true", help="add n = 100,000")
  ap.add_argument("--out", default=None)
  args = ap.parse_args()
  want = None if args.classes == "all" else set(args.classes.split(","))
  todo = [c for c in cells(args.big) if want is None or c[0] in want]
  rows, t_start = [], time.time()
  done_cells = 0
  for cls, label, make in todo:
    for true, p_true in TRUE.items():
      cover = sep = paper = 0
      widths, secs = [], []
      for s in range(args.seeds):
        w0, w, kw = make(true, s)
        t0 = time.time()
        res = infer_geometry(w0, w, seed=s, **kw)
        secs.append(time.time() - t0)
        lo, hi = res.p_interval
        cover += lo - 1e-9 <= p_true <= hi + 1e-9
        sep += not (lo <= 1.0 and hi >= 3.0)
        widths.append(hi - lo)
        paper += potentials.get(paper_best(w0, w)).name == potentials.get(true).name
      row = {"class": cls, "cell": label, "true": true, "seeds": args.seeds,
             "coverage": cover / args.seeds, "separated": sep / args.seeds,
             "median_width": float(np.median(widths)), "paper_first": paper / args.seeds,
             "seconds_per_fit": float(np.mean(secs))}
      rows.append(row)
      done_cells += 1
      eta = (time.time() - t_start) / done_cells * (len(todo) * len(TRUE) - done_cells)
      print(f"{label:<55} {true:<17} coverage {cover}/{args.seeds}  separated {sep}/{args.seeds}"
            f"  width {row['median_width']:.2f}  paper {paper}/{args.seeds}  "
            f"{row['seconds_per_fit']:.0f} s/fit  (ETA {eta / 60:.0f} min)", flush=True)
      if args.out:
        write_atomic(args.out, {"settings": vars(args), "rows": rows})
  n_all = sum(r["seeds"] for r in rows)
  print(f"in all: coverage {sum(r['coverage'] * r['seeds'] for r in rows):.0f}/{n_all}, "
        f"separated {sum(r['separated'] * r['seeds'] for r in rows):.0f}/{n_all}")


if __name__ == "__main__":
  main()
