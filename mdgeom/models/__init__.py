"""Flax models with a pure `apply(variables, x)`: the paper's ImageNet networks (ports of
torchvision's ResNet, ShuffleNet v2 and EfficientNet, dicarlolab's CORnet, and the
EfficientNet-Lite0 of `efficientnet-lite-pytorch`), small variants for CPU work, and the import of
their PyTorch weights from local files (`mdgeom.models.torch_import`).

Conventions, shared by every model so that analysis and import are one line each:
- Linen modules on NHWC inputs; `variables = {"params": ..., "batch_stats": ...}`.
- Module names are the reference implementation's attribute names ("layer1", "0", "conv1"), so a
  Flax path joined with "." is the torch key, except the classifier, which is always named
  `readout` (`Model.rename` maps it back to the torch name).
- Leaves: conv and linear weights are `kernel`, biases `bias`, batch-norm `scale`/`bias` and
  `batch_stats` `mean`/`var`. So the paper's analysed set ("conv and linear weights, readout,
  biases and batch norm excluded") is `where=mdgeom.models.analysed`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn


@dataclasses.dataclass(frozen=True)
class Model:
  """A model of the zoo: a Linen module and what the experiments need to know about it.

  Attributes:
    name: registry name ("resnet18").
    module: the Flax Linen module; `module.apply(variables, x, train=...)`.
    input_shape: (H, W, C) of one input image.
    num_classes: number of logits.
    rename: top-level Flax module name -> torch name, for weight import ({"readout": "fc"}).
    reference: where the architecture comes from (for docs and error messages).
    analysed: the leaf filter (path, leaf) -> bool of the weights the paper analyses (default:
      conv and linear kernels outside the readout; the RNN analyses its recurrent matrix only).
  """
  name: str
  module: nn.Module
  input_shape: tuple
  num_classes: int
  rename: Mapping[str, str] = dataclasses.field(default_factory=dict)
  reference: str = ""
  analysed: Callable[[str, Any], bool] = None  # set in __post_init__

  def __post_init__(self):
    if self.analysed is None:
      object.__setattr__(self, "analysed", analysed)

  def count_analysed(self, variables) -> int:
    """D of the paper: the number of weights this model's analysis uses."""
    leaves = jax.tree_util.tree_leaves_with_path(variables)
    return int(sum(np.prod(np.shape(x)) for p, x in leaves
                   if self.analysed(jax.tree_util.keystr(p), x)))

  def init(self, key, batch_size: int = 1):
    """Initial variables ({"params", "batch_stats"}) from a PRNG key."""
    x = jnp.zeros((batch_size, *self.input_shape), jnp.float32)
    return jax.jit(lambda k: self.module.init(k, x, train=False))(key)

  def apply(self, variables, x, train: bool = False):
    """Logits for a batch `x` (N, H, W, C). With `train=True`, batch norm uses batch statistics
    and the result is `(logits, new_batch_stats)`."""
    if not train:
      return self.module.apply(variables, x, train=False)
    if "batch_stats" not in variables:
      return self.module.apply(variables, x, train=True), {}
    logits, updates = self.module.apply(variables, x, train=True, mutable=["batch_stats"])
    return logits, updates["batch_stats"]


_REGISTRY: dict[str, Callable[..., Model]] = {}


def register(name: str):
  """Decorator registering a builder `f(num_classes=..., **kwargs) -> Model` under `name`."""
  def deco(builder):
    if name in _REGISTRY:
      raise ValueError(f"model {name!r} is already registered.")
    _REGISTRY[name] = builder
    return builder
  return deco


def names() -> list[str]:
  """Names of all registered models."""
  _load_all()
  return sorted(_REGISTRY)


def get(name: str, **kwargs) -> Model:
  """Builds a registered model, e.g. `get("resnet18", num_classes=1000)`."""
  _load_all()
  if name not in _REGISTRY:
    raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}.")
  return _REGISTRY[name](**kwargs)


def analysed(path: str, leaf: Any = None) -> bool:
  """The paper's analysed weights as a `rank_potentials(where=...)` filter: conv and linear
  weights (`kernel` leaves), without the readout, biases and batch-norm parameters."""
  return path.endswith("['kernel']") and "['readout']" not in path and "'batch_stats'" not in path


def count_params(tree) -> int:
  """Number of scalars in a pytree (e.g. `variables["params"]`)."""
  return int(sum(np.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(tree)))


def count_analysed(variables) -> int:
  """D of the paper: the number of analysed (conv and linear, non-readout) weights."""
  leaves = jax.tree_util.tree_leaves_with_path(variables)
  return int(sum(np.prod(np.shape(x)) for p, x in leaves
                 if analysed(jax.tree_util.keystr(p), x)))


_LOADED = False


def _load_all():
  # Model modules register themselves on import; import lazily to keep `import mdgeom` light.
  global _LOADED
  if _LOADED:
    return
  _LOADED = True
  import importlib
  for mod in _MODULES:
    try:
      importlib.import_module(f"mdgeom.models.{mod}")
    except ModuleNotFoundError as e:
      if e.name != f"mdgeom.models.{mod}":
        raise


# Files of the zoo; each registers its builders on import.
_MODULES = ("small", "resnet", "shufflenet", "efficientnet", "cornet", "rnn", "simsiam")

# Imported here so that `mdgeom.models.torch_import.load_pretrained` works after a plain
# `import mdgeom` (it needs numpy and jax only; torch is imported when a .pth file is read).
from mdgeom.models import torch_import

__all__ = ["Model", "analysed", "count_analysed", "count_params", "get", "names", "register",
           "torch_import"]
