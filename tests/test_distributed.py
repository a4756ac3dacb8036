"""Multi-host data parallelism with JAX's own runtime: two processes with one CPU device each
(jax.distributed, gloo collectives) train the same weights as one process with two devices and
as one device; the experiments' command line joins such a program and writes its results once.
"""

import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from mdgeom import models, results, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env(n_devices=1):
  return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT,
              XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}")


def test_host_feed_equals_device_feed():
  """feed="host" (each process sends its share of every batch, the multi-host default) takes
  the same steps as the data set kept on the devices; a last batch smaller than the others too."""
  m = models.get("cnn_small", widths=(4, 8))
  v = m.init(jax.random.key(1))
  rng = np.random.default_rng(0)
  data = {"image": rng.random((44, 28, 28, 1), np.float32),
          "label": rng.integers(0, 10, 44).astype(np.int32)}
  kw = dict(potential="3-norm", learning_rate=0.02, epochs=2, batch_size=16, seed=3,
            progress=False)
  task = train.classification_task(m)
  a = train.fit(task, v, data, feed="device", **kw)
  b = train.fit(task, v, data, feed="host", **kw)
  np.testing.assert_allclose(a.loss_history, b.loss_history, rtol=1e-6)
  assert a.train_accuracy == b.train_accuracy
  for x, y in zip(jax.tree.leaves(a.variables), jax.tree.leaves(b.variables)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
  with pytest.raises(ValueError, match="feed"):
    train.fit(task, v, data, feed="disk", **kw)


_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, jax
    if {nproc} > 1:
      jax.distributed.initialize("localhost:{port}", {nproc}, int(sys.argv[1]))
    from mdgeom import models, train
    m = models.get("cnn_small", widths=(4, 8)); v = m.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    data = {{"image": rng.random((44, 28, 28, 1), np.float32),
            "label": rng.integers(0, 10, 44).astype(np.int32)}}
    r = train.fit(train.classification_task(m), v, data, potential="3-norm", learning_rate=0.02,
                  epochs=2, batch_size=16, seed=5, progress=False, checkpoint_dir={ckpt!r},
                  devices=jax.devices()[:{n_devices}])
    assert len(train.make_mesh().devices.flat) == {n_global}
    if jax.process_index() == 0:
      np.savez({out!r}, *[np.asarray(x) for x in jax.tree.leaves(r.variables)],
               history=r.loss_history, accuracy=r.train_accuracy)
""")


def test_two_processes_match_two_devices_and_one_device(tmp_path):
  """44 examples in batches of 16 (the last one of 12), batch norm, orbax checkpoints written by
  both processes together; the tolerance of tests/test_train.py's two-device test."""
  out = {}
  port = _free_port()
  for name, nproc, n_devices, host_devices in (("processes", 2, 2, 1), ("devices", 1, 2, 2),
                                               ("one", 1, 1, 1)):
    out[name] = str(tmp_path / f"{name}.npz")
    src = _SCRIPT.format(nproc=nproc, port=port, ckpt=str(tmp_path / f"ckpt_{name}"),
                         n_devices=n_devices, n_global=max(nproc, host_devices), out=out[name])
    procs = [subprocess.Popen([sys.executable, "-c", src, str(i)], env=_env(host_devices),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(nproc)]
    for p in procs:
      log = p.communicate(timeout=240)[0]
      assert p.returncode == 0, log[-3000:]
  assert os.path.isdir(tmp_path / "ckpt_processes" / "2")  # the last epoch's checkpoint
  one = np.load(out["one"])
  for name in ("processes", "devices"):
    other = np.load(out[name])
    for k in one.files:
      np.testing.assert_allclose(one[k], other[k], rtol=1e-4, atol=1e-5, err_msg=f"{name} {k}")


@pytest.mark.slow  # (run with -m slow; kept out of the default run's 20 min)
def test_command_line_joins_a_multi_host_program(tmp_path):
  """--coordinator_address / --num_processes / --process_id: the two processes decide each cell
  together, compute it together and write the cells and results.json once (process 0)."""
  args = [sys.executable, "-m", "experiments.robustness", "--config=configs/robustness.py:small",
          "--config.num_seeds=3", "--config.initializations=('gaussian',)"]
  single = subprocess.run([*args, f"--workdir={tmp_path / 'single'}"], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=240)
  assert single.returncode == 0, single.stderr[-3000:]
  port = _free_port()
  procs = [subprocess.Popen([*args, f"--workdir={tmp_path / 'multi'}",
                             f"--coordinator_address=localhost:{port}", "--num_processes=2",
                             f"--process_id={i}"], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(2)]
  logs = [p.communicate(timeout=240)[0] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  assert "results:" in logs[0] and "results:" not in logs[1]  # one summary
  res = {k: results.read_json(str(tmp_path / k / "results.json")) for k in ("single", "multi")}
  for r in res.values():
    r.pop("wall_time_s")
  assert res["single"] == res["multi"]
  workers = {results.read_json(p)["worker"]["pid"]
             for p in (tmp_path / "multi" / "cells").glob("*.json")}
  assert workers == {procs[0].pid}
  bad = subprocess.run([*args, "--num_processes=2"], cwd=ROOT, env=_env(), capture_output=True,
                       text=True, timeout=120)
  assert bad.returncode == 2 and "--coordinator_address" in bad.stderr  # a command-line error
