"""Sweeps shared by several workers (mdgeom.results): claims created with O_EXCL, expired claims
of dead workers taken over, cells that wait for the cells they need, --merge; and three worker
processes running the robustness experiment on one workdir give the results of one process, a
worker killed mid-cell leaving its cell to another; and three workers split the linear-regression
grid (slow)."""

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from mdgeom import results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def fast_polls():
  old = results.configure_sweep(poll=0.05)
  yield
  results.configure_sweep(**old)


def _lock(folder, name, generation=0, host=None, pid=None, age=0.0):
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, f"{name}.lock.{generation}")
  with open(path, "w") as f:
    json.dump({"host": host or results.worker_id()["host"], "pid": pid or os.getpid(),
               "time": time.time() - age}, f)
  os.utime(path, (time.time() - age,) * 2)
  return path


def _dead_pid():
  p = subprocess.Popen([sys.executable, "-c", "pass"])
  p.wait()
  return p.pid


def test_one_claim_among_racing_threads(tmp_path):
  won, barrier = [], threading.Barrier(8)

  def race():
    barrier.wait()
    claim, _ = results.try_claim(str(tmp_path), "cell")
    if claim is not None:
      won.append(claim)

  threads = [threading.Thread(target=race) for _ in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert len(won) == 1
  info = json.load(open(won[0].path))
  assert info["host"] == results.worker_id()["host"] and info["pid"] == os.getpid()
  claim, holder = results.try_claim(str(tmp_path), "cell")
  assert claim is None and holder["pid"] == os.getpid()
  won[0].release()
  assert not glob.glob(str(tmp_path / "cell.lock.*"))


def test_claims_of_dead_or_silent_workers_expire(tmp_path):
  folder = str(tmp_path)
  # The same host, its process gone: free at once, taken over as the next generation.
  old = _lock(folder, "a", pid=_dead_pid())
  claim, _ = results.try_claim(folder, "a", timeout=600)
  assert claim is not None and claim.path.endswith("a.lock.1") and not os.path.exists(old)
  claim.release()
  # Another host, refreshed recently: held; silent for longer than the timeout: free.
  _lock(folder, "b", generation=3, host="elsewhere", pid=1, age=5)
  claim, holder = results.try_claim(folder, "b", timeout=600)
  assert claim is None and holder["host"] == "elsewhere"
  claim, _ = results.try_claim(folder, "b", timeout=2)
  assert claim is not None and claim.path.endswith("b.lock.4")
  claim.release()
  # A live process of this host that stopped refreshing (hung) expires by time too.
  _lock(folder, "c", pid=os.getppid(), age=50)
  assert results.try_claim(folder, "c", timeout=600)[0] is None
  claim, _ = results.try_claim(folder, "c", timeout=10)
  assert claim is not None
  claim.release()


def test_a_held_claim_is_refreshed(tmp_path):
  claim, _ = results.try_claim(str(tmp_path), "x", timeout=0.4)  # refreshed every 0.1 s
  try:
    os.utime(claim.path, (time.time() - 100,) * 2)
    time.sleep(0.5)
    assert time.time() - os.stat(claim.path).st_mtime < 0.4
  finally:
    claim.release()


def test_run_cells_waits_for_needs_and_records_the_worker(tmp_path):
  store = results.CellStore(str(tmp_path), {"config": 1})
  calls = []

  def search():
    calls.append("search")
    return {"lr": 0.1}

  def seed(k):
    return lambda s: calls.append(k) or {"seed": k, "lr": s["lr"]}

  cells = [store.cell(f"seed{k}", seed(k), needs=["search"]) for k in range(2)]
  cells.append(store.cell("search", search))
  values = store.run(cells)
  assert calls == ["search", 0, 1]  # the seeds waited for their search
  assert values == {"seed0": {"seed": 0, "lr": 0.1}, "seed1": {"seed": 1, "lr": 0.1},
                    "search": {"lr": 0.1}}
  stored = results.read_json(store.path("seed1"))
  assert stored["worker"] == results.worker_id() and stored["value"] == values["seed1"]
  assert not glob.glob(os.path.join(store.folder, "*.lock.*"))
  again = results.CellStore(str(tmp_path), {"config": 1})
  assert again.run([again.cell("search", lambda: 1 / 0)]) == {"search": {"lr": 0.1}}
  assert again.get_or_compute("search", lambda: 1 / 0) == ({"lr": 0.1}, True)


def test_cells_computed_together_and_invalid_values(tmp_path):
  store = results.CellStore(str(tmp_path), "c", valid=lambda v: "new" in v)
  both = store.cell("group", lambda: {"a": {"new": 1}, "b": {"new": 2}}, outputs=["a", "b"])
  assert store.run([both]) == {"a": {"new": 1}, "b": {"new": 2}}
  store.put("a", {"old": 1})  # a value an older version wrote: not valid, so recomputed
  assert store.get("a") is None
  assert store.run([both])["a"] == {"new": 1}
  with pytest.raises(ValueError, match="expected"):
    store.run([store.cell("bad", lambda: {"y": 1}, outputs=["y", "z"])])


def test_merge_only_computes_nothing_and_names_missing_cells(tmp_path):
  store = results.CellStore(str(tmp_path), "c")
  store.put("done", 1)
  old = results.configure_sweep(merge_only=True)
  try:
    assert store.run([store.cell("done", lambda: 1 / 0)]) == {"done": 1}
    with pytest.raises(RuntimeError, match="1 cells are not done \\(missing\\)"):
      store.run([store.cell("done", lambda: 1 / 0), store.cell("missing", lambda: 1 / 0)])
  finally:
    results.configure_sweep(**old)


def test_nowait_leaves_cells_held_by_live_workers(tmp_path):
  store = results.CellStore(str(tmp_path), "c")
  _lock(store.folder, "held", pid=os.getppid())
  calls = []
  old = results.configure_sweep(wait=False)
  try:
    with pytest.raises(results.CellsPending):
      store.run([store.cell("held", lambda: 1 / 0), store.cell("free", lambda: calls.append(1))])
  finally:
    results.configure_sweep(**old)
  assert calls == [1]  # the free cell was done first


def test_a_worker_waits_for_a_live_claim_then_takes_over_when_it_dies(tmp_path):
  store = results.CellStore(str(tmp_path), "c")
  sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  _lock(store.folder, "k", pid=sleeper.pid)
  got = {}
  t = threading.Thread(target=lambda: got.update(store.run([store.cell("k", lambda: 7)])))
  t.start()
  time.sleep(0.5)
  assert t.is_alive() and not got  # waiting: the claim's process runs
  sleeper.kill()
  sleeper.wait()
  t.join(timeout=20)
  assert got == {"k": 7}
  assert results.read_json(store.path("k"))["worker"]["pid"] == os.getpid()


# ----------------------------------------------------------------------------------------------
# Worker processes running an experiment's usual command on one workdir
# ----------------------------------------------------------------------------------------------

ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
ROBUSTNESS = ["-m", "experiments.robustness", "--config=configs/robustness.py:small"]


def _values(path):
  """results.json without its wall times."""
  res = results.read_json(path)
  res.pop("wall_time_s", None)
  return res


def _workers(workdir, n, args=ROBUSTNESS):
  procs = [subprocess.Popen([sys.executable, *args, f"--workdir={workdir}"], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for _ in range(n)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  return procs


@pytest.fixture(scope="module")
def robustness_single(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("single")
  _workers(workdir, 1)
  return workdir


def test_three_workers_give_the_results_of_one(robustness_single, tmp_path):
  procs = _workers(tmp_path, 3)
  assert _values(tmp_path / "results.json") == _values(robustness_single / "results.json")
  cells = [results.read_json(p) for p in glob.glob(str(tmp_path / "cells" / "*.json"))]
  assert len(cells) == 6
  assert {c["worker"]["pid"] for c in cells} <= {p.pid for p in procs}
  assert not glob.glob(str(tmp_path / "cells" / "*.lock.*"))
  # --merge rewrites results.json from the cells alone
  os.unlink(tmp_path / "results.json")
  _workers(tmp_path, 1, ROBUSTNESS + ["--merge"])
  assert _values(tmp_path / "results.json") == _values(robustness_single / "results.json")


_SLOW_WORKER = textwrap.dedent("""
    import sys, time
    from experiments import _cli, robustness
    real = robustness.run_cell
    robustness.run_cell = lambda *a: (time.sleep(120), real(*a))[1]  # never finishes a cell
    sys.argv = ["robustness", *sys.argv[1:]]
    _cli.main(robustness.run, robustness.summary, "configs/robustness.py", "runs/robustness")
""")


def test_a_worker_killed_mid_cell_leaves_the_cell_to_another(robustness_single, tmp_path):
  slow = subprocess.Popen([sys.executable, "-c", _SLOW_WORKER, *ROBUSTNESS[2:],
                           f"--workdir={tmp_path}"], cwd=ROOT, env=ENV)
  deadline = time.time() + 120
  while not glob.glob(str(tmp_path / "cells" / "*.lock.0")) and time.time() < deadline:
    assert slow.poll() is None, "the slow worker ended"
    time.sleep(0.05)
  (lock,) = glob.glob(str(tmp_path / "cells" / "*.lock.0"))
  held = os.path.basename(lock).split(".lock.")[0]
  other = subprocess.Popen([sys.executable, *ROBUSTNESS, f"--workdir={tmp_path}"], cwd=ROOT,
                           env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  # The other worker does every free cell, then waits for the one the slow worker holds.
  while len(glob.glob(str(tmp_path / "cells" / "*.json"))) < 5 and time.time() < deadline:
    time.sleep(0.05)
  time.sleep(1.0)
  assert other.poll() is None and not os.path.exists(tmp_path / "cells" / f"{held}.json")
  slow.send_signal(signal.SIGKILL)
  slow.wait()
  out = other.communicate(timeout=300)[0]
  assert other.returncode == 0, out[-3000:]
  cell = results.read_json(str(tmp_path / "cells" / f"{held}.json"))
  assert cell["worker"]["pid"] == other.pid
  assert _values(tmp_path / "results.json") == _values(robustness_single / "results.json")
  assert not glob.glob(str(tmp_path / "cells" / "*.lock.*"))


LINREG = ["-m", "experiments.linear_regression", "--config=configs/linear_regression.py:small"]


def _without_times(value):
  """A result with its wall-time fields (which differ between runs) removed."""
  if isinstance(value, dict):
    return {k: _without_times(v) for k, v in value.items()
            if not k.endswith("_seconds") and k not in ("wall_time_s", "worker")}
  if isinstance(value, list):
    return [_without_times(v) for v in value]
  return value


@pytest.mark.slow
def test_three_workers_split_the_linear_regression_grid(tmp_path):
  """The :small Fig. 6 grid (16 groups of 3 potentials) run by three workers at once gives the
  results of one worker; every group is computed once (one worker per cell file, no lock left)."""
  _workers(tmp_path / "single", 1, LINREG)
  procs = _workers(tmp_path / "three", 3, LINREG)
  one = _without_times(results.read_json(tmp_path / "single" / "results.json"))
  three = _without_times(results.read_json(tmp_path / "three" / "results.json"))
  assert len(three["cells"]) == 48
  assert three == one
  cells = [results.read_json(p) for p in glob.glob(str(tmp_path / "three" / "cells" / "*.json"))]
  assert {c["worker"]["pid"] for c in cells} <= {p.pid for p in procs}
  assert len({c["worker"]["pid"] for c in cells}) >= 2  # the grid was shared
  assert not glob.glob(str(tmp_path / "three" / "cells" / "*.lock.*"))


def test_slurm_script_commands_parse(tmp_path):
  """scripts/slurm_sweep.sh's experiment command (flags, config variant) reaches the run: it
  stops at the first data check, the missing ImageNet folder, not at the command line."""
  env = dict(ENV, SLURM_ARRAY_TASK_ID="2", DATA_DIR=str(tmp_path / "no_imagenet"),
             WORKROOT=str(tmp_path / "runs"), PYTHON=sys.executable)
  proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "slurm_sweep.sh")], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert "no_imagenet" in proc.stderr and "is not a folder" in proc.stderr
