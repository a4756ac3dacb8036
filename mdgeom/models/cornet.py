"""CORnet-S and CORnet-RT of dicarlolab (github.com/dicarlolab/CORnet, `cornet/cornet_s.py` and
`cornet/cornet_rt.py`; Kubilius et al. 2019) in Flax Linen on NHWC inputs.

Module names are the torch ones ("V1", "V2", "V4", "IT", "norm1_0", ...), so the official
DataParallel checkpoints ("module." prefix, stripped by `torch_import.load_state_dict`) import
one to one; the readout is `readout` ("decoder.linear").

Note: the PyPI package named `cornet` is an unrelated tool; dicarlolab's CORnet is installed from
its repository (pip install git+https://github.com/dicarlolab/CORnet).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
import flax.linen as nn

from mdgeom.models.resnet import BatchNorm
from mdgeom.models import Model, register


def _conv(features, kernel, stride=1, padding=0, bias=False, name=None):
  # torch Conv2d with symmetric integer padding.
  return nn.Conv(features, (kernel, kernel), (stride, stride),
                 padding=((padding, padding), (padding, padding)), use_bias=bias, name=name)


def _bn(train: bool, name: str):
  # torch BatchNorm2d defaults (momentum 0.1 = Flax 0.9, eps 1e-5), unbiased running variance.
  bn = BatchNorm(momentum=0.9, epsilon=1e-5, name=name)
  return lambda x: bn(x, train)


class _SharedConv(nn.Module):
  """A bias-free 3x3 conv, padding 1, whose stride is a call argument: CORblock_S reuses one conv2
  weight with stride 2 at step 0 and stride 1 after (torch mutates `conv2.stride`)."""
  features: int

  @nn.compact
  def __call__(self, x, stride: int):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (3, 3, x.shape[-1], self.features))
    return lax.conv_general_dilated(x, kernel.astype(x.dtype), (stride, stride), ((1, 1), (1, 1)),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


class CORblockS(nn.Module):
  """CORblock_S: a 1x1 `conv_input`, then `times` recurrent bottleneck steps sharing conv1-3 but
  with a batch norm per step (`norm{1,2,3}_{t}`); step 0 downsamples (conv2 stride 2) and adds the
  projected skip `norm_skip(skip(x))`, later steps add the identity."""
  out_channels: int
  times: int = 1
  scale: int = 4  # bottleneck expansion

  @nn.compact
  def __call__(self, inp, train: bool = False):
    c, wide = self.out_channels, self.out_channels * self.scale
    x = _conv(c, 1, name="conv_input")(inp)
    conv1 = _conv(wide, 1, name="conv1")
    conv2 = _SharedConv(wide, name="conv2")
    conv3 = _conv(c, 1, name="conv3")
    for t in range(self.times):
      skip = _bn(train, "norm_skip")(_conv(c, 1, 2, name="skip")(x)) if t == 0 else x
      x = nn.relu(_bn(train, f"norm1_{t}")(conv1(x)))
      x = nn.relu(_bn(train, f"norm2_{t}")(conv2(x, 2 if t == 0 else 1)))
      x = _bn(train, f"norm3_{t}")(conv3(x))
      x = nn.relu(x + skip)
    return x


class _V1S(nn.Module):
  # CORnet-S's V1: conv 7x7/2, BN, ReLU, max pool 3/2 (pad 1), conv 3x3, BN, ReLU.
  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.relu(_bn(train, "norm1")(_conv(64, 7, 2, 3, name="conv1")(x)))
    x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    return nn.relu(_bn(train, "norm2")(_conv(64, 3, 1, 1, name="conv2")(x)))


class CORnetS(nn.Module):
  """CORnet-S: V1, V2 (128 channels, 2 steps), V4 (256, 4), IT (512, 2), average pool, linear
  readout ("decoder.linear")."""
  num_classes: int = 1000

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _V1S(name="V1")(x, train)
    x = CORblockS(128, times=2, name="V2")(x, train)
    x = CORblockS(256, times=4, name="V4")(x, train)
    x = CORblockS(512, times=2, name="IT")(x, train)
    return nn.Dense(self.num_classes, name="readout")(jnp.mean(x, axis=(1, 2)))


def _group_norm(name: str):
  # torch GroupNorm(32, C), eps 1e-5; exact two-pass variance (a block's t=0 input is constant).
  return nn.GroupNorm(num_groups=32, epsilon=1e-5, use_fast_variance=False, name=name)


class CORblockRT(nn.Module):
  """CORblock_RT: `conv_input` (kernel k, stride s, bias) + GroupNorm + ReLU on the input when
  there is one, added to the state, then conv1 3x3 + GroupNorm + ReLU; the output is the new
  state. Called once per time step (shared parameters)."""
  out_channels: int
  kernel: int = 3
  stride: int = 1

  @nn.compact
  def __call__(self, inp, state=None, out_hw=None, batch_size=None):
    if inp is None:  # t = 0 above V1: no input yet, a zero map of the block's output size
      inp = jnp.zeros((batch_size, *out_hw, self.out_channels), jnp.float32)
    else:
      inp = _conv(self.out_channels, self.kernel, self.stride, self.kernel // 2, bias=True,
                  name="conv_input")(inp)
      inp = nn.relu(_group_norm("norm_input")(inp))
    x = inp if state is None else inp + state  # the state is 0 at t = 0
    x = _conv(self.out_channels, 3, 1, 1, name="conv1")(x)
    return nn.relu(_group_norm("norm1")(x))


def _conv_out(size: int, kernel: int, stride: int) -> int:
  pad = kernel // 2
  return (size + 2 * pad - kernel) // stride + 1


class CORnetRT(nn.Module):
  """CORnet-RT with `times` steps (5): V1 (64 channels, 7x7/4), V2 (128), V4 (256), IT (512),
  each 3x3/2 on its input. At t=0 only V1 sees the image; V2 and up get a zero map, with zero
  state. At each later step every area updates from the previous step's output of the area below
  and its own state. The readout ("decoder.linear") reads IT's last output, average pooled.

  The reference sizes the t=0 zero maps for 224x224 images (56, 28, 14, 7); here they are the
  areas' output sizes for the actual input, the same at 224.
  """
  num_classes: int = 1000
  times: int = 5

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # no batch norm, no dropout
    specs = (("V1", 64, 7, 4), ("V2", 128, 3, 2), ("V4", 256, 3, 2), ("IT", 512, 3, 2))
    blocks, sizes = [], []
    h, w = x.shape[1:3]
    for name, c, k, s in specs:
      h, w = _conv_out(h, k, s), _conv_out(w, k, s)
      blocks.append(CORblockRT(c, k, s, name=name))
      sizes.append((h, w))
    # t = 0: V1 from the image; the others from a zero input; all with zero state.
    outputs = [blocks[0](x)]
    outputs += [b(None, None, hw, x.shape[0]) for b, hw in zip(blocks[1:], sizes[1:])]
    states = list(outputs)
    for _ in range(1, self.times):
      below = [x] + outputs[:-1]
      outputs = [block(inp, st) for block, inp, st in zip(blocks, below, states)]
      states = list(outputs)
    return nn.Dense(self.num_classes, name="readout")(jnp.mean(outputs[-1], axis=(1, 2)))


CORNET_WEIGHTS_HOW_TO_GET = (
    "The ImageNet checkpoints of dicarlolab/CORnet (cornet_s-1d3f7974.pth, "
    "cornet_rt-933c001c.pth) are linked from its README and cornet/__init__.py; download one "
    "and pass the local file (DataParallel keys are fine).")


@register("cornet_s")
def cornet_s(num_classes: int = 1000, **kwargs) -> Model:
  """dicarlolab's CORnet-S (53,416,616 parameters at 1000 classes), 224x224 inputs."""
  return Model(name="cornet_s", module=CORnetS(num_classes=num_classes, **kwargs),
               input_shape=(224, 224, 3), num_classes=num_classes,
               rename={"readout": "decoder.linear"}, reference="dicarlolab/CORnet cornet.cornet_s")


@register("cornet_rt")
def cornet_rt(num_classes: int = 1000, **kwargs) -> Model:
  """dicarlolab's CORnet-RT with 5 time steps (5,208,936 parameters at 1000 classes), 224x224."""
  return Model(name="cornet_rt", module=CORnetRT(num_classes=num_classes, **kwargs),
               input_shape=(224, 224, 3), num_classes=num_classes,
               rename={"readout": "decoder.linear"},
               reference="dicarlolab/CORnet cornet.cornet_rt")
