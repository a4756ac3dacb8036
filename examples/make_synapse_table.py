"""Writes a synapse table like one from an imaging experiment, with a known geometry, for the
README's worked example of `mdgeom infer`.

    python examples/make_synapse_table.py example_synapses.csv [--true negative_entropy]

3,000 synapses between 60 presynaptic and 50 postsynaptic neurons (every pair), volumes before
and after learning: initial volumes log-normal (mean 0.1), a Gaussian dual change under the true
geometry (the paper's robustness protocol, 0.1 |f'(0.1)| per synapse) with per-neuron activity
levels (SD 0.5 of their logs), a net potentiation of 0.3 SD, and 5% multiplicative
measurement noise on both volumes. Columns: synapse, pre, post, volume_before,
volume_after. Every draw comes from --seed.
"""

from __future__ import annotations

import argparse
import csv

import jax
import numpy as np

from mdgeom import potentials, synthetic


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("out")
  ap.add_argument("--true", default="negative_entropy")
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args(argv)
  w0, w = synthetic.weight_pair(jax.random.PRNGKey(args.seed), potentials.get(args.true),
                                (60, 50), init="lognormal", w0_scale=0.1, change=0.1, drift=0.3,
                                unit_spread=0.5, noise=0.05)
  sign = np.sign(np.asarray(w0, np.float64))  # volumes are positive: flip each pair's sign
  w0, w = sign * np.asarray(w0, np.float64), sign * np.asarray(w, np.float64)
  with open(args.out, "w", newline="") as f:
    out = csv.writer(f)
    out.writerow(["synapse", "pre", "post", "volume_before", "volume_after"])
    k = 0
    for i in range(w0.shape[0]):
      for j in range(w0.shape[1]):
        out.writerow([k, f"pre{i:02d}", f"post{j:02d}", f"{w0[i, j]:.6g}", f"{w[i, j]:.6g}"])
        k += 1
  print(f"wrote {args.out}: {w0.size} synapses, true geometry {potentials.get(args.true).name}")


if __name__ == "__main__":
  main()
