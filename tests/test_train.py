"""The training loop: exact agreement with an independent SGD loop, data parallelism, mixed
precision, checkpoint/resume after a kill, the learning-rate search."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mdgeom import models, potentials, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data(n=100, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": rng.random((n, 28, 28, 1), np.float32),
          "label": rng.integers(0, 10, n).astype(np.int32)}


def _mlp(hidden=(32,)):
  m = models.get("mlp", hidden=hidden)
  return m, m.init(jax.random.key(0)), train.classification_task(m)


def test_cosine_epoch_lr_is_torch_cosine_annealing():
  # torch.optim.lr_scheduler.CosineAnnealingLR(T_max=E) closed form, stepped per epoch.
  e = np.arange(10)
  expect = 0.3 * (1 + np.cos(np.pi * e / 10)) / 2
  np.testing.assert_allclose(train.cosine_epoch_lr(0.3, e, 10), expect, rtol=1e-6)


def test_fit_two_norm_equals_independent_sgd_loop():
  """2-norm mirror descent is SGD: replay the same batches with optax.sgd step by step."""
  m, v, task = _mlp()
  data = _data(70)
  r = train.fit(task, v, data, potential="2-norm", learning_rate=0.05, epochs=3, batch_size=32,
                momentum=0.9, seed=3, progress=False, accuracy=False)

  def loss(p, x, y):
    logits = m.apply({"params": p}, x)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

  params = v["params"]
  opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.05, momentum=0.9)
  state = opt.init(params)
  losses = []
  for epoch in range(3):
    state.hyperparams["learning_rate"] = 0.05 * (1 + np.cos(np.pi * epoch / 3)) / 2
    perm = train.epoch_permutation(3, epoch, 70)
    tot = 0.0
    for start in range(0, 70, 32):
      idx = perm[start:start + 32]
      lv, g = jax.value_and_grad(loss)(params, data["image"][idx], data["label"][idx])
      tot += float(lv) * len(idx)
      u, state = opt.update(g, state, params)
      params = optax.apply_updates(params, u)
    losses.append(tot / 70)
  np.testing.assert_allclose(r.loss_history, losses, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(r.variables["params"]), jax.tree.leaves(params)):
    np.testing.assert_allclose(a, b, atol=2e-6)


def test_fit_negative_entropy_keeps_signs_and_reduces_loss():
  m, v, task = _mlp()
  data = _data(64)
  r = train.fit(task, v, data, potential="negative_entropy", learning_rate=0.5, epochs=5,
                batch_size=64, progress=False)
  assert r.loss_history[-1] < r.loss_history[0]
  for a, b in zip(jax.tree.leaves(v["params"]), jax.tree.leaves(r.variables["params"])):
    assert np.all(np.sign(a) == np.sign(b))
  manual = train.evaluate(task, r.variables, data)
  logits = m.apply(r.variables, data["image"])
  assert manual["accuracy"] == pytest.approx(100 * np.mean(np.argmax(logits, -1) == data["label"]))
  assert r.train_accuracy == pytest.approx(manual["accuracy"])


def test_fit_batchnorm_model_updates_batch_stats_and_bfloat16_is_close():
  m = models.get("cnn_small", widths=(4, 8))
  v = m.init(jax.random.key(1))
  task = train.classification_task(m)
  data = _data(40)
  kw = dict(potential="3-norm", learning_rate=0.01, epochs=2, batch_size=20, progress=False)
  r32 = train.fit(task, v, data, **kw)
  r16 = train.fit(task, v, data, precision="bfloat16", **kw)
  assert not np.allclose(r32.variables["batch_stats"]["bn0"]["mean"], 0.0)
  assert r16.variables["params"]["conv0"]["kernel"].dtype == jnp.float32  # float32 masters
  np.testing.assert_allclose(r16.loss_history, r32.loss_history, rtol=0.05)


def test_fit_rejects_bad_input():
  _, v, task = _mlp()
  data = _data(10)
  with pytest.raises(ValueError, match="precision"):
    train.fit(task, v, data, potential="2-norm", learning_rate=0.1, epochs=1, precision="fp8")
  with pytest.raises(ValueError, match="different numbers of examples"):
    train.fit(task, v, {"image": data["image"], "label": data["label"][:5]}, potential="2-norm",
              learning_rate=0.1, epochs=1)
  bad = dict(data, image=data["image"].copy())
  bad["image"][0, 0, 0, 0] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    train.fit(task, v, bad, potential="2-norm", learning_rate=0.1, epochs=1)
  with pytest.raises(ValueError, match="learning_rate"):
    train.fit(task, v, data, potential="2-norm", learning_rate=-1.0, epochs=1)
  zero = jax.tree.map(lambda x: x, v)
  zero["params"]["0"]["bias"] = jnp.zeros_like(zero["params"]["0"]["bias"])
  with pytest.raises(potentials.SignFlipError, match="exact zeros"):
    train.fit(task, zero, data, potential="negative_entropy", learning_rate=0.1, epochs=1)


def test_diverged_run_reports_nan_loss():
  _, v, task = _mlp()
  r = train.fit(task, v, _data(32), potential="2-norm", learning_rate=1e38, epochs=4,
                progress=False)
  assert np.isnan(r.final_loss)


_SCRIPT = textwrap.dedent("""
    import sys, time, numpy as np, jax
    sys.path.insert(0, {root!r})
    from mdgeom import models, train
    m = models.get("cnn_small", widths=(4, 8)); v = m.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    data = {{"image": rng.random((48, 28, 28, 1), np.float32),
            "label": rng.integers(0, 10, 48).astype(np.int32)}}
    r = train.fit(train.classification_task(m), v, data, potential="3-norm", learning_rate=0.02,
                  epochs={epochs}, batch_size=16, seed=5, progress=False, accuracy=False,
                  checkpoint_dir={ckpt!r}, checkpoint_every=1, devices={devices})
    np.savez({out!r}, *[np.asarray(x) for x in jax.tree.leaves(r.variables)],
             history=r.loss_history)
""")


def _run_script(tmp_path, name, epochs, ckpt, devices="None", n_host_devices=1, background=False,
                slow=False):
  out = str(tmp_path / f"{name}.npz")
  src = _SCRIPT.format(root=ROOT, epochs=epochs, ckpt=ckpt, out=out, devices=devices)
  if slow:  # give the test time to kill the run between checkpoints
    src = src.replace(
        "from mdgeom import models, train",
        "from mdgeom import models, train\n_save = train._save\n"
        "train._save = lambda *a: (_save(*a), time.sleep(1.0))")
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n_host_devices}",
             JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-c", src]
  if background:
    return subprocess.Popen(cmd, env=env), out
  subprocess.run(cmd, env=env, check=True, timeout=300)
  return None, out


def test_checkpoint_resume_after_kill_gives_same_result(tmp_path):
  _, ref = _run_script(tmp_path, "ref", 6, None)
  ckpt = str(tmp_path / "ckpt")
  proc, _ = _run_script(tmp_path, "killed", 6, ckpt, background=True, slow=True)
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    steps = [d for d in os.listdir(ckpt) if d.isdigit()] if os.path.isdir(ckpt) else []
    if steps and max(map(int, steps)) >= 2:
      break
    time.sleep(0.2)
  assert proc.poll() is None, "the run finished before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = max(int(d) for d in os.listdir(ckpt) if d.isdigit())
  assert 2 <= done < 6
  _, resumed = _run_script(tmp_path, "resumed", 6, ckpt)
  a, b = np.load(ref), np.load(resumed)
  for k in a.files:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7, err_msg=k)


def test_resumed_fit_counts_the_seconds_before_the_kill(tmp_path, monkeypatch):
  """FitResult.seconds of a resumed run includes the epochs trained before the kill (the phase
  tables of resumed runs would otherwise report only the last run's part)."""
  _, v, task = _mlp()
  data, ckpt = _data(32), str(tmp_path / "ckpt")
  real_save, real_record = train._save, train._record_elapsed

  def slow_save(m, *a):  # each saved epoch takes 0.5 s more, and is on disk before the "kill"
    real_save(m, *a)
    m.wait_until_finished()
    time.sleep(0.5)

  def killed_after_epoch_2(directory, step, seconds):
    real_record(directory, step, seconds)
    if step == 2:
      raise KeyboardInterrupt("killed")
  monkeypatch.setattr(train, "_save", slow_save)
  monkeypatch.setattr(train, "_record_elapsed", killed_after_epoch_2)
  kw = dict(potential="2-norm", learning_rate=0.1, epochs=4, batch_size=16, progress=False,
            checkpoint_dir=ckpt)
  with pytest.raises(KeyboardInterrupt):
    train.fit(task, v, data, **kw)
  with open(os.path.join(ckpt, "seconds.json")) as f:
    before = json.load(f)["2"]
  assert before >= 1.0  # two slow saves

  monkeypatch.setattr(train, "_save", real_save)
  monkeypatch.setattr(train, "_record_elapsed", real_record)
  t = time.perf_counter()
  r = train.fit(task, v, data, **kw)
  wall = time.perf_counter() - t
  assert np.all(np.isfinite(r.loss_history))  # epochs 1-2 restored, 3-4 trained
  assert before <= r.seconds <= before + wall
  assert r.seconds >= wall + 0.5 * before  # not this run's time alone
  with open(os.path.join(ckpt, "seconds.json")) as f:
    assert before < json.load(f)["4"] <= r.seconds


def test_two_devices_match_one_device(tmp_path):
  _, one = _run_script(tmp_path, "one", 2, None, devices="jax.devices()[:1]", n_host_devices=2)
  _, two = _run_script(tmp_path, "two", 2, None, devices="jax.devices()", n_host_devices=2)
  a, b = np.load(one), np.load(two)
  for k in a.files:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_search_learning_rate_picks_lowest_loss_and_extends_epochs():
  calls = []
  # Accuracy reaches 100% only with 90 epochs at lr 1e-2; lr 1e-1 diverges (NaN).
  table = {1e-3: 0.5, 1e-2: 0.1, 1e-1: np.nan}

  def fake(lr, epochs):
    calls.append((lr, epochs))
    acc = 100.0 if (lr == 1e-2 and epochs >= 90) else 80.0
    return train.FitResult(None, table[lr], acc, lr, epochs, np.array([table[lr]]), 0.0)

  r = train.search_learning_rate(fake, [1e-3, 1e-2, 1e-1], epochs=30, extra_epochs=30,
                                 max_extensions=4, log=lambda *a: None)
  assert (r.learning_rate, r.epochs, r.reached_target) == (1e-2, 90, True)
  assert [e for _, e in calls] == [30] * 3 + [60] * 3 + [90] * 3
  r = train.search_learning_rate(fake, [1e-3, 1e-2], epochs=30, extra_epochs=30,
                                 max_extensions=1, log=lambda *a: None)
  assert (r.epochs, r.reached_target) == (60, False)
  with pytest.raises(FloatingPointError, match="diverged"):
    train.search_learning_rate(fake, [1e-1], log=lambda *a: None)


def test_search_flags_a_choice_at_the_grid_edge(caplog):
  """A rate chosen at an end of the grid may not be the best one: the result and the log say
  so; an interior choice is not flagged."""
  grid = [1e-3, 1e-2, 1e-1]

  def fake_with(losses):
    def fake(lr, epochs):
      loss = losses[grid.index(lr)]
      return train.FitResult(None, loss, 100.0, lr, epochs, np.linspace(2.0, loss, epochs), 0.0)
    return fake

  with caplog.at_level("WARNING", logger="mdgeom.train"):
    r = train.search_learning_rate(fake_with([0.5, 0.2, 0.1]), grid, epochs=3, log=lambda *a: None)
  assert r.learning_rate == 1e-1 and r.at_grid_edge == "upper"
  assert r._asdict()["at_grid_edge"] == "upper"  # (what the finetuning cells store)
  assert any("upper end of the grid" in m for m in caplog.messages)
  # every candidate keeps its training curve: the mean loss of each epoch
  assert [len(row["loss_history"]) for row in r.table] == [3, 3, 3]
  assert r.table[2]["loss_history"][-1] == pytest.approx(0.1)
  caplog.clear()
  with caplog.at_level("WARNING", logger="mdgeom.train"):
    r = train.search_learning_rate(fake_with([0.5, 0.1, 0.2]), grid, epochs=3, log=lambda *a: None)
  assert r.learning_rate == 1e-2 and r.at_grid_edge is None and not caplog.messages
  r = train.search_learning_rate(fake_with([0.1, 0.2, 0.3]), grid, epochs=3, log=lambda *a: None)
  assert r.at_grid_edge == "lower"
  assert train.grid_edge(0.1, [0.1]) is None  # a one-value "grid" is no search
  assert train.grid_edge(0.1, (0.1, 0.01)) == "upper"  # order does not matter


def test_fit_returns_the_training_curve():
  m, v, task = _mlp()
  r = train.fit(task, v, _data(64), potential="2-norm", learning_rate=0.05, epochs=3,
                batch_size=32, progress=False)
  assert r.loss_history.shape == (3,) and np.all(np.isfinite(r.loss_history))
  assert r.loss_history[-1] == pytest.approx(r.final_loss)


def test_paper_learning_rates():
  np.testing.assert_allclose(train.paper_learning_rates(), [1e-5, 1e-4, 1e-3, 1e-2, 1e-1])


def test_max_grad_norm_clips_the_global_gradient_norm():
  m, v, task = _mlp()
  data = _data(32)
  r = train.fit(task, v, data, potential="2-norm", learning_rate=0.1, epochs=1, batch_size=32,
                momentum=0.0, progress=False, accuracy=False, max_grad_norm=0.01)

  def loss(p):
    logits = m.apply({"params": p}, data["image"])
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, data["label"]))

  g = jax.grad(loss)(v["params"])
  assert optax.tree.norm(g) > 0.01  # so the clip is active
  scale = 0.01 / optax.tree.norm(g)
  for a, b, gi in zip(jax.tree.leaves(r.variables["params"]), jax.tree.leaves(v["params"]),
                      jax.tree.leaves(g)):
    np.testing.assert_allclose(a, b - 0.1 * scale * gi, atol=1e-6)
  with pytest.raises(ValueError, match="max_grad_norm"):
    train.fit(task, v, data, potential="2-norm", learning_rate=0.1, epochs=1, max_grad_norm=0.0)


def test_steps_dispatched_one_by_one_equal_the_scanned_epoch():
  # Conv nets on a CPU default to one dispatch per step (XLA:CPU is slow on kernel gradients
  # inside a loop body); both paths take the same steps with the same keys.
  m = models.get("cnn_small", widths=(4, 8))
  v = m.init(jax.random.key(1))
  task = train.classification_task(m)
  data = _data(40)
  assert train._has_convolution(task, v["params"], {"batch_stats": v["batch_stats"]}, data, 16)
  assert not train._has_convolution(_mlp()[2], _mlp()[1]["params"], {}, data, 16)
  kw = dict(potential="3-norm", learning_rate=0.01, epochs=2, batch_size=16, progress=False,
            accuracy=False)
  a = train.fit(task, v, data, scan_steps=True, **kw)
  b = train.fit(task, v, data, scan_steps=False, **kw)
  np.testing.assert_allclose(a.loss_history, b.loss_history, rtol=1e-5)
  for x, y in zip(jax.tree.leaves(a.variables), jax.tree.leaves(b.variables)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_fit_prints_progress_lines_with_eta_without_a_terminal(monkeypatch, capsys):
  # Under pytest stderr is no terminal: the bar is off and a line comes every
  # PROGRESS_LINE_SECONDS (0 here: after every epoch but the last).
  monkeypatch.setattr(train, "PROGRESS_LINE_SECONDS", 0.0)
  _, variables, task = _mlp()
  r = train.fit(task, variables, _data(40), potential="2-norm", learning_rate=0.1, epochs=3,
                batch_size=16, progress=True, desc="mlp 2 seed 0")
  lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("mlp 2 seed 0")]
  # each line reports its epoch's mean training loss (the curve fit returns) and an ETA
  assert [ln.split(", train")[0] for ln in lines] == [
      f"mlp 2 seed 0: epoch {e + 1}/3, loss {r.loss_history[e]:.4g}" for e in (0, 1)]
  assert all(ln.split("ETA ")[1].endswith(" s") for ln in lines)
  train.fit(task, variables, _data(40), potential="2-norm", learning_rate=0.1, epochs=3,
            batch_size=16, progress=False, desc="quiet")
  assert "quiet" not in capsys.readouterr().out
