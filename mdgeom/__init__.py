"""mdgeom: the geometry of synaptic plasticity, with mirror descent in JAX.

Potentials (synaptic geometries), mirror descent for optax, and the analysis that infers the
geometry from weights before and after learning (Pogodin et al., ICLR 2024).
"""

from mdgeom import analysis
from mdgeom import data
from mdgeom import inference
from mdgeom import linear
from mdgeom import models
from mdgeom import potentials
from mdgeom import scales
from mdgeom import solve
from mdgeom import synaptic
from mdgeom import train
from mdgeom.analysis import (
    DegenerateChangeError,
    change_magnitude,
    delta_cdf,
    dual_change,
    exclude_paths,
    normality_tests,
    rank_potentials,
)
from mdgeom.inference import infer_geometry
from mdgeom.optim import MirrorDescentState, mirror_descent
from mdgeom.solve import (linearized_network_solution, linearized_solution, min_bregman_solution,
                          min_bregman_solutions)
from mdgeom.potentials import (
    Potential,
    SignFlipError,
    hypentropy,
    negative_entropy,
    pnorm,
    potential,
)

__version__ = "0.1.0"

__all__ = [
    "DegenerateChangeError",
    "MirrorDescentState",
    "Potential",
    "SignFlipError",
    "analysis",
    "change_magnitude",
    "delta_cdf",
    "data",
    "dual_change",
    "exclude_paths",
    "hypentropy",
    "inference",
    "infer_geometry",
    "linear",
    "linearized_network_solution",
    "linearized_solution",
    "models",
    "min_bregman_solution",
    "min_bregman_solutions",
    "mirror_descent",
    "negative_entropy",
    "normality_tests",
    "pnorm",
    "potential",
    "potentials",
    "scales",
    "rank_potentials",
    "solve",
    "synaptic",
    "train",
]
