"""Inferring the geometry of plasticity from weights measured before and after learning.

Small modules, each found by its name:

  io          reading CSV/NPY/NPZ weights and synapse tables with unit ids; input checks
  candidates  candidate potentials (names, objects, "module:function") and their dual changes
  statistic   the Delta-CDF statistic, its paired Poisson bootstrap, its Gaussian null, intervals
  noise       measurement noise: each candidate calibrated against simulations of itself
  verdicts    statuses and the sentence that says what the data support
  geometry    `infer_geometry`, which puts them together
  design      `identification_power`: how many synapses an experiment needs
  figures     the inference and design figures
  cli         `mdgeom infer` and `mdgeom design`
"""

from mdgeom.inference.candidates import default_candidates
from mdgeom.inference.geometry import GeometryInference, infer_geometry
from mdgeom.inference.io import InferenceError, check_pair, read_unit_ids, read_weights

__all__ = ["GeometryInference", "InferenceError", "check_pair", "default_candidates",
           "infer_geometry", "read_unit_ids", "read_weights"]
