"""Inferring the geometry of plasticity from weights measured before and after learning.

Small modules, each found by its name:

  io          reading CSV/NPY/NPZ weights and synapse tables with unit ids; input checks
  candidates  candidate potentials (names, objects, "module:function") and their dual changes
  geometry    `infer_geometry`, the front door: checks, flattens, runs a method
  -- the measurement model (the default method) --
  likelihood  the density of AFTER given BEFORE: families of geometries, noise by quadrature
  mle         maximum likelihood (Newton), the sandwich variance
  profile     profile likelihoods, robust intervals, Vuong's test between families
  measured    preparing measured pairs, fitting each family, the nuisances' estimates
  fit_check   the best model's goodness of fit, calibrated by simulation
  model       `infer_model`: families -> statuses, interval, nuisances
  report      `ModelInference`: the table, the verdict, the notes
  -- the Delta-CDF method --
  statistic   the Delta-CDF statistic, its paired Poisson bootstrap, its Gaussian null, intervals
  noise       measurement noise: each candidate calibrated against simulations of itself
  verdicts    statuses and the sentence that says what the data support
  delta_cdf   `infer_delta_cdf`, which puts them together
  design      `identification_power`: how many synapses an experiment needs
  figures     the inference and design figures
  cli         `mdgeom infer` and `mdgeom design`
"""

from mdgeom.inference.candidates import default_candidates
from mdgeom.inference.geometry import GeometryInference, ModelInference, infer_geometry
from mdgeom.inference.io import InferenceError, check_pair, read_unit_ids, read_weights

__all__ = ["GeometryInference", "InferenceError", "ModelInference", "check_pair",
           "default_candidates", "infer_geometry", "read_unit_ids", "read_weights"]
