"""The README's inference figures: the worked example of `mdgeom infer` and the design tool.

    python -m figures.inference [--out-dir figures] [--reps 50]

1. Writes the example synapse table (`examples/make_synapse_table.py`: 3,000 synapses between 60
   and 50 neurons, negative entropy, per-neuron activity levels, net potentiation, 10% silent,
   8% noise on every image, a repeated baseline, gain 1.1), runs `mdgeom infer` on it exactly as
   docs/inference.md shows, and keeps its figure (infer_example.png) and printed table.
2. Runs `mdgeom design` over n = 300, 1,000, 3,000, 10,000 synapses and noise 0, 5, 10% (the
   paper's robustness protocol; NE, 2-norm, 3-norm to be told apart among NE and the 1.5-3-norms)
   and keeps its figure (design_power.png) and table.
Every draw comes from fixed seeds, so a rerun gives the same figures.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from mdgeom import cli


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--out-dir", default="figures")
  ap.add_argument("--reps", default="50")
  args = ap.parse_args(argv)
  from examples import make_synapse_table

  with tempfile.TemporaryDirectory() as tmp:
    table = os.path.join(tmp, "example_synapses.csv")
    make_synapse_table.main([table])
    code = cli.main(["infer", table, table, "--before-column", "volume_before",
                     "--after-column", "volume_after", "--repeat-column",
                     "volume_before_repeat", "--units", "pre,post",
                     "--figure", os.path.join(args.out_dir, "infer_example.png")])
    if code:
      raise SystemExit(code)
  code = cli.main(["design", "--n", "300,1000,3000,10000", "--noise", "0,0.05,0.1", "--reps",
                   args.reps, "--figure", os.path.join(args.out_dir, "design_power.png")])
  if code:
    raise SystemExit(code)


if __name__ == "__main__":
  main()
