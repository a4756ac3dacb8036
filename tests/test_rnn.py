"""The tanh RNN (Fig. 7A): shapes, the analysed recurrent matrix, the scan against an explicit
recurrence and torch's nn.RNN, and a tiny run of experiments.finetune_rnn."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import finetune_default
from configs import rnn as rnn_config
from experiments import finetune_rnn
from mdgeom import models, results
from mdgeom.models import rnn as rnn_lib
from mdgeom.models import torch_import

TINY = "rnn8"
if TINY not in models.names():  # a test-only size, registered once per process
  models.register(TINY)(lambda num_classes=10: rnn_lib.rnn(8, num_classes))


def _images(n=5, seed=0):
  return np.random.default_rng(seed).normal(size=(n, 28, 28, 1)).astype(np.float32)


def test_shapes_names_and_analysed_recurrent_matrix_only():
  m = models.get("rnn100")
  v = m.init(jax.random.key(0))
  p = v["params"]
  assert p["input"]["kernel"].shape == (28, 100)
  assert p["recurrent"]["kernel"].shape == (100, 100)
  assert p["readout"]["kernel"].shape == (100, 10)
  assert m.apply(v, _images(3)).shape == (3, 10)
  assert m.count_analysed(v) == 100 ** 2
  paths = [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_leaves_with_path(v)]
  assert [k for k in paths if m.analysed(k)] == ["['params']['recurrent']['kernel']"]
  assert models.get("rnn1000").module.hidden == 1000


def test_init_is_torchs_uniform_without_zeros():
  v = models.get(TINY).init(jax.random.key(1))
  for name in ("input", "recurrent"):
    for leaf in ("kernel", "bias"):
      x = np.asarray(v["params"][name][leaf])
      assert np.all(np.abs(x) <= 1 / np.sqrt(8)) and np.all(x != 0)


def test_scan_equals_explicit_numpy_recurrence():
  m = models.get(TINY)
  v = m.init(jax.random.key(2))
  x = _images(4)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), v["params"])
  h = np.zeros((4, 8))
  for t in range(28):  # h_t = tanh(W_in x_t + b_in + W_rec h_{t-1} + b_rec)
    h = np.tanh(x[:, t, :, 0] @ p["input"]["kernel"] + p["input"]["bias"] +
                h @ p["recurrent"]["kernel"] + p["recurrent"]["bias"])
  expect = h @ p["readout"]["kernel"] + p["readout"]["bias"]
  np.testing.assert_allclose(m.apply(v, x), expect, rtol=1e-4, atol=1e-5)


@pytest.mark.torch
def test_matches_torch_rnn():
  torch = pytest.importorskip("torch")
  torch.manual_seed(0)
  rnn, fc = torch.nn.RNN(28, 8, nonlinearity="tanh", batch_first=True), torch.nn.Linear(8, 10)
  m = models.get(TINY)
  v = m.init(jax.random.key(0))
  # The paper's module: self.rnn = nn.RNN(...), self.fc = nn.Linear(...).
  sd = {f"rnn.{k}": t.detach().numpy() for k, t in rnn.state_dict().items()}
  sd.update({f"fc.{k}": t.detach().numpy() for k, t in fc.state_dict().items()})
  v = torch_import.import_torch(v, rnn_lib.from_torch_keys(sd), m.rename)
  x = _images(3)
  with torch.no_grad():
    out, _ = rnn(torch.from_numpy(x[..., 0]))
    ref = fc(out[:, -1]).numpy()
  np.testing.assert_allclose(m.apply(v, x), ref, rtol=1e-4, atol=1e-5)


def tiny_config():
  c = rnn_config.get_config()
  c.architectures = (TINY,)
  c.seeds = (0, 1)
  c.progress = False
  c.pretrain.epochs = 2
  c.pretrain.min_pool_accuracy = 0.0  # 8 units: the layout is tested, not the accuracy
  c.search.learning_rates = (0.1,)
  c.search.epochs = 3
  c.search.max_extensions = 0
  return c


def test_tiny_run_layout_sign_flips_and_rerun_skips(tmp_path, monkeypatch):
  workdir = str(tmp_path)
  res = finetune_rnn.run(tiny_config(), workdir)
  assert results.read_json(os.path.join(workdir, "results.json")) == res
  assert res["architectures"] == [TINY]
  assert res["n_weights"][TINY] == 64 and res["n_data"][TINY] == 8  # D = 8^2, N = D^0.5
  for t in res["trained_potentials"]:
    assert res["learning_rate"][TINY][t] == 0.1
    assert len(res["train_accuracy"][TINY][t]) == 2
    for h in res["hypothesized_potentials"]:
      assert len(res["delta_cdf"][TINY][t][h]) == 2
      flips = res["n_sign_flips"][TINY][t][h]
      assert len(flips) == 2 and all(isinstance(c, int) for c in flips)
    ne = res["n_sign_flips"][TINY][t]["negative_entropy"]
    assert res["ruled_out"][TINY][t]["negative_entropy"] == [c > 0 for c in ne]
  assert res["n_sign_flips"][TINY]["negative_entropy"]["negative_entropy"] == [0, 0]
  text = finetune_rnn.summary(res)
  assert "sign flips" in text and "NE" in text

  # A rerun finds every cell and trains nothing.
  from mdgeom import train
  def no_training(*a, **k):
    raise AssertionError("a finished cell was recomputed")
  monkeypatch.setattr(train, "fit", no_training)
  assert finetune_rnn.run(tiny_config(), workdir)["delta_cdf"] == res["delta_cdf"]


def test_configs():
  bare = rnn_config.get_config()  # the paper's protocol on the embedded digits
  default = finetune_default.get_config()
  assert bare.architectures == ("rnn100", "rnn1000") and bare.data.source == "mnist5k"
  assert len(bare.seeds) >= 5 and bare.search.learning_rates == default.search.learning_rates
  assert (bare.search.epochs, bare.search.extra_epochs, bare.search.max_extensions) == (30, 30, 4)
  assert bare.search.extend_seeds and bare.search.target_accuracy == 100.0
  full = rnn_config.get_config("mnist")
  assert full.data.source == "mnist_tfds" and len(full.seeds) == 10
  with pytest.raises(ValueError, match="unknown variant"):
    rnn_config.get_config("full")  # (the bare config is the full protocol now)


def test_mnist_tfds_missing_data_dir_says_how_to_build(tmp_path):
  from mdgeom.data import images
  with pytest.raises(FileNotFoundError, match="tfds build mnist"):
    images.mnist_tfds(tmp_path / "nowhere")
