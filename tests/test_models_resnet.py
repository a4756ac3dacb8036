"""Tests specific to the torchvision ports of `mdgeom.models.resnet` and `mdgeom.models.shufflenet`
and to `resnet_small`; the generic port-vs-reference tests are in test_model_zoo.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mdgeom import models
from mdgeom.models import torch_import
from mdgeom.models.resnet import BatchNorm
from mdgeom.models.shufflenet import channel_shuffle

# Parameter counts of torchvision's models (the "num_params" of their ImageNet weights' metadata).
N_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
            "shufflenet_v2_x0_5": 1_366_792, "shufflenet_v2_x1_0": 2_278_604}

# Conv layers (number, total weights) of the torchvision models, i.e. the analysed set.
# Numbers: ResNet18 = stem + 8 BasicBlocks x 2 + 3 downsamples (layer2-4) = 20;
# ResNet34 = 1 + 16 x 2 + 3 = 36; ResNet50 = 1 + 16 Bottlenecks x 3 + 4 downsamples (layer1 has
# one too: 64 -> 256) = 53; ShuffleNet v2 = conv1 + conv5 + per stage (repeats 4, 8, 4) 5 convs
# in the strided unit (branch1 2, branch2 3) and 3 in each other = 2 + 14 + 26 + 14 = 56.
# Weights: the total above minus the fc layer (C x 1000 + 1000, C = 512, 512, 2048, 1024, 1024)
# minus 2 x the channels of every BatchNorm2d (ResNet18: 2 x (64 + 4 x 64 + 5 x 128 + 5 x 256 +
# 5 x 512) = 9,600, so 11,689,512 - 513,000 - 9,600 = 11,166,912); checked once against
# sum(m.weight.numel()) over torchvision's nn.Conv2d modules.
N_CONV = {"resnet18": (20, 11_166_912), "resnet34": (36, 21_267_648),
          "resnet50": (53, 23_454_912), "shufflenet_v2_x0_5": (56, 333_840),
          "shufflenet_v2_x1_0": (56, 1_237_424)}


def _shapes(name, **kwargs):
  # Shapes only: counting needs no forward pass.
  model = models.get(name, **kwargs)
  return model, jax.eval_shape(model.init, jax.random.key(0))


@pytest.mark.parametrize("name", sorted(N_PARAMS))
def test_parameter_counts_match_torchvision(name):
  model, variables = _shapes(name)
  assert models.count_params(variables["params"]) == N_PARAMS[name]
  assert model.rename == {"readout": "fc"}
  assert model.num_classes == 1000 and model.input_shape == (224, 224, 3)


@pytest.mark.parametrize("name", sorted(N_CONV))
def test_analysed_is_exactly_the_conv_kernels(name):
  _, variables = _shapes(name)
  leaves = jax.tree_util.tree_leaves_with_path(variables)
  chosen = [(jax.tree_util.keystr(p), x) for p, x in leaves
            if models.analysed(jax.tree_util.keystr(p), x)]
  assert len(chosen) == N_CONV[name][0]
  assert all(len(x.shape) == 4 and p.startswith("['params']") for p, x in chosen)
  assert models.count_analysed(variables) == N_CONV[name][1]


def test_channel_shuffle_is_torchs_on_nhwc():
  # torch: view (N, g, C/g, H, W), transpose(1, 2), flatten; compared through NCHW <-> NHWC.
  x = np.random.default_rng(0).standard_normal((2, 12, 3, 4)).astype(np.float32)
  ref = x.reshape(2, 2, 6, 3, 4).transpose(0, 2, 1, 3, 4).reshape(2, 12, 3, 4)
  y = channel_shuffle(jnp.transpose(x, (0, 2, 3, 1)), 2)
  np.testing.assert_array_equal(np.transpose(np.asarray(y), (0, 3, 1, 2)), ref)


def test_batchnorm_is_torchs():
  x = np.random.default_rng(0).standard_normal((3, 5, 4, 6)).astype(np.float32) * 2 + 1
  bn = BatchNorm()
  variables = bn.init(jax.random.key(0), x)
  y, upd = bn.apply(variables, x, train=True, mutable=["batch_stats"])
  mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-5, atol=1e-5)
  # torch's update: momentum 0.1, unbiased variance (n = 3 * 5 * 4 = 60) for the running one.
  np.testing.assert_allclose(upd["batch_stats"]["mean"], 0.1 * mean, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(upd["batch_stats"]["var"], 0.9 + 0.1 * var * 60 / 59, rtol=1e-5)
  y_eval = bn.apply({**variables, **upd}, x)
  st = upd["batch_stats"]
  np.testing.assert_allclose(y_eval, (x - st["mean"]) / np.sqrt(st["var"] + 1e-5), rtol=1e-5,
                             atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("name", ["resnet18", "shufflenet_v2_x0_5"])
def test_train_step_batch_stats_match_torch(name):
  torch = pytest.importorskip("torch")
  from tests.reference import builders
  net = builders()[name][0]()
  sd = net.state_dict()
  # Non-trivial running statistics, so that the momentum convention shows.
  weights = torch_import.deterministic_state_dict(
      {k: tuple(v.shape) for k, v in sd.items() if not k.endswith("num_batches_tracked")}, seed=3)
  net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
  model = models.get(name)
  variables = torch_import.import_torch(model.init(jax.random.key(0)), weights, model.rename)
  x = np.random.default_rng(1).standard_normal((4, 3, 64, 64)).astype(np.float32)
  net.train()
  with torch.no_grad():
    ref = net(torch.from_numpy(x)).double().numpy()
  ref_stats = {k: v.numpy() for k, v in net.state_dict().items() if "running" in k}
  y, stats = jax.jit(lambda v, x: model.apply(v, x, train=True))(
      variables, np.transpose(x, (0, 2, 3, 1)))
  got = torch_import.export_torch({"batch_stats": stats}, model.rename)
  assert set(got) == set(ref_stats)
  assert np.max(np.abs(y - ref)) <= 1e-4 * np.max(np.abs(ref))
  for k, v in ref_stats.items():
    np.testing.assert_allclose(got[k], v, rtol=1e-4, atol=1e-5 * np.max(np.abs(v)), err_msg=k)
    # Each statistic moved: the update is not a no-op.
    assert not np.allclose(v, weights[k]), k


# resnet_small by hand: stem conv 3*3*1*16 = 144 (+ bn 32); layer1.0: two 3*3*16*16 = 2,304 convs
# (+ 2 bn of 32) = 4,672; layer2.0: 3*3*16*32 = 4,608 + 3*3*32*32 = 9,216 + downsample 16*32 = 512
# (+ 3 bn of 64) = 14,528; layer3.0: 18,432 + 36,864 + 2,048 (+ 3 bn of 128) = 57,728; readout
# 64*10 + 10 = 650. Analysed: 144 + 4,608 + 14,336 + 57,344 = 76,432 in 1 + 2 + 3 + 3 = 9
# kernels.
SMALL_PARAMS, SMALL_ANALYSED, SMALL_KERNELS = 77_754, 76_432, 9
# Each further block per stage: two convs and two bns, 4,672 + 18,560 + 73,984 = 97,216.
SMALL_PARAMS_2 = SMALL_PARAMS + 97_216


@pytest.fixture(scope="module")
def small():
  # One init for the resnet_small tests: XLA compiles are the slow part on CPU.
  model = models.get("resnet_small")
  return model, model.init(jax.random.key(0))


def test_resnet_small_shapes_and_counts(small):
  model, variables = small
  assert model.input_shape == (28, 28, 1) and model.num_classes == 10
  assert models.count_params(variables["params"]) == SMALL_PARAMS
  assert models.count_analysed(variables) == SMALL_ANALYSED
  leaves = jax.tree_util.tree_leaves_with_path(variables)
  assert sum(models.analysed(jax.tree_util.keystr(p)) for p, _ in leaves) == SMALL_KERNELS
  sd = torch_import.export_torch(variables, model.rename)
  assert sd["conv1.weight"].shape == (16, 1, 3, 3)
  assert sd["layer2.0.downsample.0.weight"].shape == (32, 16, 1, 1)
  assert sd["layer3.0.conv2.weight"].shape == (64, 64, 3, 3)
  assert sd["fc.weight"].shape == (10, 64)
  assert "layer1.0.downsample.0.weight" not in sd
  x = np.random.default_rng(0).standard_normal((3, 28, 28, 1)).astype(np.float32)
  assert model.apply(variables, x).shape == (3, 10)
  _, two = _shapes("resnet_small", blocks_per_stage=2, num_classes=7)
  assert models.count_params(two["params"]) == SMALL_PARAMS_2 - 3 * 64 - 3
  assert two["params"]["layer3"]["1"]["conv2"]["kernel"].shape == (3, 3, 64, 64)


# resnet_tiny by hand (8-16-32): stem 3*3*1*8 = 72; layer1.0: two 3*3*8*8 = 576; layer2.0:
# 3*3*8*16 = 1,152 + 3*3*16*16 = 2,304 + downsample 8*16 = 128; layer3.0: 4,608 + 9,216 + 512.
# Analysed: 72 + 1,152 + 3,584 + 14,336 = 19,144 (N = 138).
def test_resnet_tiny_counts():
  model, variables = _shapes("resnet_tiny")
  assert models.count_analysed(variables) == 19_144
  assert round(models.count_analysed(variables) ** 0.5) == 138
  assert variables["params"]["layer3"]["0"]["conv2"]["kernel"].shape == (3, 3, 32, 32)
  assert variables["params"]["readout"]["kernel"].shape == (32, 10)


def test_resnet_small_train_updates_batch_stats(small):
  model, variables = small
  x = np.random.default_rng(0).standard_normal((4, 28, 28, 1)).astype(np.float32) + 0.5
  logits, stats = jax.jit(lambda v, x: model.apply(v, x, train=True))(variables, x)
  assert logits.shape == (4, 10)
  assert (jax.tree_util.tree_structure(stats)
          == jax.tree_util.tree_structure(variables["batch_stats"]))
  # Every running mean and variance moved towards the batch's (from 0 and 1).
  for old, new in zip(jax.tree_util.tree_leaves(variables["batch_stats"]),
                      jax.tree_util.tree_leaves(stats)):
    assert not np.allclose(old, new)
  # Train mode normalises with the batch statistics, so differs from eval mode.
  assert not np.allclose(logits, model.apply(variables, x), atol=1e-4)


def test_import_round_trip_and_errors(small):
  model, variables = small
  sd = torch_import.export_torch(variables, model.rename)
  back = torch_import.import_torch(variables, sd, model.rename)
  for a, b in zip(jax.tree_util.tree_leaves(variables), jax.tree_util.tree_leaves(back)):
    np.testing.assert_array_equal(a, b)
  bad = dict(sd)
  del bad["layer1.0.conv1.weight"]
  bad["layer2.0.bn1.running_var"] = np.ones(33, np.float32)
  bad["fc.weight"] = bad["fc.weight"].T
  bad["layer9.0.conv1.weight"] = np.zeros((1, 1, 1, 1), np.float32)
  with pytest.raises(torch_import.WeightImportError) as info:
    torch_import.import_torch(variables, bad, model.rename, source="corrupt.pth")
  err = info.value
  assert err.missing == ["layer1.0.conv1.weight"]
  assert err.unexpected == ["layer9.0.conv1.weight"]
  assert sorted(k for k, _, _ in err.misshaped) == ["fc.weight", "layer2.0.bn1.running_var"]
  msg = str(err)
  for key in ("corrupt.pth", "layer1.0.conv1.weight", "layer9.0.conv1.weight",
              "fc.weight: (64, 10) vs (10, 64)", "layer2.0.bn1.running_var: (33,) vs (32,)"):
    assert key in msg
