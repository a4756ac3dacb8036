"""Benchmark for a GPU: ResNet18 finetuning throughput (images/s) per potential.

    python benchmarks/finetune_throughput.py                   # batch 256, 224x224, bfloat16
    python benchmarks/finetune_throughput.py --batch 8 --image-size 64 --steps 3   # CPU smoke run

Runs `mdgeom.train.fit` (the experiments' loop: jitted scan over the batches of an epoch,
data-parallel over all local devices, mixed precision) for one epoch to compile, then times
`--epochs` epochs of `--steps` batches for optax-equivalent 2-norm, negative entropy and the
3-norm, and prints images/s and the ratio to the 2-norm (= SGD). One run, interleaved.
"""

from __future__ import annotations

import argparse
import statistics

import jax
import numpy as np

from mdgeom import models, train


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--image-size", type=int, default=224)
  p.add_argument("--steps", type=int, default=10, help="batches per timed epoch")
  p.add_argument("--epochs", type=int, default=3, help="timed epochs per potential")
  p.add_argument("--precision", default="bfloat16")
  a = p.parse_args()
  model = models.get("resnet18")
  # Freshly initialised biases are exact zeros, which negative entropy cannot train (pretrained
  # weights have none): move them off zero as a pretrained network would be.
  variables = jax.tree.map(lambda x: np.where(x == 0, 1e-3, x), model.init(jax.random.key(0)))
  task = train.classification_task(model)
  n = a.batch * a.steps
  rng = np.random.default_rng(0)
  data = {"image": rng.standard_normal((n, a.image_size, a.image_size, 3)).astype(np.float32),
          "label": rng.integers(0, 1000, n).astype(np.int32)}
  pots = ["2-norm", "negative_entropy", "3-norm"]
  kw = dict(learning_rate=1e-4, epochs=1, batch_size=a.batch, precision=a.precision,
            progress=False, accuracy=False)
  for pot in pots:
    train.fit(task, variables, data, potential=pot, **kw)  # compile
  times = {pot: [] for pot in pots}
  for _ in range(a.epochs):
    for pot in pots:
      times[pot].append(train.fit(task, variables, data, potential=pot, **kw).seconds)
  print(f"ResNet18, batch {a.batch}, {a.image_size}x{a.image_size}, {a.precision}, "
        f"{jax.device_count()} x {jax.devices()[0].device_kind}; {a.steps} steps per epoch, "
        f"median of {a.epochs} epochs (data transfer included)")
  base = n / statistics.median(times["2-norm"])
  for pot in pots:
    ips = n / statistics.median(times[pot])
    print(f"{pot:<18}{ips:10.0f} images/s{ips / base:8.2f}x of 2-norm")


if __name__ == "__main__":
  main()
