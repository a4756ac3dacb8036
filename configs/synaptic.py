"""Spine volumes and three geometries (paper section 4.4, Fig. 5; docs/theory.md).

    python -m experiments.synaptic_data --config=configs/synaptic.py --workdir=runs/synaptic
    python -m experiments.synaptic_data --config=configs/synaptic.py \
        --config.data_path=/path/to/soma_subgraph_synapses_spines_v185.csv
"""

import ml_collections


def get_config(variant: str = "paper"):
  config = ml_collections.ConfigDict()
  # MICrONS L2/3 v185 table, not part of the repository: download it from Zenodo record 3710459
  # (https://zenodo.org/records/3710459) into data/ (ignored by git), or pass
  # --config.data_path=/path/to/soma_subgraph_synapses_spines_v185.csv. Relative to the working
  # directory (the repository root in the README's commands).
  config.data_path = "data/microns_l23_v185/soma_subgraph_synapses_spines_v185.csv"
  config.column = "spine_vol_um3"   # spine head volume, um^3 (see the data README)
  config.expected_rows = 1961
  config.seed = 0                   # seeds every optimiser start
  config.em_starts = 8              # negative entropy: EM starts for the two-Gaussian mixture
  config.pnorm_starts = 3           # p-norm models: L-BFGS-B starts
  config.constant = 1e-2            # the small constant initial weight of Fig. 5B (um^3)
  config.n_bins = 1000              # log-normal quadrature bins for the reported likelihoods
  # Sensitivity: the Euclidean model refitted with other constants (not small ones included).
  config.euclidean_constants = (0.02, 0.035)
  config.fit_ks_alpha = 0.01        # a model "fits" when its KS p-value is at least this

  if variant == "quick":
    config.em_starts = 3
    config.pnorm_starts = 2
    config.n_bins = 600
    config.euclidean_constants = ()
  elif variant != "paper":
    raise ValueError(f"unknown variant {variant!r} of configs/synaptic.py: use 'paper' or "
                     "'quick'.")
  config.lock()  # a key it does not have is an error, not a silently ignored knob
  return config
