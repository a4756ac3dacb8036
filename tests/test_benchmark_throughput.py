"""benchmarks/finetune_throughput.py (the GPU measurement of issue 11) runs end to end in its
--smoke mode on a CPU: every optimizer and precision of the step, the paper-shaped cell through
the experiment's code, and the PyTorch comparison where torch is installed."""

import pytest
import importlib.util
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow  # (run with -m slow; kept out of the default run's 20 min)
def test_smoke_run_reports_every_number(tmp_path):
  out = tmp_path / "throughput.json"
  has_torch = all(importlib.util.find_spec(m) for m in ("torch", "torchvision"))
  cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "finetune_throughput.py"), "--smoke",
         f"--out={out}"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(out.read_text())
  assert report["smoke"] and report["device"].endswith("(cpu)")
  for precision in ("float32", "bfloat16"):
    ips = report["mdgeom"][precision]
    assert set(ips) == {"optax.sgd", "2-norm", "negative_entropy", "3-norm"}
    assert all(v > 0 for v in ips.values())
  if has_torch:
    assert report["torch"]["float32"] > 0 and report["torch"]["bfloat16"] > 0
    assert "x torch" in proc.stdout
  else:
    assert report["torch"] is None and "PyTorch part skipped" in proc.stdout
  cell = report["cell"]
  assert cell["epochs"] == 2 and cell["n_images"] == 16
  assert cell["wall_s"] >= cell["train_s"] > 0 and cell["analysis_s"] > 0
  assert "paper-shaped cell" in proc.stdout
