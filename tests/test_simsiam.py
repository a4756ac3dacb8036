"""SimSiam (Fig. 7B): the loss against a numpy formula, its stop-gradient, the augmentations, the
analysed set, the import of a facebookresearch/simsiam-format checkpoint, and a tiny run of
experiments.finetune_ssl with its figure."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import finetune_default
from configs import simsiam as simsiam_config
from experiments import finetune_ssl
from mdgeom import models, results
from mdgeom.models import simsiam, torch_import

TINY = "simsiam_tiny"
if TINY not in models.names():  # a test-only size, registered once per process
  models.register(TINY)(lambda num_classes=8: simsiam.simsiam_small(
      widths=(4, 8), dim=8, pred_dim=4))


def _cos_numpy(a, b):
  return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_loss_is_symmetrised_negative_cosine():
  rng = np.random.default_rng(0)
  p1, p2, z1, z2 = (rng.normal(size=(6, 5)) for _ in range(4))
  expect = -0.5 * (_cos_numpy(p1, z2) + _cos_numpy(p2, z1))
  got = simsiam.simsiam_loss(*(jnp.asarray(a, jnp.float32) for a in (p1, p2, z1, z2)))
  np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-6)
  assert float(simsiam.simsiam_loss(p1, p2, p2, p1).mean()) == pytest.approx(-1.0, abs=1e-6)


def test_stop_gradient_on_the_targets():
  rng = np.random.default_rng(1)
  p1, p2, z1, z2 = (jnp.asarray(rng.normal(size=(4, 3)), jnp.float32) for _ in range(4))
  mean_loss = lambda *a: jnp.mean(simsiam.simsiam_loss(*a))
  g = jax.grad(mean_loss, argnums=(0, 1, 2, 3))(p1, p2, z1, z2)
  assert np.all(np.asarray(g[2]) == 0) and np.all(np.asarray(g[3]) == 0)
  assert np.any(np.asarray(g[0]) != 0) and np.any(np.asarray(g[1]) != 0)
  # Through a network: with z = f(w) and p = h(z), only the predictor branch carries gradient.
  w = jnp.asarray(rng.normal(size=(3, 3)), jnp.float32)
  x1, x2 = p1, p2
  f = lambda w, x: x @ w
  only_target = jax.grad(lambda w: mean_loss(p1, p2, f(w, x1), f(w, x2)))(w)
  assert np.all(np.asarray(only_target) == 0)


def test_augment_shapes_determinism_and_identity():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(5, 28, 28, 1)), jnp.float32)
  k = jax.random.key(3)
  a = simsiam.augment(k, x, noise_std=0.1)
  assert a.shape == x.shape and a.dtype == x.dtype
  np.testing.assert_array_equal(a, simsiam.augment(k, x, noise_std=0.1))
  assert not np.allclose(a, simsiam.augment(jax.random.key(4), x, noise_std=0.1))
  # The full-size square crop is the identity; flips mirror whole images.
  same = simsiam.augment(k, x, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False)
  np.testing.assert_allclose(same, x, atol=1e-5)
  flipped = simsiam.augment(k, x, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=True)
  for i in range(5):
    assert (np.allclose(flipped[i], x[i], atol=1e-5) or
            np.allclose(flipped[i], x[i, :, ::-1], atol=1e-5))
  rgb = jnp.ones((2, 32, 32, 3))
  assert jax.jit(simsiam.augment)(k, rgb).shape == (2, 32, 32, 3)


def test_analysed_is_the_encoders_conv_kernels_only():
  m = models.get(TINY)
  v = m.init(jax.random.key(0))
  leaves = jax.tree_util.tree_leaves_with_path(v)
  picked = [jax.tree_util.keystr(k) for k, x in leaves if m.analysed(jax.tree_util.keystr(k), x)]
  assert picked and all(p.startswith("['params']['encoder']") for p in picked)
  # The experiment analyses variables["params"]: the same leaves.
  params_only = jax.tree_util.tree_leaves_with_path(v["params"])
  assert sum(m.analysed(jax.tree_util.keystr(k), x) for k, x in params_only) == len(picked)
  assert all(p.endswith("['kernel']") and np.ndim(x) == 4
             for (k, x) in leaves for p in [jax.tree_util.keystr(k)] if p in picked)
  convs = [x for k, x in leaves if np.ndim(x) == 4]
  assert m.count_analysed(v) == sum(x.size for x in convs)
  # widths 4-8, one BasicBlock per stage: stem, 2 + 3 convs (with a 1x1 downsample).
  assert m.count_analysed(v) == 9 * 4 + 2 * 9 * 16 + 9 * (4 * 8 + 8 * 8) + 4 * 8
  p, z = m.apply(v, jnp.zeros((2, 28, 28, 1)))
  assert p.shape == z.shape == (2, 8)
  small = models.get("simsiam_small")
  assert small.module.widths == (8, 16, 32) and small.input_shape == (28, 28, 1)


def _simsiam_checkpoint_keys(variables, model):
  """What facebookresearch/simsiam saves: DataParallel's "module." prefix, BN counters."""
  sd = torch_import.export_torch(variables, model.rename)
  # (contiguous: safetensors.numpy writes the buffer of a transposed view in the wrong order)
  out = {f"module.{k}": np.ascontiguousarray(v) for k, v in sd.items()}
  for k in list(out):
    if k.endswith("running_var"):
      out[k[:-len("running_var")] + "num_batches_tracked"] = np.array(7, np.int64)
  return out


def test_import_of_a_simsiam_format_checkpoint_round_trips(tmp_path):
  from safetensors.numpy import save_file
  m = models.get(TINY)
  v = m.init(jax.random.key(5))
  sd = _simsiam_checkpoint_keys(v, m)
  # Their names: projector = encoder.fc (BN "7" without affine), predictor.*.
  assert "module.encoder.fc.0.weight" in sd and "module.encoder.fc.6.bias" in sd
  assert "module.encoder.fc.7.running_mean" in sd and "module.encoder.fc.7.weight" not in sd
  assert "module.predictor.3.bias" in sd and "module.encoder.layer1.0.conv1.weight" in sd
  path = str(tmp_path / "simsiam.safetensors")
  save_file(sd, path)
  back = torch_import.load_pretrained(m, m.init(jax.random.key(6)), path)
  for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(back)):
    np.testing.assert_array_equal(a, b)
  del sd["module.predictor.0.weight"]
  save_file(sd, path)
  with pytest.raises(torch_import.WeightImportError, match="predictor.0.weight"):
    torch_import.load_pretrained(m, v, path)
  with pytest.raises(FileNotFoundError, match="simsiam"):
    torch_import.load_pretrained(m, v, str(tmp_path / "missing.pth"), how_to_get="see simsiam")


@pytest.mark.torch
def test_resnet50_matches_a_torch_simsiam(tmp_path):
  """The Flax SimSiam-ResNet50 against a torch SimSiam(resnet50) built as in the SimSiam paper:
  same state-dict keys and shapes, same (p, z) in eval mode after the import of a .pth.tar."""
  torch = pytest.importorskip("torch")
  tv = pytest.importorskip("torchvision")
  nn = torch.nn
  enc = tv.models.resnet50(num_classes=2048)
  prev = enc.fc.weight.shape[1]
  enc.fc = nn.Sequential(nn.Linear(prev, prev, bias=False), nn.BatchNorm1d(prev), nn.ReLU(),
                         nn.Linear(prev, prev, bias=False), nn.BatchNorm1d(prev), nn.ReLU(),
                         enc.fc, nn.BatchNorm1d(2048, affine=False))
  pred = nn.Sequential(nn.Linear(2048, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(),
                       nn.Linear(512, 2048))
  net = nn.ModuleDict({"encoder": enc, "predictor": pred})
  keys = {k: tuple(v.shape) for k, v in net.state_dict().items()
          if not k.endswith("num_batches_tracked")}
  weights = torch_import.deterministic_state_dict(keys, seed=1)
  net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
  path = str(tmp_path / "checkpoint_0099.pth.tar")
  torch.save({"epoch": 100, "arch": "resnet50", "state_dict": {
      f"module.{k}": v for k, v in net.state_dict().items()}}, path)
  m = models.get("simsiam_resnet50")
  v = torch_import.load_pretrained(m, m.init(jax.random.key(0)), path)
  x = np.random.default_rng(0).normal(size=(2, 224, 224, 3)).astype(np.float32)
  net.eval()
  with torch.no_grad():
    z = enc(torch.from_numpy(x).permute(0, 3, 1, 2))
    p = pred(z)
  got_p, got_z = m.apply(v, x)
  np.testing.assert_allclose(got_z, z.numpy(), rtol=1e-3, atol=1e-3)
  np.testing.assert_allclose(got_p, p.numpy(), rtol=1e-3, atol=1e-3)


def tiny_config():
  c = simsiam_config.get_config()
  c.architectures = (TINY,)
  c.trained_potentials = ("negative_entropy", "2-norm")
  c.seeds = (0, 1)
  c.progress = False
  c.data.pool_per_class = 400  # pretrain on the other 1,000 digits
  c.pretrain.epochs = 1
  c.search.learning_rates = (0.05,)
  c.search.epochs = 2
  return c


@pytest.mark.slow  # (run with -m slow; kept out of the default run's 20 min)
def test_tiny_run_layout_no_accuracy_and_figure(tmp_path):
  from figures import finetune_ssl as fig
  workdir = str(tmp_path / "run")
  res = finetune_ssl.run(tiny_config(), workdir)
  assert results.read_json(os.path.join(workdir, "results.json")) == res
  assert res["n_weights"][TINY] == 1220
  assert res["n_data"][TINY] == 35
  for t in res["trained_potentials"]:
    assert res["train_accuracy"][TINY][t] == [None, None]  # self-supervised: no accuracy
    assert all(np.isfinite(x) and -1 <= x <= 1 for x in res["final_loss"][TINY][t])
    assert res["epochs"][TINY][t] == 2
    for h in res["hypothesized_potentials"]:
      assert len(res["delta_cdf"][TINY][t][h]) == 2
  assert res["pretrain"][TINY]["pool_accuracy"] is None
  text = finetune_ssl.summary(res)
  assert "SimSiam loss" in text and "nan%" in text
  written = fig.plot(res, str(tmp_path / "fig.png"))
  assert all(os.path.getsize(p) > 0 for p in written)


def test_configs():
  bare = simsiam_config.get_config()
  assert bare.architectures == ("simsiam_small",) and bare.search.epochs == 50
  # the paper's protocol in the bare run: its learning-rate grid and at least 5 seeds
  assert bare.search.learning_rates == finetune_default.get_config().search.learning_rates
  assert len(bare.seeds) >= 5
  paper = simsiam_config.get_config("imagenet")
  assert paper.architectures == ("simsiam_resnet50",) and paper.data.source == "imagenet"
  assert paper.pretrain.checkpoint_pattern == "checkpoint_0099.pth.tar"
  with pytest.raises(ValueError, match="unknown variant"):
    simsiam_config.get_config("bogus")
