"""ShuffleNet v2 x0.5 and x1.0 as torchvision 0.29.1's `torchvision.models.shufflenetv2`
(Ma et al. 2018), on NHWC inputs.

Module names are torchvision's: "conv1" / "0" (conv), "1" (bn); "stage2" / "0" (an
InvertedResidual) / "branch1", "branch2" with their Sequential indices; "conv5"; the classifier
`readout` ("fc"). torchvision leaves every layer at torch's default initialisation, and so does
this port.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import flax.linen as nn

from mdgeom.models import Model, register
from mdgeom.models.resnet import BatchNorm, conv, max_pool_3x3_s2, readout


def channel_shuffle(x, groups: int):
  """torchvision's channel_shuffle on NHWC: torch views channels as (groups, C / groups) and
  transposes, so output channel j * groups + g is input channel g * (C / groups) + j."""
  n, h, w, c = x.shape
  x = x.reshape(n, h, w, groups, c // groups)
  return jnp.swapaxes(x, 3, 4).reshape(n, h, w, c)


class ConvBNReLU(nn.Module):
  """torchvision's `conv1` / `conv5` Sequential: conv ("0"), batch norm ("1"), ReLU."""
  features: int
  kernel: int
  stride: int = 1
  padding: int = 0

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = conv(self.features, self.kernel, self.stride, self.padding, name="0")(x)
    return nn.relu(BatchNorm(name="1")(x, train))


class Branch1(nn.Module):
  """`branch1` of a strided unit: 3x3 depthwise conv ("0"), bn ("1"), 1x1 conv ("2"), bn ("3"),
  ReLU."""
  features: int
  stride: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = x.shape[-1]
    x = conv(c, 3, self.stride, 1, groups=c, name="0")(x)
    x = BatchNorm(name="1")(x, train)
    x = conv(self.features, 1, name="2")(x)
    return nn.relu(BatchNorm(name="3")(x, train))


class Branch2(nn.Module):
  """`branch2`: 1x1 conv ("0"), bn ("1"), ReLU ("2"), 3x3 depthwise conv ("3"), bn ("4"),
  1x1 conv ("5"), bn ("6"), ReLU ("7")."""
  features: int
  stride: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    f = self.features
    x = conv(f, 1, name="0")(x)
    x = nn.relu(BatchNorm(name="1")(x, train))
    x = conv(f, 3, self.stride, 1, groups=f, name="3")(x)
    x = BatchNorm(name="4")(x, train)
    x = conv(f, 1, name="5")(x)
    return nn.relu(BatchNorm(name="6")(x, train))


class InvertedResidual(nn.Module):
  """torchvision's InvertedResidual: with stride 1, the first half of the channels passes
  through and the second goes through `branch2`; with stride > 1 both branches see the input.
  Then the two halves are concatenated and shuffled."""
  features: int
  stride: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    half = self.features // 2
    if self.stride == 1:
      if x.shape[-1] != 2 * half:
        raise ValueError(f"stride 1 needs {2 * half} input channels, got {x.shape[-1]}.")
      x1, x2 = jnp.split(x, 2, axis=-1)
      out = jnp.concatenate([x1, Branch2(half, 1, name="branch2")(x2, train)], axis=-1)
    else:
      out = jnp.concatenate([Branch1(half, self.stride, name="branch1")(x, train),
                             Branch2(half, self.stride, name="branch2")(x, train)], axis=-1)
    return channel_shuffle(out, 2)


class Stage(nn.Module):
  """`stageN`: a strided unit then `repeats - 1` unstrided ones, named "0", "1", ..."""
  features: int
  repeats: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    for i in range(self.repeats):
      x = InvertedResidual(self.features, 2 if i == 0 else 1, name=str(i))(x, train)
    return x


class ShuffleNetV2(nn.Module):
  """torchvision's ShuffleNetV2: conv1 (3x3 stride 2), max-pool, stage2-4, conv5 (1x1), global
  average pool, readout."""
  stages_repeats: Sequence[int]
  stages_out_channels: Sequence[int]
  num_classes: int = 1000

  @nn.compact
  def __call__(self, x, train: bool = False):
    chans = self.stages_out_channels
    x = ConvBNReLU(chans[0], 3, 2, 1, name="conv1")(x, train)
    x = max_pool_3x3_s2(x)
    for i, (repeats, features) in enumerate(zip(self.stages_repeats, chans[1:4])):
      x = Stage(features, repeats, name=f"stage{i + 2}")(x, train)
    x = ConvBNReLU(chans[-1], 1, name="conv5")(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return readout(self.num_classes, x.shape[-1])(x)


def _shufflenet(name, out_channels, num_classes):
  module = ShuffleNetV2((4, 8, 4), tuple(out_channels), num_classes)
  return Model(name=name, module=module, input_shape=(224, 224, 3), num_classes=num_classes,
               rename={"readout": "fc"}, reference=f"torchvision.models.{name}")


@register("shufflenet_v2_x0_5")
def shufflenet_v2_x0_5(num_classes: int = 1000) -> Model:
  """torchvision.models.shufflenet_v2_x0_5: channels [24, 48, 96, 192, 1024]."""
  return _shufflenet("shufflenet_v2_x0_5", (24, 48, 96, 192, 1024), num_classes)


@register("shufflenet_v2_x1_0")
def shufflenet_v2_x1_0(num_classes: int = 1000) -> Model:
  """torchvision.models.shufflenet_v2_x1_0: channels [24, 116, 232, 464, 1024]."""
  return _shufflenet("shufflenet_v2_x1_0", (24, 116, 232, 464, 1024), num_classes)
