"""ResNet18/34/50 as torchvision 0.29.1's `torchvision.models.resnet` (He et al. 2016, the "v1.5"
variant with the stride on the 3x3 convolution of the bottleneck), and `resnet_small` and
`resnet_tiny`, CIFAR-style ResNets (16-32-64 and 8-16-32 channels, no max-pool) for 28x28x1
inputs on CPU.

Module names are torchvision's attribute names ("layer1" / "0" / "conv1", "downsample" / "0"), so
`mdgeom.models.torch_import` maps a torchvision state dict onto these variables one to one. Also
defines `BatchNorm` and the torch-initialisers that the other torchvision ports share.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn

from mdgeom.models import Model, register

# torchvision's ResNet initialises convolutions with kaiming_normal_(mode="fan_out", relu): an
# untruncated normal of variance 2 / fan_out.
conv_kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# torch's default Conv2d/Linear weight init, kaiming_uniform_(a=sqrt(5)): U(+-1/sqrt(fan_in)).
torch_default_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias(fan_in: int):
  """torch's default Linear/Conv2d bias init, U(+-1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def readout(num_classes: int, fan_in: int) -> nn.Dense:
  """The classifier as torch's nn.Linear (weights and bias U(+-1/sqrt(fan_in))), named `readout`."""
  return nn.Dense(num_classes, kernel_init=torch_default_kernel,
                  bias_init=torch_default_bias(fan_in), name="readout")


def conv(features: int, kernel: int, stride: int = 1, padding: int = 0, groups: int = 1,
         kernel_init=torch_default_kernel, name: str | None = None) -> nn.Conv:
  """torch's Conv2d(bias=False) on NHWC: symmetric explicit padding, groups."""
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((padding, padding), (padding, padding)), feature_group_count=groups,
                 use_bias=False, kernel_init=kernel_init, name=name)


def max_pool_3x3_s2(x):
  """torch's MaxPool2d(3, stride=2, padding=1): flax pads with -inf like torch."""
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class BatchNorm(nn.Module):
  """torch's BatchNorm2d on NHWC, with Flax's variable names (params `scale`, `bias`,
  batch_stats `mean`, `var`).

  Unlike `flax.linen.BatchNorm`, the running variance is updated with the unbiased batch variance
  (n / (n - 1) times the biased one that normalises the batch), as torch does, so one train step
  moves the running statistics exactly as torch's. `momentum` is Flax's convention (the weight of
  the old statistic): torch's momentum 0.1 is 0.9 here. `affine=False` has no scale and bias
  (torch's `affine=False`, e.g. SimSiam's projector output).
  """
  momentum: float = 0.9
  epsilon: float = 1e-5
  affine: bool = True

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = x.shape[-1]
    if self.affine:
      scale = self.param("scale", nn.initializers.ones, (c,))
      bias = self.param("bias", nn.initializers.zeros, (c,))
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    if train:
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(x, axes)
      var = jnp.mean(jnp.square(x - mean), axes)
      if not self.is_initializing():
        n = x.size // c
        m = self.momentum
        ra_mean.value = m * ra_mean.value + (1 - m) * mean
        ra_var.value = m * ra_var.value + (1 - m) * var * (n / max(n - 1, 1))
    else:
      mean, var = ra_mean.value, ra_var.value
    if not self.affine:
      return (x - mean) * jax.lax.rsqrt(var + self.epsilon)
    return (x - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias


class Downsample(nn.Module):
  """torchvision's `downsample` Sequential: 1x1 conv ("0") and batch norm ("1")."""
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = conv(self.features, 1, self.stride, kernel_init=conv_kaiming_fan_out, name="0")(x)
    return BatchNorm(name="1")(x, train)


class BasicBlock(nn.Module):
  """torchvision's BasicBlock: two 3x3 convs, identity or 1x1-conv shortcut."""
  planes: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    init = conv_kaiming_fan_out
    out = conv(self.planes, 3, self.stride, 1, kernel_init=init, name="conv1")(x)
    out = nn.relu(BatchNorm(name="bn1")(out, train))
    out = conv(self.planes, 3, 1, 1, kernel_init=init, name="conv2")(out)
    out = BatchNorm(name="bn2")(out, train)
    if self.stride != 1 or x.shape[-1] != self.planes:
      x = Downsample(self.planes, self.stride, name="downsample")(x, train)
    return nn.relu(out + x)


class Bottleneck(nn.Module):
  """torchvision's Bottleneck (ResNet v1.5): 1x1, 3x3 (strided), 1x1 to 4 * planes."""
  planes: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    init = conv_kaiming_fan_out
    out = conv(self.planes, 1, kernel_init=init, name="conv1")(x)
    out = nn.relu(BatchNorm(name="bn1")(out, train))
    out = conv(self.planes, 3, self.stride, 1, kernel_init=init, name="conv2")(out)
    out = nn.relu(BatchNorm(name="bn2")(out, train))
    out = conv(self.planes * 4, 1, kernel_init=init, name="conv3")(out)
    out = BatchNorm(name="bn3")(out, train)
    if self.stride != 1 or x.shape[-1] != self.planes * 4:
      x = Downsample(self.planes * 4, self.stride, name="downsample")(x, train)
    return nn.relu(out + x)


class Layer(nn.Module):
  """torchvision's `layerN` Sequential of blocks named "0", "1", ...; the first one strides."""
  block: type
  planes: int
  num_blocks: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    for i in range(self.num_blocks):
      x = self.block(self.planes, self.stride if i == 0 else 1, name=str(i))(x, train)
    return x


class ResNet(nn.Module):
  """torchvision's ResNet on NHWC inputs.

  `small_stem=True` gives the CIFAR variant: a 3x3 stride-1 stem conv and no max-pool. Stage
  `i` has `widths[i]` planes and `stage_sizes[i]` blocks, and strides 2 except the first.
  `num_classes=0` drops the readout and returns the pooled features (torchvision's
  `fc = nn.Identity()`), e.g. SimSiam's encoder (`mdgeom.models.simsiam`).
  """
  block: type
  stage_sizes: Sequence[int]
  num_classes: int = 1000
  widths: Sequence[int] = (64, 128, 256, 512)
  small_stem: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    init = conv_kaiming_fan_out
    if self.small_stem:
      x = conv(self.widths[0], 3, 1, 1, kernel_init=init, name="conv1")(x)
    else:
      x = conv(self.widths[0], 7, 2, 3, kernel_init=init, name="conv1")(x)
    x = nn.relu(BatchNorm(name="bn1")(x, train))
    if not self.small_stem:
      x = max_pool_3x3_s2(x)
    for i, (planes, n) in enumerate(zip(self.widths, self.stage_sizes)):
      x = Layer(self.block, planes, n, 1 if i == 0 else 2, name=f"layer{i + 1}")(x, train)
    x = jnp.mean(x, axis=(1, 2))
    if not self.num_classes:
      return x
    return readout(self.num_classes, x.shape[-1])(x)


def _torchvision_resnet(name, block, stage_sizes, num_classes):
  return Model(name=name, module=ResNet(block, tuple(stage_sizes), num_classes),
               input_shape=(224, 224, 3), num_classes=num_classes, rename={"readout": "fc"},
               reference=f"torchvision.models.{name}")


@register("resnet18")
def resnet18(num_classes: int = 1000) -> Model:
  """torchvision.models.resnet18: BasicBlocks [2, 2, 2, 2]."""
  return _torchvision_resnet("resnet18", BasicBlock, (2, 2, 2, 2), num_classes)


@register("resnet34")
def resnet34(num_classes: int = 1000) -> Model:
  """torchvision.models.resnet34: BasicBlocks [3, 4, 6, 3]."""
  return _torchvision_resnet("resnet34", BasicBlock, (3, 4, 6, 3), num_classes)


@register("resnet50")
def resnet50(num_classes: int = 1000) -> Model:
  """torchvision.models.resnet50: Bottlenecks [3, 4, 6, 3]."""
  return _torchvision_resnet("resnet50", Bottleneck, (3, 4, 6, 3), num_classes)


def _cifar_resnet(name, widths, num_classes, blocks_per_stage) -> Model:
  module = ResNet(BasicBlock, (blocks_per_stage,) * len(widths), num_classes, widths=widths,
                  small_stem=True)
  return Model(name=name, module=module, input_shape=(28, 28, 1), num_classes=num_classes,
               rename={"readout": "fc"},
               reference="CIFAR-style ResNet (He et al. 2016, Sec. 4.2), torchvision block names")


@register("resnet_small")
def resnet_small(num_classes: int = 10, blocks_per_stage: int = 1) -> Model:
  """A CIFAR-style ResNet for 28x28x1 (MNIST) on CPU: 3x3 stride-1 stem, no max-pool, three
  stages of BasicBlocks with 16, 32, 64 channels (strides 1, 2, 2), global average pool
  (D = 76,432 conv and linear weights, so N = 276)."""
  return _cifar_resnet("resnet_small", (16, 32, 64), num_classes, blocks_per_stage)


@register("resnet_tiny")
def resnet_tiny(num_classes: int = 10, blocks_per_stage: int = 1) -> Model:
  """`resnet_small` at half its widths (8, 16, 32): D = 19,144, N = 138. A finetuning epoch costs
  a quarter of the flops per image on half the images: the main job's CPU network."""
  return _cifar_resnet("resnet_tiny", (8, 16, 32), num_classes, blocks_per_stage)
