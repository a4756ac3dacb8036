"""The robustness experiment (Fig. 3B): protocol, values, resume, figure, command line."""

import glob
import os
import re
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from configs import robustness as robustness_config
from experiments import robustness
from mdgeom import potentials, results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_config(**overrides):
  config = robustness_config.get_config("small")
  config.num_seeds = 4
  config.num_weights = 600
  for k, v in overrides.items():
    setattr(config, k, v)
  return config


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("robustness"))
  config = small_config()
  return config, workdir, robustness.run(config, workdir)


def brute_force_delta_cdf(x):
  grid = np.linspace(-5, 5, 1000)
  xs = np.asarray(x, np.float64) / np.std(np.asarray(x, np.float64), ddof=1)
  f = (grid[:, None] > xs[None, :]).mean(-1)
  return np.abs(f - stats.norm.cdf(grid)).sum() * (grid[1] - grid[0])


def test_layout(small_run):
  config, workdir, res = small_run
  on_disk = results.read_json(os.path.join(workdir, "results.json"))
  assert on_disk["config"]["num_seeds"] == 4 and on_disk["config"]["seed"] == 0
  assert res["true_potentials"] == ["negative_entropy", "2-norm", "3-norm"]
  assert res["hypothesized_potentials"] == ["negative_entropy", "1.5-norm", "2-norm", "2.5-norm",
                                            "3-norm"]
  for name in res["true_potentials"] + res["hypothesized_potentials"]:
    assert potentials.get(name).name == name
  for init in ("gaussian", "lognormal"):
    for key in ("delta_cdf_mean", "delta_cdf_std", "magnitude_mean"):
      assert np.shape(on_disk[init][key]) == (3, 5)
    assert np.shape(on_disk[init]["delta_cdf"]) == (3, 5, 4)
  assert not glob.glob(os.path.join(workdir, "**", ".tmp-*"), recursive=True)


def test_protocol_draws(small_run):
  config, _, _ = small_run
  for init_index, init in enumerate(config.initializations):
    for true_index, true in enumerate(config.true_potentials):
      w0, w = robustness.draw_weights(config, init, true, init_index, true_index)
      w0, w = np.asarray(w0, np.float64), np.asarray(w, np.float64)
      if init == "gaussian":  # N(0, 1/D), D = 100
        assert abs(w0.std() - 0.1) < 0.01 and abs(w0.mean()) < 0.01
      else:  # |w0| log-normal with mean and std 1/sqrt(D_sample), random sign
        target = 1 / np.sqrt(config.num_weights)
        assert abs(np.abs(w0).mean() / target - 1) < 0.08
        assert abs(np.abs(w0).std() / target - 1) < 0.25
        assert 0.4 < np.mean(w0 > 0) < 0.6
      # the dual change is N(0, (0.1 f'(1/sqrt(D)))^2) under the true potential
      pot = potentials.get(true)
      change = np.asarray(pot.mirror_map(w)) - np.asarray(pot.mirror_map(w0))
      scale = 0.1 * abs(float(pot.mirror_map(jnp.asarray(0.1))))
      assert abs(change.std() / scale - 1) < 0.05
      assert stats.normaltest(change.ravel()).pvalue > 1e-4


def test_values_against_brute_force(small_run):
  config, _, res = small_run
  hyp = res["hypothesized_potentials"]
  for init_index, init in enumerate(config.initializations):
    for true_index, true in enumerate(config.true_potentials):
      w0, w = robustness.draw_weights(config, init, true, init_index, true_index)
      w0, w = np.asarray(w0, np.float64), np.asarray(w, np.float64)
      for h_index, h in enumerate(hyp):
        pot = potentials.get(h)
        for seed in (0, 3):
          d = np.asarray(pot.mirror_map(w[seed])) - np.asarray(pot.mirror_map(w0[seed]))
          got = res[init]["delta_cdf"][true_index][h_index][seed]
          np.testing.assert_allclose(got, brute_force_delta_cdf(d), atol=2e-4)
          mag = np.linalg.norm(d) / np.linalg.norm(np.asarray(pot.mirror_map(w0[seed])))
          np.testing.assert_allclose(res[init]["magnitude"][true_index][h_index][seed], mag,
                                     rtol=1e-3)


def test_the_true_potential_is_the_most_gaussian(small_run):
  _, _, res = small_run
  hyp = res["hypothesized_potentials"]
  for init in ("gaussian", "lognormal"):
    table = np.asarray(res[init]["delta_cdf_mean"])
    for t_index, true in enumerate(res["true_potentials"]):
      row = table[t_index]
      own = row[hyp.index(true)]
      assert own < 0.08 and own <= np.sort(row)[1] + 1e-9, (init, true, row)
    # negative entropy vs a 3-norm hypothesis is clearly non-Gaussian (paper section 4.2)
    assert table[0][hyp.index("3-norm")] > 0.3


def test_rerun_skips_finished_cells_and_config_change_recomputes(small_run, monkeypatch, tmp_path):
  config, workdir, first = small_run

  def fail(*args, **kwargs):
    raise AssertionError("a finished cell was recomputed")

  monkeypatch.setattr(robustness, "run_cell", fail)
  again = robustness.run(config, workdir)
  for init in ("gaussian", "lognormal"):
    assert again[init]["delta_cdf"] == first[init]["delta_cdf"]
  with pytest.raises(AssertionError, match="recomputed"):
    robustness.run(small_config(seed=1), workdir)


def test_bad_config_errors(tmp_path):
  with pytest.raises(ValueError, match="unknown initialization"):
    robustness.run(small_config(initializations=("uniform",)), str(tmp_path))
  with pytest.raises(ValueError, match="unknown potential"):
    robustness.run(small_config(true_potentials=("0.5-orm",)), str(tmp_path))
  with pytest.raises(ValueError, match="p > 1"):
    robustness.run(small_config(hypothesized_potentials=("1-norm",)), str(tmp_path))
  with pytest.raises(ValueError, match="variant"):
    robustness_config.get_config("huge")


def test_bad_values_are_refused_before_any_work(tmp_path):
  """NaN knobs (change_scale=nan used to crash after all the work), empty lists (used to write an
  empty results.json), typos (used to be ignored) and a file as workdir (used to fail after the
  first cell)."""
  workdir = tmp_path / "run"
  for overrides, named in ((dict(change_scale=float("nan")), "config.change_scale"),
                           (dict(change_scale=float("inf")), "config.change_scale"),
                           (dict(true_potentials=()), "config.true_potentials"),
                           (dict(hypothesized_potentials=()), "config.hypothesized_potentials"),
                           (dict(initializations=()), "config.initializations")):
    with pytest.raises(ValueError, match=re.escape(named)):
      robustness.run(small_config(**overrides), str(workdir))
  config = small_config()
  with pytest.raises(AttributeError, match="num_seeds"):
    config.num_seed = 3  # the configs are locked: a typo is an error where it is made
  with config.unlocked():
    config.num_seed = 3
  with pytest.raises(ValueError, match="unknown config key 'num_seed'.*did you mean 'num_seeds'"):
    robustness.run(config, str(workdir))
  assert not workdir.exists()
  afile = tmp_path / "afile"
  afile.write_text("")
  with pytest.raises(NotADirectoryError, match="afile"):
    robustness.run(small_config(), str(afile))


def test_truncated_cell_is_recomputed_with_a_warning(tmp_path, caplog):
  config = small_config(num_seeds=2, initializations=("gaussian",), true_potentials=("2-norm",))
  workdir = str(tmp_path)
  first = robustness.run(config, workdir)
  (cell,) = glob.glob(os.path.join(workdir, "cells", "*.json"))
  with open(cell, "r+") as f:
    f.truncate(os.path.getsize(cell) // 2)  # a killed write or a full disk
  with caplog.at_level("WARNING"):
    again = robustness.run(config, workdir)
  assert again["gaussian"]["delta_cdf"] == first["gaussian"]["delta_cdf"]
  assert any(cell in m for m in caplog.messages)
  assert results.read_json(cell)["value"]["delta_cdf"]  # rewritten whole
  with open(cell, "w") as f:
    f.write("{")
  with pytest.raises(results.ResultFileError, match=re.escape(cell)):
    results.read_json(cell)


def test_figure(small_run, tmp_path):
  from figures import robustness as fig
  _, workdir, _ = small_run
  written = fig.plot(results.read_json(os.path.join(workdir, "results.json")),
                     str(tmp_path / "fig3b.png"))
  assert [os.path.splitext(p)[1] for p in written] == [".png", ".pdf"]
  with open(written[0], "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # (run with -m slow; kept out of the default run's 20 min)
def test_command_line(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT)
  cmd = [sys.executable, "-m", "experiments.robustness", "--config=configs/robustness.py:small",
         "--config.num_seeds=3", f"--workdir={tmp_path}"]
  out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  assert "mean Delta-CDF over 3 seeds" in out.stdout
  assert os.path.exists(tmp_path / "results.json")
  bad = subprocess.run(cmd + ["--config.no_such_key=1"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
  assert bad.returncode != 0 and "no_such_key" in bad.stderr


def test_user_potential_in_the_config_and_cells_follow_its_code(tmp_path, monkeypatch):
  """A config names a user's potential as 'module:function'; editing the function recomputes
  the cells (the cell store is keyed by the potential's code, not its name)."""
  pkg = tmp_path / "pkg"
  pkg.mkdir()
  (pkg / "userpot.py").write_text("def quartic(w):\n  return w**4 / 4 + w**2 / 2\n")
  monkeypatch.syspath_prepend(str(pkg))
  config = small_config(true_potentials=("2-norm",), num_seeds=2,
                        hypothesized_potentials=("2-norm", "userpot:quartic"))
  workdir = str(tmp_path / "run")
  first = robustness.run(config, workdir)
  assert "userpot:quartic" in first["hypothesized_potentials"]
  again = robustness.run(config, workdir)
  assert again["gaussian"]["delta_cdf"] == first["gaussian"]["delta_cdf"]
  (pkg / "userpot.py").write_text("def quartic(w):\n  return w**4 / 4 + w**2\n")
  import importlib
  import sys as _sys
  _sys.modules.pop("userpot", None)
  importlib.invalidate_caches()
  stored = {p: os.path.getmtime(p) for p in glob.glob(os.path.join(workdir, "cells", "*.json"))}
  robustness.run(config, workdir)
  changed = [p for p, t in stored.items() if os.path.getmtime(p) != t]
  assert changed  # the cells were recomputed with the edited potential
