"""Robustness to the hypothesised potential (paper section 4.2, Fig. 3B; docs/theory.md).

    python -m experiments.robustness --config=configs/robustness.py --workdir=runs/robustness
    python -m experiments.robustness --config=configs/robustness.py:small --workdir=runs/robustness_small
"""

import ml_collections

from mdgeom import analysis


def get_config(variant: str = "paper"):
  config = ml_collections.ConfigDict()
  config.seed = 0                 # every draw derives from this key
  config.num_seeds = 30           # independent (w0, xi) draws per cell
  config.num_weights = 1000       # D_sample: weights per draw
  config.width = 100              # D: w0 ~ N(0, 1/D); the dual change is scaled by f'(1/sqrt(D))
  config.change_scale = 0.1       # grad phi(w) = grad phi(w0) + change_scale * f'(1/sqrt(D)) * xi
  config.initializations = ("gaussian", "lognormal")
  config.true_potentials = ("negative_entropy", "2-norm", "3-norm")
  config.hypothesized_potentials = tuple(analysis.paper_candidates())  # NE, p = 1.1 ... 3.0
  config.delta_cdf_method = "grid"  # the paper's grid; "exact" for the Wasserstein-1 value

  if variant == "small":
    config.num_seeds = 5
    config.hypothesized_potentials = ("negative_entropy", "1.5-norm", "2-norm", "2.5-norm",
                                      "3-norm")
  elif variant != "paper":
    raise ValueError(f"unknown variant {variant!r} of configs/robustness.py: use 'paper' or "
                     "'small'.")
  config.lock()  # a key it does not have is an error, not a silently ignored knob
  return config
