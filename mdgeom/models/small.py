"""Small models for CPU runs on 28x28 MNIST digits: an MLP and a narrow CNN.

They follow the zoo's conventions (`mdgeom.models`): hidden layers are named "0", "1", ...
(as in a torch `nn.Sequential`), the classifier is `readout`, and `analysed` selects the
hidden kernels.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from mdgeom.models import Model, register
from mdgeom.models.resnet import BatchNorm


def torch_uniform(fan_in_axes=(-2,)):
  """torch's default init for Linear/Conv weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  Unlike Flax's zero biases it leaves no exact zeros, which negative entropy cannot move."""
  def init(key, shape, dtype=jnp.float32, fan_in=None):
    import jax
    bound = 1.0 / jnp.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def _dense(features, fan_in, name):
  init = torch_uniform()
  return nn.Dense(features, name=name,
                  kernel_init=lambda k, s, d=jnp.float32: init(k, s, d, fan_in),
                  bias_init=lambda k, s, d=jnp.float32: init(k, s, d, fan_in))


def max_pool_2x2(x):
  """2x2/2 max-pool (floor mode) as a reshape + max: its gradient is a cheap select, where
  XLA:CPU's select-and-scatter for `nn.max_pool` is several times slower."""
  b, h, w, c = x.shape
  x = x[:, :h - h % 2, :w - w % 2]
  return jnp.max(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))


class MLP(nn.Module):
  """Flatten -> [Dense -> ReLU] x len(hidden) -> readout Dense, with torch's default init."""
  hidden: Sequence[int] = (256, 256)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape((x.shape[0], -1))
    for i, h in enumerate(self.hidden):
      x = nn.relu(_dense(h, x.shape[-1], str(i))(x))
    return _dense(self.num_classes, x.shape[-1], "readout")(x)


class SmallCNN(nn.Module):
  """[3x3 conv (torch-style padding 1) -> BN -> ReLU -> 2x2 max-pool] per width, global average
  pool, readout. No conv bias (batch norm follows), as in torchvision's networks."""
  widths: Sequence[int] = (16, 32, 64)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    for i, w in enumerate(self.widths):
      x = nn.Conv(w, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, name=f"conv{i}")(x)
      x = BatchNorm(name=f"bn{i}")(x, train)
      x = nn.relu(x)
      if i < len(self.widths) - 1:
        x = max_pool_2x2(x)
    x = jnp.mean(x, axis=(1, 2))
    return _dense(self.num_classes, x.shape[-1], "readout")(x)


@register("mlp")
def mlp(num_classes: int = 10, hidden: Sequence[int] = (256, 256),
        input_shape: tuple = (28, 28, 1)) -> Model:
  """The 784-256-256-10 MLP of the CPU finetuning runs."""
  return Model("mlp", MLP(tuple(hidden), num_classes), tuple(input_shape), num_classes,
               reference="mdgeom (no torch reference)")


@register("cnn_small")
def cnn_small(num_classes: int = 10, widths: Sequence[int] = (16, 32, 64),
              input_shape: tuple = (28, 28, 1)) -> Model:
  """A 16-32-64 CNN with batch norm for 28x28 inputs."""
  return Model("cnn_small", SmallCNN(tuple(widths), num_classes), tuple(input_shape), num_classes,
               reference="mdgeom (no torch reference)")
