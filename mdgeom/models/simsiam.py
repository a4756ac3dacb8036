"""SimSiam (Chen & He 2021) around the zoo's ResNet, its loss and augmentations, for the
self-supervised finetuning experiment (docs/theory.md, "Experiments"; Fig. 7B).

The architecture is facebookresearch/simsiam's `SimSiam(models.resnet50)`:

    encoder    torchvision ResNet without its classifier (pooled features, prev_dim)
    projector  encoder.fc = Linear(prev_dim, prev_dim, no bias), BN, ReLU,
               Linear(prev_dim, prev_dim, no bias), BN, ReLU,
               Linear(prev_dim, dim), BN(affine=False)
    predictor  Linear(dim, pred_dim, no bias), BN, ReLU, Linear(pred_dim, dim)

with dim = 2048 and pred_dim = 512 for ResNet50. Flax names follow their state dict: top-level
modules `encoder` (torchvision names), `projector` (their `encoder.fc`, Sequential indices "0",
"1", "3", "4", "6", "7"; `Model.rename` maps it back) and `predictor` ("0", "1", "3"). So their
checkpoint (`module.encoder.*`, `module.predictor.*`; the "module." prefix of DataParallel is
stripped on load) imports with `torch_import.load_pretrained`. Their `zero_init_residual` only
changes the initialisation from scratch and is not reproduced.

`apply(variables, x)` gives (p, z) for one view; the loss of two views is `simsiam_loss`, and
`simsiam_task` is the `mdgeom.train.Task` that augments a batch twice from the training loop's
per-step key. The analysed weights are the encoder's conv kernels only (not the projector,
predictor, batch norm or biases).
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mdgeom import train
from mdgeom.models import Model, register
from mdgeom.models.resnet import (BasicBlock, BatchNorm, Bottleneck, ResNet, torch_default_bias,
                                  torch_default_kernel)

CHECKPOINT_URL = ("https://dl.fbaipublicfiles.com/simsiam/models/100ep/pretrain/"
                  "checkpoint_0099.pth.tar")


def _linear(features: int, fan_in: int, bias: bool, name: str) -> nn.Dense:
  """torch's nn.Linear (weights and bias U(+-1/sqrt(fan_in)))."""
  return nn.Dense(features, use_bias=bias, kernel_init=torch_default_kernel,
                  bias_init=torch_default_bias(fan_in), name=name)


def _linear_bn_relu(x, features, linear_name, bn_name, train):
  # Bias-free Linear -> BatchNorm1d -> ReLU, the repeated unit of SimSiam's MLP heads.
  x = _linear(features, x.shape[-1], False, linear_name)(x)
  return nn.relu(BatchNorm(name=bn_name)(x, train))


class Projector(nn.Module):
  """SimSiam's 3-layer projector (their `encoder.fc`), output batch-normalised without affine."""
  hidden: int
  dim: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _linear_bn_relu(x, self.hidden, "0", "1", train)
    x = _linear_bn_relu(x, self.hidden, "3", "4", train)
    # The bias of "6" is frozen in their code; the affine-free BN after it cancels it anyway.
    x = _linear(self.dim, self.hidden, True, "6")(x)
    return BatchNorm(affine=False, name="7")(x, train)


class Predictor(nn.Module):
  """SimSiam's 2-layer bottleneck predictor."""
  hidden: int
  dim: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _linear_bn_relu(x, self.hidden, "0", "1", train)
    return _linear(self.dim, self.hidden, True, "3")(x)


class SimSiam(nn.Module):
  """One view x (B, H, W, C) -> (p, z): prediction and projection, both (B, dim)."""
  block: type
  stage_sizes: Sequence[int]
  widths: Sequence[int] = (64, 128, 256, 512)
  small_stem: bool = False
  dim: int = 2048
  pred_dim: int = 512

  @nn.compact
  def __call__(self, x, train: bool = False):
    f = ResNet(self.block, tuple(self.stage_sizes), 0, tuple(self.widths), self.small_stem,
               name="encoder")(x, train)
    z = Projector(f.shape[-1], self.dim, name="projector")(f, train)
    p = Predictor(self.pred_dim, self.dim, name="predictor")(z, train)
    return p, z


def analysed(path: str, leaf=None) -> bool:
  """SimSiam's analysed weights: the encoder's conv kernels (no projector, predictor, BN), in
  the variables or in their "params" alone."""
  return path.endswith("['kernel']") and (path.startswith("['encoder']") or
                                          path.startswith("['params']['encoder']"))


# ------------------------------------------------------------------------------------------
# Loss and augmentations
# ------------------------------------------------------------------------------------------

def _normalize(x, eps: float = 1e-8):
  # torch's F.cosine_similarity clamps each norm at eps.
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def simsiam_loss(p1, p2, z1, z2):
  """Per-example symmetrised negative cosine with stop-gradient on the targets (SimSiam Eq. 2):
  -(cos(p1, sg(z2)) + cos(p2, sg(z1))) / 2, shape (B,); its mean is their training loss."""
  z1, z2 = jax.lax.stop_gradient(z1), jax.lax.stop_gradient(z2)
  cos = lambda p, z: jnp.sum(_normalize(p) * _normalize(z), axis=-1)
  return -0.5 * (cos(p1, z2) + cos(p2, z1))


def augment(key, images, crop_scale=(0.2, 1.0), crop_ratio=(3 / 4, 4 / 3), flip: bool = True,
            noise_std: float = 0.0):
  """A random view of each image (B, H, W, C), vectorised over the batch: random resized crop
  (area fraction in `crop_scale`, aspect ratio log-uniform in `crop_ratio`, resized back to
  H x W bilinearly with antialiasing, as torchvision's RandomResizedCrop), horizontal flip with
  probability 1/2, then Gaussian noise of std `noise_std`. A function of `key` only."""
  b, h, w, _ = images.shape
  k_area, k_ratio, k_y, k_x, k_flip, k_noise = jax.random.split(key, 6)
  area = jax.random.uniform(k_area, (b,), minval=crop_scale[0], maxval=crop_scale[1])
  log_r = jax.random.uniform(k_ratio, (b,), minval=math.log(crop_ratio[0]),
                             maxval=math.log(crop_ratio[1]))
  ratio = jnp.exp(log_r)
  # Crop size in pixels (clipped to the image; torchvision retries instead, then falls back).
  ch = jnp.clip(jnp.sqrt(area * h * w / ratio), 1.0, h)
  cw = jnp.clip(jnp.sqrt(area * h * w * ratio), 1.0, w)
  y0 = jax.random.uniform(k_y, (b,)) * (h - ch)
  x0 = jax.random.uniform(k_x, (b,)) * (w - cw)
  scale = jnp.stack([h / ch, w / cw], -1)
  shift = -jnp.stack([y0, x0], -1) * scale

  def crop(img, s, t):
    return jax.image.scale_and_translate(img, img.shape, (0, 1), s, t, "linear", antialias=True)

  out = jax.vmap(crop)(images, scale.astype(images.dtype), shift.astype(images.dtype))
  if flip:
    do = jax.random.bernoulli(k_flip, 0.5, (b, 1, 1, 1))
    out = jnp.where(do, out[:, :, ::-1], out)
  if noise_std:
    out = out + noise_std * jax.random.normal(k_noise, out.shape, out.dtype)
  return out


def simsiam_task(model: Model, crop_scale=(0.2, 1.0), flip: bool = True,
                 noise_std: float = 0.0) -> train.Task:
  """The SimSiam loss of a batch {"image"} as a `train.Task`: two augmented views from the
  loop's per-step key, each through the network (batch statistics of each view, running
  averages updated once per view as in torch), `simsiam_loss` per example. No accuracy."""

  def loss(params, state, batch, rng, is_train):
    k1, k2 = jax.random.split(rng)
    x = batch["image"]
    views = [augment(k, x, crop_scale, flip=flip, noise_std=noise_std) for k in (k1, k2)]
    outs, st = [], state
    for v in views:
      variables = {"params": params, **st}
      if is_train:
        out, stats = model.apply(variables, v, train=True)
        st = {**st, "batch_stats": stats} if "batch_stats" in st else st
      else:
        out = model.apply(variables, v, train=False)
      outs.append(jax.tree.map(lambda a: a.astype(jnp.float32), out))
    (p1, z1), (p2, z2) = outs
    return simsiam_loss(p1, p2, z1, z2), ({}, st)

  return train.Task(loss)


# ------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------

def _simsiam(name, module, input_shape, reference):
  return Model(name, module, input_shape, module.dim, rename={"projector": "encoder.fc"},
               reference=reference, analysed=analysed)


@register("simsiam_resnet50")
def simsiam_resnet50(num_classes: int = 2048, dim: int = 2048, pred_dim: int = 512) -> Model:
  """facebookresearch/simsiam's ResNet50 SimSiam (ImageNet inputs). `num_classes` is accepted
  for the zoo's interface and ignored: SimSiam has no classes."""
  module = SimSiam(Bottleneck, (3, 4, 6, 3), dim=dim, pred_dim=pred_dim)
  return _simsiam("simsiam_resnet50", module, (224, 224, 3),
                  "facebookresearch/simsiam's SimSiam(torchvision.models.resnet50); weights: "
                  f"{CHECKPOINT_URL}")


@register("simsiam_small")
def simsiam_small(num_classes: int = 64, widths: Sequence[int] = (8, 16, 32),
                  blocks_per_stage: int = 1, dim: int = 64, pred_dim: int = 16) -> Model:
  """SimSiam around `resnet_small`'s CIFAR-style ResNet on 28x28x1 (MNIST) for CPU runs, at half
  its widths (8-16-32: D = 19,144 conv weights, N = 138; two views of a 16-32-64 net at its
  N = 276 cost 4x as much), projector output 64, predictor bottleneck 16. `num_classes` is
  ignored."""
  module = SimSiam(BasicBlock, (blocks_per_stage,) * len(widths), tuple(widths), small_stem=True,
                   dim=dim, pred_dim=pred_dim)
  return _simsiam("simsiam_small", module, (28, 28, 1),
                  "SimSiam (Chen & He 2021) around a CIFAR-style ResNet (mdgeom resnet_small)")
