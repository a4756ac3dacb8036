"""Benchmark: one finetuning step of the Flax ResNet18 with mirror descent vs optax.sgd, and the
data-parallel step on one vs two devices.

    python benchmarks/finetune_step.py [--batch 32] [--image-size 112] [--repeats 10]
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python benchmarks/finetune_step.py --devices

Part 1 times a jitted train step (forward, backward, optimizer update, apply; batch norm in train
mode; momentum 0.9) for optax.sgd and mdgeom.mirror_descent under the 2-norm, negative entropy
and the 3-norm, interleaved in one run (these machines are noisy), and prints each median and its
ratio to optax.sgd. Part 2 (--devices) times whole epochs of `mdgeom.train.fit` with the batch
split over 1 and over 2 devices (the same program, `devices=`), and prints the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mdgeom import models, train
from mdgeom.optim import mirror_descent


def _batch(n, size, classes=1000, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": rng.standard_normal((n, size, size, 3)).astype(np.float32),
          "label": rng.integers(0, classes, n).astype(np.int32)}


def optimizer_steps(batch: int, size: int, repeats: int) -> None:
  model = models.get("resnet18")
  # Freshly initialised biases are exact zeros, which negative entropy cannot train (pretrained
  # weights have none): move them off zero as a pretrained network would be.
  variables = jax.tree.map(lambda x: np.where(x == 0, 1e-3, x), model.init(jax.random.key(0)))
  task = train.classification_task(model)
  data = _batch(batch, size)
  txs = {"optax.sgd": optax.sgd(1e-3, momentum=0.9),
         "2-norm": mirror_descent("2-norm", 1e-3, momentum=0.9),
         "negative entropy": mirror_descent("negative_entropy", 1e-3, momentum=0.9),
         "3-norm": mirror_descent("3-norm", 1e-3, momentum=0.9)}

  def make_step(tx):
    def step(params, state, opt_state, batch):
      def loss(p):
        per, (_, new_state) = task.loss(p, state, batch, jax.random.key(0), True)
        return jnp.mean(per), new_state
      (l, new_state), g = jax.value_and_grad(loss, has_aux=True)(params)
      updates, opt_state = tx.update(g, opt_state, params)
      return optax.apply_updates(params, updates), new_state, opt_state, l
    return jax.jit(step, donate_argnums=(0, 1, 2))

  runs = {}
  for name, tx in txs.items():
    params = jax.tree.map(jnp.copy, variables["params"])
    state = {"batch_stats": jax.tree.map(jnp.copy, variables["batch_stats"])}
    step = make_step(tx)
    carry = (params, state, tx.init(params))
    carry = step(*carry, data)[:3]  # compile
    jax.block_until_ready(carry)
    runs[name] = [step, carry, []]
  for _ in range(repeats):
    for name, r in runs.items():
      t = time.perf_counter()
      out = r[0](*r[1], data)
      jax.block_until_ready(out)
      r[2].append(time.perf_counter() - t)
      r[1] = out[:3]
  base = statistics.median(runs["optax.sgd"][2])
  n_params = models.count_params(variables["params"])
  print(f"ResNet18 ({n_params:,} parameters), batch {batch} at {size}x{size}, "
        f"{jax.devices()[0].platform}; median of {repeats} interleaved steps")
  print(f"{'optimizer':<18}{'step':>10}{'ratio to optax.sgd':>22}")
  for name, r in runs.items():
    m = statistics.median(r[2])
    print(f"{name:<18}{m * 1e3:8.1f}ms{m / base:21.2f}x")


def device_epochs(batch: int, size: int, repeats: int) -> None:
  devs = jax.devices()
  if len(devs) < 2:
    raise SystemExit("needs 2 devices: XLA_FLAGS=--xla_force_host_platform_device_count=2")
  model = models.get("resnet_small") if size <= 32 else models.get("resnet18", num_classes=10)
  variables = model.init(jax.random.key(0))
  task = train.classification_task(model)
  shape = model.input_shape if size <= 32 else (size, size, 3)
  rng = np.random.default_rng(0)
  n = 4 * batch
  data = {"image": rng.standard_normal((n, *shape)).astype(np.float32),
          "label": rng.integers(0, 10, n).astype(np.int32)}
  times = {1: [], 2: []}
  kw = dict(potential="2-norm", learning_rate=1e-3, epochs=1, batch_size=batch, progress=False,
            accuracy=False)
  for k in (1, 2):  # compile both
    train.fit(task, variables, data, devices=devs[:k], **kw)
  for _ in range(repeats):
    for k in (1, 2):
      times[k].append(train.fit(task, variables, data, devices=devs[:k], **kw).seconds)
  m1, m2 = statistics.median(times[1]), statistics.median(times[2])
  print(f"{model.name}: epoch of {n} examples in batches of {batch} ({n // batch} steps), "
        f"median of {repeats} interleaved")
  print(f"1 device: {m1 * 1e3:.0f} ms; 2 devices: {m2 * 1e3:.0f} ms; "
        f"speed-up {m1 / m2:.2f}x")


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--image-size", type=int, default=112)
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--devices", action="store_true", help="one vs two devices instead")
  a = p.parse_args()
  if a.devices:
    device_epochs(a.batch, a.image_size, a.repeats)
  else:
    optimizer_steps(a.batch, a.image_size, a.repeats)


if __name__ == "__main__":
  main()
