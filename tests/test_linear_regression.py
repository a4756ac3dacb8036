"""The linear-regression experiment (Fig. 3A/6): layout, values, closed form, resume, CLI."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mdgeom
from configs import linear_regression as lr_config
from experiments import linear_regression
from mdgeom import results, solve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**overrides):
  config = lr_config.get_config("small")
  config.num_seeds = 3
  config.widths = (60, 150)
  config.n_d_exponents = (0.5,)
  config.corr_powers = (1,)
  config.lr_grid = tuple(float(v) for v in np.logspace(-4, -1, 6))
  config.epochs = 100
  config.closed_form.num_seeds = 2
  for k, v in overrides.items():
    setattr(config, k, v)
  return config


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("linreg"))
  config = tiny_config()
  return config, workdir, linear_regression.run(config, workdir)


def test_layout(tiny_run):
  config, workdir, res = tiny_run
  on_disk = results.read_json(os.path.join(workdir, "results.json"))
  assert on_disk["config"]["num_seeds"] == 3
  cells = on_disk["cells"]
  assert len(cells) == 3 * 2
  for cell in cells:
    assert cell["n_data"] == int(cell["width"] ** cell["n_d"])
    for key in ("delta_cdf", "magnitude", "final_loss", "converged", "closed_form_delta_cdf",
                "closed_form_dual_distance"):
      assert len(cell[key]) == 3, key
    assert cell["closed_form_seeds"] == 2 and cell["closed_form_delta_cdf"][2] is None
    assert cell["learning_rate"] in config.lr_grid
    assert cell["potential"] in ("negative_entropy", "2-norm", "3-norm")


def test_values_against_an_independent_optax_run_and_the_exact_solution(tiny_run):
  config, _, res = tiny_run
  cell = [c for c in res["cells"] if c["potential"] == "3-norm" and c["width"] == 150][0]
  X, y, w0 = linear_regression.make_data(config, 1, 0.5, 150)
  pot = mdgeom.potentials.get("3-norm")
  seed = 1
  # an independent training loop: mdgeom.mirror_descent + optax's cosine schedule, step by step
  tx = mdgeom.mirror_descent(pot, optax.cosine_decay_schedule(cell["learning_rate"],
                                                              cell["epochs"]), 0.9)
  loss = lambda w: jnp.mean((X[seed] @ w - y[seed]) ** 2)
  w, state = w0[seed], tx.init(w0[seed])
  step = jax.jit(lambda w, s: tx.update(jax.grad(loss)(w), s, w))
  for _ in range(cell["epochs"]):
    u, state = step(w, state)
    w = w + u
  np.testing.assert_allclose(cell["final_loss"][seed], loss(w), rtol=0.05, atol=1e-6)
  d = np.asarray(pot.mirror_map(w)) - np.asarray(pot.mirror_map(w0[seed]))
  np.testing.assert_allclose(cell["delta_cdf"][seed], mdgeom.delta_cdf(d), atol=5e-3)
  # the exact solution (Eq. 8/13), recomputed
  sol = solve.min_bregman_solution(pot, np.asarray(X[seed], np.float64),
                                   np.asarray(y[seed], np.float64),
                                   np.asarray(w0[seed], np.float64), max_iter=300)
  d_star = np.asarray(pot.mirror_map(sol.w)) - np.asarray(pot.mirror_map(np.asarray(w0[seed],
                                                                                   np.float64)))
  np.testing.assert_allclose(cell["closed_form_delta_cdf"][seed], mdgeom.delta_cdf(d_star),
                             atol=1e-9)


def test_trained_solutions_match_the_closed_form(tiny_run):
  _, _, res = tiny_run
  for cell in res["cells"]:
    for conv, dist in zip(cell["converged"], cell["closed_form_dual_distance"]):
      if conv and dist is not None:
        assert dist < 0.1, cell


def test_rerun_skips_finished_cells(tiny_run, monkeypatch):
  config, workdir, first = tiny_run

  def fail(*a, **k):
    raise AssertionError("a finished cell was recomputed")

  monkeypatch.setattr(linear_regression, "run_group", fail)
  again = linear_regression.run(config, workdir)
  assert again["cells"] == first["cells"]
  with pytest.raises(AssertionError, match="recomputed"):
    linear_regression.run(tiny_config(seed=7), workdir)


def test_bad_config(tmp_path):
  with pytest.raises(ValueError, match="unknown potential"):
    linear_regression.run(tiny_config(potentials=("4-nrm",)), str(tmp_path))
  with pytest.raises(ValueError, match="exponent"):
    linear_regression.run(tiny_config(n_d_exponents=(1.2,)), str(tmp_path))
  with pytest.raises(ValueError, match="variant"):
    lr_config.get_config("huge")


def test_figure(tiny_run, tmp_path):
  from figures import linear_regression as fig
  _, workdir, _ = tiny_run
  written = fig.plot(results.read_json(os.path.join(workdir, "results.json")),
                     str(tmp_path / "fig6.png"))
  with open(written[0], "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # (run with -m slow; kept out of the default run's 20 min)
def test_command_line(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT)
  cmd = [sys.executable, "-m", "experiments.linear_regression",
         "--config=configs/linear_regression.py:small", "--config.num_seeds=2",
         "--config.widths=(40,)", "--config.corr_powers=(2,)", "--config.n_d_exponents=(0.5,)",
         "--config.closed_form.num_seeds=1", f"--workdir={tmp_path}"]
  out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "3-norm" in out.stdout and os.path.exists(tmp_path / "results.json")
