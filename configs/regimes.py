"""Lazy and rich regimes (paper section 4 "Theorem applicability", appendix A.1; docs/theory.md).

    python -m experiments.regimes --config=configs/regimes.py --workdir=runs/regimes
    python -m experiments.regimes --config=configs/regimes.py:small --workdir=runs/regimes_small
"""

import ml_collections
import numpy as np


def get_config(variant: str = "default"):
  config = ml_collections.ConfigDict()
  config.seed = 0                 # data, labels and initial-weight shapes all derive from this key
  config.num_seeds = 3            # independent (X, y, w0 shape) draws per point
  config.dim = 2000               # D: number of weights
  config.data_exponents = (0.25, 0.5, 0.7)  # N = round(D ** a) data points: 7, 45, 205
  # c: the initial weight scale, w0 = c * 1 (constant) or c * v (log-normal shape v)
  config.init_scales = tuple(float(c) for c in np.logspace(-4, 0, 9))
  config.init_kinds = ("constant", "lognormal")
  config.potentials = ("1.5-norm", "2-norm", "3-norm", "negative_entropy")
  config.max_iter = 300           # Newton steps of the exact solve (3-norm: ~100 when rich)
  config.curve_points = 161       # c values of the drawn bound curves (dense, log-spaced)
  # solves with N^2 D below this run op by op: cheaper than compiling XLA for each shape
  config.eager_below_cost = 2e5

  if variant == "small":
    config.num_seeds = 2
    config.dim = 400
    config.data_exponents = (0.3, 0.6)  # N = 6, 36
    config.init_scales = tuple(float(c) for c in np.logspace(-4, 0, 5))
  elif variant != "default":
    raise ValueError(f"unknown variant {variant!r} of configs/regimes.py: use 'default' or "
                     "'small'.")
  config.lock()  # a key it does not have is an error, not a silently ignored knob
  return config
