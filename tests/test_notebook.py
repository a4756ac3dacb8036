"""Executes notebooks/closed_form_vs_trained.ipynb and checks what it computes.

Needs nbclient, nbformat and ipykernel (and jupytext for the sync check).
"""

import json
import math
import os
import pathlib
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "closed_form_vs_trained.ipynb"
TWIN = REPO / "notebooks" / "closed_form_vs_trained.py"
MAX_SECONDS = 180
CELL_TIMEOUT = 150
POTENTIALS = {"negative_entropy", "2-norm", "3-norm"}


def _kernel_env(tmp_path):
  """Environment for a python3 kernel that runs this interpreter with the repo importable.

  A kernel spec named python3 is written to a temporary JUPYTER_PATH entry (searched first), with
  argv[0] = sys.executable, so the kernel uses this interpreter whatever `python` is on PATH.
  """
  pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
  spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
  spec_dir.mkdir(parents=True)
  (spec_dir / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "Python 3 (mdgeom tests)",
      "language": "python",
      "env": {"PYTHONPATH": pythonpath},
  }))
  jupyter_path = os.pathsep.join(
      p for p in (str(tmp_path / "jupyter"), os.environ.get("JUPYTER_PATH")) if p)
  return {"PYTHONPATH": pythonpath, "JUPYTER_PATH": jupyter_path,
          "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  pytest.importorskip("ipykernel")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  env = _kernel_env(tmp_path_factory.mktemp("kernel"))
  with pytest.MonkeyPatch.context() as mp:
    for k, v in env.items():
      mp.setenv(k, v)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(REPO)}})
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
  return nb, elapsed


def _summary(nb):
  cells = [c for c in nb.cells if "summary-json" in c.metadata.get("tags", [])]
  assert len(cells) == 1, "the notebook needs exactly one cell tagged summary-json"
  text = "".join(o.get("text", "") for o in cells[0].outputs
                 if o.get("output_type") == "stream" and o.get("name") == "stdout")
  return json.loads(text)


def test_committed_executed():
  """The notebook is committed with its outputs, so a reader on a code host sees the figures and
  numbers: every code cell ran, in order, without an error, and the figures are there."""
  nbformat = pytest.importorskip("nbformat")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
  outputs = [o for c in code for o in c.outputs]
  assert not any(o.output_type == "error" for o in outputs)
  assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3


def test_twin_in_sync():
  try:
    import jupytext
  except ImportError:
    pytest.skip("jupytext is not installed: cannot compare the .ipynb with its .py twin")
  a = jupytext.read(NOTEBOOK)
  b = jupytext.read(TWIN)
  cells = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]
  assert cells(a) == cells(b), (
      "notebooks/closed_form_vs_trained.ipynb is out of sync with its .py twin: run "
      "`jupytext --sync notebooks/closed_form_vs_trained.py`")


def test_runs_in_time_without_errors(executed):
  nb, elapsed = executed
  assert elapsed < MAX_SECONDS, f"the notebook took {elapsed:.0f} s"
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert not any(o.get("output_type") == "error" for o in cell.outputs)
  n_images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                 for o in c.outputs)
  assert n_images >= 2, "expected the dual-distance and histogram figures"


def test_summary_table(executed):
  nb, _ = executed
  rows = _summary(nb)
  models = {}
  for r in rows:
    models.setdefault(r["model"], {})[r["potential"]] = r
    for key in ("final_loss", "delta_cdf_trained", "delta_cdf_exact", "dual_dist_exact",
                "dual_dist_linearized", "change_magnitude"):
      assert math.isfinite(r[key]) and r[key] >= 0, (r["model"], r["potential"], key, r[key])
    assert r["exact_converged"], (r["model"], r["potential"])
  assert "linear" in models and len(models) >= 2, sorted(models)
  for model, by_pot in models.items():
    assert set(by_pot) == POTENTIALS, (model, sorted(by_pot))

  for pot, r in models["linear"].items():
    # training reaches the exact minimum-Bregman interpolant (Eq. 8) ...
    assert r["final_loss"] < 1e-8, (pot, r["final_loss"])
    assert r["dual_dist_exact"] < 1e-2, (pot, r["dual_dist_exact"])
    # ... which is at least as close as the linearised one (Eq. 14-15; equal for the 2-norm)
    assert r["dual_dist_exact"] <= r["dual_dist_linearized"] * (1 + 1e-3) + 1e-6, r
    # the trained and the exact dual change have the same distribution
    assert abs(r["delta_cdf_trained"] - r["delta_cdf_exact"]) < 5e-3, r
  two = models["linear"]["2-norm"]
  assert math.isclose(two["dual_dist_exact"], two["dual_dist_linearized"], rel_tol=1e-2,
                      abs_tol=1e-6), two

  for model, by_pot in models.items():
    if model == "linear":
      continue
    for pot, r in by_pot.items():
      assert r["final_loss"] < 1e-6, (model, pot, r["final_loss"])
      assert math.isfinite(r["delta_cdf_exact_per_unit"]), (model, pot)
