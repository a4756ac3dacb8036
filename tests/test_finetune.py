"""The finetuning experiment on a reduced config: layout, analysis recomputed from the saved
weights, cells skipped on rerun, clear errors."""

import glob
import json
import os
import time
import types

import jax
import numpy as np
import pytest

from configs import finetune_default, resnet
from experiments import finetune
from mdgeom import analysis, models, results, train

HYP = ("negative_entropy", "2-norm", "3-norm")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config():
  c = finetune_default.get_config()
  c.architectures = ("mlp",)
  c.trained_potentials = ("negative_entropy", "2-norm")
  c.hypothesized_potentials = HYP
  c.seeds = (0, 1)
  c.progress = False
  c.data.pool_per_class = 20       # pool of 200; N = D^0.5 would be too big for it
  c.data.n_data = 60
  c.pretrain.epochs = 3
  c.pretrain.min_pool_accuracy = 50.0
  c.search.learning_rates = (0.01, 0.1)
  c.search.epochs = 2
  c.search.extra_epochs = 1
  c.search.max_extensions = 1
  c.train.batch_size = 32
  return c


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("finetune"))
  return workdir, finetune.run(tiny_config(), workdir)


def test_results_layout(tiny_run):
  workdir, res = tiny_run
  assert results.read_json(os.path.join(workdir, "results.json")) == res
  assert res["architectures"] == ["mlp"]
  assert res["trained_potentials"] == ["negative_entropy", "2-norm"]
  assert res["hypothesized_potentials"] == list(HYP)
  assert res["n_weights"]["mlp"] == 784 * 256 + 256 * 256
  assert res["n_data"]["mlp"] == 60
  for t in res["trained_potentials"]:
    for h in HYP:
      assert len(res["delta_cdf"]["mlp"][t][h]) == 2
      assert len(res["magnitude"]["mlp"][t][h]) == 2
    assert len(res["train_accuracy"]["mlp"][t]) == 2
    assert res["learning_rate"]["mlp"][t] in (0.01, 0.1)
    assert res["epochs"]["mlp"][t] in (2, 3)
  assert res["pretrain"]["mlp"]["pool_accuracy"] >= 50.0
  for t in res["trained_potentials"]:
    # training curves: the mean loss of each epoch, per seed, ending at the final loss
    curves = res["loss_history"]["mlp"][t]
    # each seed is extended like the search until it reaches the target (or runs out)
    seed_epochs = res["seed_epochs"]["mlp"][t]
    assert [len(c) for c in curves] == seed_epochs
    assert all(e >= res["epochs"]["mlp"][t] for e in seed_epochs)
    for e, acc in zip(seed_epochs, res["train_accuracy"]["mlp"][t]):
      assert acc >= 100.0 or e == 3  # below target only after the longest run: 2 + 1 x 1
    below = sum(a < 100.0 for a in res["train_accuracy"]["mlp"][t])
    assert res["below_target"]["mlp"][t] == below
    assert curves[1][-1] == pytest.approx(res["final_loss"]["mlp"][t][1])
    assert all(len(row["loss_history"]) == row["epochs"] for row in res["search"]["mlp"][t]["table"])
    # the grid (0.01, 0.1) has only ends: whichever rate is chosen, the run says so
    edge = "upper" if res["learning_rate"]["mlp"][t] == 0.1 else "lower"
    assert res["learning_rate_at_grid_edge"]["mlp"][t] == edge
    assert res["search"]["mlp"][t]["at_grid_edge"] == edge
  assert set(res["phase_seconds"]["mlp"]) == {"pretrain", "search", "finetune", "analysis"}
  assert all(v >= 0 for v in res["phase_seconds"]["mlp"].values())
  table = finetune.summary(res)
  assert "NE" in table and "trained" in table


def test_analysis_recomputes_from_saved_weights(tiny_run):
  workdir, res = tiny_run
  m = models.get("mlp")
  target = m.init(jax.random.key(0))
  w0 = finetune.load_variables(os.path.join(workdir, "weights", "mlp", "initial.msgpack"), target)
  for t in res["trained_potentials"]:
    w = finetune.load_variables(os.path.join(workdir, "weights", "mlp", t, "seed1.msgpack"),
                                target)
    # The readout and biases are trained too, but not analysed.
    assert not np.allclose(w["params"]["readout"]["bias"], w0["params"]["readout"]["bias"])
    r = analysis.rank_potentials(w0["params"], w["params"], HYP, where=m.analysed,
                                 exclude_unchanged=True)
    for c in r.results:
      assert res["delta_cdf"]["mlp"][t][c.name][1] == pytest.approx(c.delta_cdf, rel=1e-6)
    if t == "negative_entropy":  # exponentiated gradient never flips a sign
      ne = [c for c in r.results if c.name == "negative_entropy"][0]
      assert not ne.ruled_out


def test_rerun_skips_finished_cells_and_new_seed_runs_alone(tiny_run, tmp_path, monkeypatch):
  workdir, res = tiny_run
  calls = []
  real = finetune.seed_cell
  monkeypatch.setattr(finetune, "seed_cell", lambda *a, **k: calls.append(a) or real(*a, **k))
  monkeypatch.setattr(finetune, "search_cell",
                      lambda *a, **k: pytest.fail("the search cell should be cached"))
  again = finetune.run(tiny_config(), workdir)
  assert calls == []
  assert again["delta_cdf"] == res["delta_cdf"]
  c = tiny_config()
  c.seeds = (0, 1, 2)
  more = finetune.run(c, workdir)
  assert [a[-2] for a in calls] == [2, 2]  # seed 2, once per trained potential
  assert more["delta_cdf"]["mlp"]["2-norm"]["2-norm"][:2] == res["delta_cdf"]["mlp"]["2-norm"][
      "2-norm"]


@pytest.mark.slow  # (run with -m slow; kept out of the default run's 20 min)
def test_seeds_on_the_whole_pool_are_flagged(tmp_path, caplog):
  """N = the pool: every seed has the same images (only the batch order differs); results.json,
  the log and the summary say so, since the spread over such seeds is no sampling spread."""
  c = tiny_config()
  c.trained_potentials, c.search.learning_rates = ("2-norm",), (0.1,)
  c.data.n_data = 200  # the tiny pool: 20 per class
  c.search.epochs, c.search.max_extensions = 1, 0
  with caplog.at_level("WARNING"):
    res = finetune.run(c, str(tmp_path))
  assert res["seeds_share_images"] == {"mlp": True}
  subsets = [results.read_json(os.path.join(tmp_path, "cells", f"mlp__2-norm__seed{s}.json"))[
      "value"]["subset"] for s in (0, 1)]
  assert sorted(subsets[0]) == sorted(subsets[1]) == list(range(200))
  assert "whole pool" in caplog.text
  assert "every seed finetunes on the same 200 images" in finetune.summary(res)
  from figures import finetune as fig
  for r in (res, fig.merge([res])):  # Fig. 4/7's panel title says it too
    _, axes = fig.draw(r)
    assert any("2 seeds)\nthe seeds share their N images" in ax.get_title()
               for ax in np.ravel(axes))


def test_seeds_on_subsets_of_the_pool_are_not_flagged(tiny_run):
  _, res = tiny_run
  assert res["seeds_share_images"] == {"mlp": False}
  assert "whole pool" not in finetune.summary(res)
  from figures import finetune as fig
  _, axes = fig.draw(res)
  assert not any("share their" in ax.get_title() for ax in np.ravel(axes))


def test_killed_search_resumes_from_its_candidates_checkpoints(tmp_path, monkeypatch):
  c = tiny_config()
  c.trained_potentials, c.seeds, c.search.max_extensions = ("2-norm",), (0,), 0
  clean = finetune.run(c, str(tmp_path / "clean"))
  workdir = str(tmp_path / "killed")
  real_fit, calls = train.fit, []

  def killed_at_second_candidate(*a, **k):
    calls.append(f"{os.sep}search_" in str(k.get("checkpoint_dir")))
    if sum(calls) == 2:
      raise KeyboardInterrupt("killed")
    return real_fit(*a, **k)
  monkeypatch.setattr(finetune.train, "fit", killed_at_second_candidate)
  real_save = train._save
  # (a slow first candidate: its 2 s must still count in the resumed search's seconds)
  monkeypatch.setattr(train, "_save", lambda m, *a: (real_save(m, *a), time.sleep(2.0)))
  with pytest.raises(KeyboardInterrupt):
    finetune.run(c, workdir)
  (search_dir,) = glob.glob(os.path.join(workdir, "checkpoints", "mlp", "2-norm", "search_*"))
  assert os.listdir(search_dir) == ["lr0.01_x2"]  # the finished candidate's final checkpoint
  with open(os.path.join(search_dir, "lr0.01_x2", "seconds.json")) as f:
    first_seconds = json.load(f)["2"]
  assert first_seconds >= 2.0

  walls = []

  def timed_fit(*a, **k):
    t = time.perf_counter()
    r = real_fit(*a, **k)
    if f"{os.sep}search_" in str(k.get("checkpoint_dir")):
      walls.append(time.perf_counter() - t)
    return r
  monkeypatch.setattr(finetune.train, "fit", timed_fit)
  saved = []
  monkeypatch.setattr(train, "_save", lambda m, *a: saved.append(str(m.directory)) or
                      real_save(m, *a))
  res = finetune.run(c, workdir)
  # The finished candidate was restored, not trained again; the interrupted one trained.
  assert not any("lr0.01_x2" in d for d in saved) and any("lr0.1_x2" in d for d in saved)
  assert not os.path.exists(search_dir)
  # The search's seconds count the first candidate's training in the killed run (this run's fits
  # took `walls`; without it the search would report about sum(walls)).
  assert len(walls) == len(c.search.learning_rates)
  assert res["search"]["mlp"]["2-norm"]["seconds"] >= sum(walls) + 0.5 * first_seconds
  assert res["search"] == {**clean["search"], "mlp": {
      t: {**v, "seconds": res["search"]["mlp"][t]["seconds"]}
      for t, v in clean["search"]["mlp"].items()}}


def test_seeds_stop_at_the_protocols_longest_run(tmp_path, monkeypatch):
  """A seed is extended until the target, but never past epochs + max_extensions x extra_epochs
  (the paper's "up to 4 times"): a search that ended there leaves its seeds no extension."""
  c = tiny_config()
  c.trained_potentials, c.seeds = ("2-norm",), (0,)
  c.pretrain.epochs, c.pretrain.min_pool_accuracy = 1, 0.0
  c.search.learning_rates = (1e-6,)  # too small to fit the 60 images: never 100%
  c.search.epochs, c.search.extra_epochs, c.search.max_extensions = 1, 1, 2
  real_fit, seed_epochs = train.fit, []

  def spy(*a, **k):
    if f"{os.sep}seed0{os.sep}" in str(k.get("checkpoint_dir")):
      seed_epochs.append(k["epochs"])
    return real_fit(*a, **k)
  monkeypatch.setattr(finetune.train, "fit", spy)
  res = finetune.run(c, str(tmp_path))
  assert res["search"]["mlp"]["2-norm"]["epochs"] == 3  # 1 + 2 x 1: the longest
  assert not res["search"]["mlp"]["2-norm"]["reached_target"]
  assert seed_epochs == [3] and res["seed_epochs"]["mlp"]["2-norm"] == [3]
  assert res["below_target"]["mlp"]["2-norm"] == 1


def _tiny_fast(**model_kwargs):
  c = tiny_config()
  c.model_kwargs = model_kwargs
  c.trained_potentials = ("2-norm",)
  c.hypothesized_potentials = ("2-norm", "3-norm")
  c.seeds = (0,)
  c.pretrain.epochs = 1
  c.pretrain.min_pool_accuracy = 0.0
  c.search.learning_rates = (0.1,)
  c.search.epochs = 1
  c.search.max_extensions = 0
  return c


@pytest.mark.slow  # (run with -m slow; kept out of the default run's 20 min)
def test_reused_workdir_follows_the_pretrained_network(tmp_path, monkeypatch):
  """A workdir reused after the pretrained network changed: initial.msgpack is rewritten (it
  used to keep the first run's weights) and the old network's cells are recomputed; the
  pretrained cache is keyed by model_kwargs (it used to load the old network, then fail on
  shapes)."""
  wd = str(tmp_path)
  init = os.path.join(wd, "weights", "mlp", "initial.msgpack")
  cached = os.path.join(wd, "pretrained", "mlp.msgpack")
  c = _tiny_fast(hidden=(16,))
  first = finetune.run(c, wd)
  model = models.get("mlp", hidden=(16,))
  pretrained = finetune.load_variables(cached, model.init(jax.random.key(0)))
  # The cached network changes under the same config (as a replaced checkpoint file would).
  changed = jax.tree.map(lambda x: x * 1.1, pretrained)
  finetune.save_variables(cached, changed)
  calls = []
  real = finetune.seed_cell
  monkeypatch.setattr(finetune, "seed_cell", lambda *a, **k: calls.append(a) or real(*a, **k))
  second = finetune.run(c, wd)
  assert len(calls) == 1  # the cell of the old network is not reused
  assert second["delta_cdf"] != first["delta_cdf"]
  with open(init, "rb") as a, open(cached, "rb") as b:
    assert a.read() == b.read()  # the saved initial weights are the ones finetuned
  assert results.read_json(init[:-len("msgpack")] + "json")["fingerprint"] == (
      finetune.variables_fingerprint(changed))
  # Other model_kwargs: another network, pretrained anew instead of loaded from the cache.
  c.model_kwargs = {"hidden": (24,)}
  wide = models.get("mlp", hidden=(24,))
  source = finetune._Source(c, wide)
  variables, _ = finetune._pretrained(c, wide, source, wd, train.classification_task(wide))
  assert jax.tree.map(np.shape, variables) == jax.tree.map(np.shape,
                                                           wide.init(jax.random.key(0)))
  # A pretrained cache truncated by a killed run is named, then pretrained again (it used to
  # raise a msgpack error on every rerun).
  wide_cached = os.path.join(wd, "pretrained", "mlp.msgpack")
  with open(wide_cached, "rb") as f:
    data = f.read()
  with open(wide_cached, "wb") as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(results.ResultFileError, match="mlp.msgpack cannot be read"):
    finetune.load_variables(wide_cached, wide.init(jax.random.key(0)))
  again, _ = finetune._pretrained(c, wide, source, wd, train.classification_task(wide))
  jax.tree.map(np.testing.assert_array_equal, again, variables)  # the same seeded pretraining
  with open(wide_cached, "rb") as f:
    assert f.read() == data


def test_configs_are_locked_and_name_their_file():
  """A typo is an error, not a knob that silently changes nothing; the family configs' unknown
  variant names their file even when loaded by --config (module "config_config")."""
  from ml_collections.config_flags import config_flags as cf
  c = resnet.get_config()
  with pytest.raises(AttributeError, match="seed"):
    c.seed = 3  # (the key is "seeds")
  for family in ("resnet", "shufflenet", "efficientnet", "cornet", "rnn", "simsiam"):
    with pytest.raises(ValueError, match=rf"unknown variant 'banana' of configs/{family}\.py") as e:
      cf.ConfigFileFlagParser("config").parse(os.path.join(ROOT, "configs", f"{family}.py:banana"))
    assert "config_config" not in str(e.value).splitlines()[-1]


def test_resnet_configs_follow_the_protocol():
  """The main job: resnet_tiny with the paper's grid, extension to 100% and its 10 seeds; the
  16-32-64 network is the "small" variant."""
  default = finetune_default.get_config()
  bare, small = resnet.get_config(), resnet.get_config("small")
  assert bare.architectures == ("resnet_tiny",) and bare.seeds == tuple(range(10))
  assert small.architectures == ("resnet_small",) and len(small.seeds) >= 5
  for c in (bare, small):
    assert c.search.learning_rates == default.search.learning_rates
    assert (c.search.epochs, c.search.max_extensions, c.search.extend_seeds) == (30, 4, True)


def test_bad_configs_have_clear_errors(tmp_path):
  c = tiny_config()
  c.architectures = ("resnet19",)
  with pytest.raises(ValueError, match="unknown architecture 'resnet19'"):
    finetune.run(c, str(tmp_path))
  c = tiny_config()
  c.search.seed = 1
  with pytest.raises(ValueError, match="held-out"):
    finetune.run(c, str(tmp_path))
  c = tiny_config()
  c.trained_potentials = ("0.5-norm",)
  with pytest.raises(ValueError, match="p"):
    finetune.run(c, str(tmp_path))
  with pytest.raises(ValueError, match="unknown variant"):
    resnet.get_config("resnet19")


def test_missing_checkpoint_says_where_to_get_it(tmp_path):
  c = resnet.get_config("resnet18")
  c.pretrain.checkpoint_dir = str(tmp_path)
  model = models.get("resnet_small")
  source = types.SimpleNamespace(pretrain=None)
  with pytest.raises(FileNotFoundError, match="resnet_small.pth.*torch.save"):
    finetune._pretrained(c, model, source, str(tmp_path), None)


def test_weak_pretraining_is_refused(tmp_path):
  c = tiny_config()
  c.pretrain.epochs = 1
  c.pretrain.learning_rate = 1e-6
  with pytest.raises(RuntimeError, match="min_pool_accuracy"):
    finetune.run(c, str(tmp_path))


def test_image_folder_with_imported_checkpoint_end_to_end(tmp_path):
  """The user path of the ImageNet settings on a tiny image folder: weights imported from a local
  .safetensors file (no pretraining), N images per seed read from the folder, analysis."""
  from PIL import Image
  from safetensors.numpy import save_file
  from mdgeom.models import torch_import

  rng = np.random.default_rng(0)
  for k in range(3):
    os.makedirs(tmp_path / "images" / f"class{k}")
    for i in range(10):
      img = (rng.random((40, 40, 3)) * 255 * (0.3 + 0.3 * k)).astype(np.uint8)
      Image.fromarray(img).save(tmp_path / "images" / f"class{k}" / f"{i}.png")
  kwargs = {"widths": (4, 8), "input_shape": (32, 32, 3)}
  model = models.get("cnn_small", num_classes=3, **kwargs)
  sd = torch_import.export_torch(model.init(jax.random.key(3)), model.rename)
  save_file({k: np.ascontiguousarray(v) for k, v in sd.items()},
            str(tmp_path / "cnn_small.safetensors"))

  c = tiny_config()
  c.architectures = ("cnn_small",)
  c.model_kwargs = kwargs
  c.data.source = "image_folder"
  c.data.data_dir = str(tmp_path / "images")
  c.data.image_size = 32
  c.data.num_classes = 3
  c.data.n_data = 12
  c.pretrain.checkpoint_dir = str(tmp_path)
  c.pretrain.checkpoint_pattern = "{arch}.safetensors"
  c.trained_potentials = ("2-norm",)
  res = finetune.run(c, str(tmp_path / "run"))
  assert res["n_data"]["cnn_small"] == 12
  assert res["n_weights"]["cnn_small"] == 3 * 3 * 3 * 4 + 3 * 3 * 4 * 8
  assert res["pretrain"]["cnn_small"]["checkpoint"].endswith("cnn_small.safetensors")
  assert all(np.isfinite(res["delta_cdf"]["cnn_small"]["2-norm"]["2-norm"]))


def test_figure_from_results(tiny_run, tmp_path):
  from figures import finetune as fig
  workdir, res = tiny_run
  out = str(tmp_path / "fig4.png")
  fig.main([os.path.join(workdir, "results.json"), "--out", out])
  assert os.path.getsize(out) > 10_000 and os.path.exists(out[:-4] + ".pdf")
  merged = fig.merge([res, res])
  assert merged["architectures"] == ["mlp"]
  other = dict(res, hypothesized_potentials=["2-norm"])
  with pytest.raises(ValueError, match="different hypothesised"):
    fig.merge([res, other])
