"""Linear regression (paper section 4.1, Fig. 3A and Fig. 6; appendix B.1; docs/theory.md).

    python -m experiments.linear_regression --config=configs/linear_regression.py --workdir=runs/linreg
    python -m experiments.linear_regression --config=configs/linear_regression.py:small --workdir=runs/linreg_small
"""

import ml_collections
import numpy as np


def get_config(variant: str = "paper"):
  config = ml_collections.ConfigDict()
  config.seed = 0                    # all data, labels and initial weights derive from this key
  config.prng_impl = "threefry2x32"  # inputs' PRNG; "rbg" is faster on CPU, backend-specific
  config.num_seeds = 30              # trained seeds per cell; one more, held out, picks the lr
  config.widths = tuple(int(d) for d in np.logspace(2, np.log10(2e4), 10).astype(int))
  config.n_d_exponents = (0.5, 0.75)  # N = int(D ** exponent) data points
  config.corr_powers = (1, 2)        # input correlation (-1)^k / (1 + (k / corr_scale)^c)
  config.corr_scale = 1.0
  config.input_noise = 0.5           # plus uniform noise on [-0.5, 0.5]
  config.potentials = ("negative_entropy", "2-norm", "3-norm")
  config.momentum = 0.9
  config.lr_grid = tuple(float(v) for v in np.logspace(-7, -1, 16))
  config.epochs = 100                # full-batch steps; +extra_epochs while loss > target
  config.extra_epochs = 100
  config.max_epochs = 500
  config.loss_target = 1e-3
  # "Final loss" of the lr search (and its extension test): "final" = at the final weights;
  # "last_forward" = the authors' loop, the loss of the last forward pass (before the last step)
  config.lr_search_loss = "final"
  config.max_batch_bytes = 2_000_000_000  # seeds per vmapped batch: inputs up to this size

  config.closed_form = ml_collections.ConfigDict()
  config.closed_form.enabled = True
  # The exact solve (method="cg": matrix-free Newton, float32 Hessian products, started from
  # the trained weights) takes ~1-3 s per seed for all three potentials at D = 2e4, N = 1681
  # (benchmarks/closed_form.py), so every seed of every cell is compared.
  config.closed_form.num_seeds = 30       # seeds compared with the exact solution (Eq. 8/13)
  config.closed_form.tol = 1e-9           # constraint residual (relative to max |y|), float64
  config.closed_form.max_iter = 300       # Newton steps (3-10 are typical)
  config.closed_form.warm_start = True    # start Newton from the trained weights

  if variant == "small":
    config.num_seeds = 5
    config.widths = (100, 215, 464, 1000)
    config.closed_form.num_seeds = 5
  elif variant != "paper":
    raise ValueError(f"unknown variant {variant!r} of configs/linear_regression.py: use 'paper' "
                     "or 'small'.")
  config.lock()  # a key it does not have is an error, not a silently ignored knob
  return config
