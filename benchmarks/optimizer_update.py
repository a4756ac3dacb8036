"""Benchmark (a): one jitted mirror-descent update on a ResNet18-sized parameter tree vs optax.sgd.

    python benchmarks/optimizer_update.py [--repeats 20]

11.2M float32 parameters with ResNet18's conv/linear/batch-norm shapes, momentum 0.9. Times, in one
run and interleaved (this machine is noisy), (1) the update alone, jit(tx.update), and (2) the
training-loop step, jit(update + optax.apply_updates) with donated buffers, for optax.sgd and for
mdgeom.mirror_descent with the 2-norm, negative entropy, 3-norm and a user-defined potential whose
inverse mirror map is the numerical Newton solve. Prints each time and its ratio to optax.sgd.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import mdgeom


def resnet18_shapes():
  """Parameter shapes of torchvision's ResNet18 (11,689,512 parameters)."""
  shapes = {"conv1": (7, 7, 3, 64), "bn1_scale": (64,), "bn1_bias": (64,)}
  cin = 64
  for stage, cout in enumerate([64, 128, 256, 512]):
    for block in range(2):
      stride_block = stage > 0 and block == 0
      p = f"layer{stage + 1}_{block}"
      shapes[f"{p}_conv1"] = (3, 3, cin, cout)
      shapes[f"{p}_bn1_scale"] = shapes[f"{p}_bn1_bias"] = (cout,)
      shapes[f"{p}_conv2"] = (3, 3, cout, cout)
      shapes[f"{p}_bn2_scale"] = shapes[f"{p}_bn2_bias"] = (cout,)
      if stride_block:
        shapes[f"{p}_down_conv"] = (1, 1, cin, cout)
        shapes[f"{p}_down_bn_scale"] = shapes[f"{p}_down_bn_bias"] = (cout,)
      cin = cout
  shapes["fc_kernel"] = (512, 1000)
  shapes["fc_bias"] = (1000,)
  return shapes


def make_tree(seed=0):
  shapes = resnet18_shapes()
  keys = jax.random.split(jax.random.PRNGKey(seed), 2 * len(shapes))
  params, grads = {}, {}
  for i, (name, shape) in enumerate(sorted(shapes.items())):
    # nonzero weights (negative entropy needs them), gradients of a realistic relative size
    params[name] = 0.05 * jax.random.normal(keys[2 * i], shape) + 1e-3
    grads[name] = 1e-3 * jax.random.normal(keys[2 * i + 1], shape)
  return params, grads


def user_potential():
  @mdgeom.potential
  def user_3norm(w):  # the 3-norm again, but with no closed forms: autodiff + Newton inverse
    return jnp.abs(w) ** 3 / 3

  return user_3norm


def timed(fn, args, repeats):
  ts = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    ts.append(time.perf_counter() - t)
  return statistics.median(ts)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args()
  params, grads = make_tree()
  n = sum(x.size for x in jax.tree.leaves(params))
  print(f"parameters: {n / 1e6:.2f}M float32 in {len(params)} leaves; device: {jax.devices()[0]}")
  lr = 1e-2
  txs = {
      "optax.sgd": optax.sgd(lr, momentum=0.9),
      "2-norm": mdgeom.mirror_descent(mdgeom.pnorm(2.0), lr, momentum=0.9),
      "negative_entropy": mdgeom.mirror_descent(mdgeom.negative_entropy(), lr, momentum=0.9),
      "3-norm": mdgeom.mirror_descent(mdgeom.pnorm(3.0), lr, momentum=0.9),
      "user 3-norm (Newton)": mdgeom.mirror_descent(user_potential(), lr, momentum=0.9),
  }
  update_fns, step_fns, states = {}, {}, {}
  for name, tx in txs.items():
    states[name] = tx.init(params)
    update_fns[name] = jax.jit(tx.update)

    def step(p, s, g, tx=tx):
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s

    step_fns[name] = jax.jit(step)
    jax.block_until_ready(update_fns[name](grads, states[name], params))  # compile
    jax.block_until_ready(step_fns[name](params, states[name], grads))
  # Interleave the candidates round by round so that drifts of a noisy machine hit all alike.
  update_ts = {name: [] for name in txs}
  step_ts = {name: [] for name in txs}
  for _ in range(args.repeats):
    for name in txs:
      update_ts[name].append(timed(update_fns[name], (grads, states[name], params), 1))
      step_ts[name].append(timed(step_fns[name], (params, states[name], grads), 1))
  update_t = {k: statistics.median(v) for k, v in update_ts.items()}
  step_t = {k: statistics.median(v) for k, v in step_ts.items()}
  base_u, base_s = update_t["optax.sgd"], step_t["optax.sgd"]
  print(f"{'optimizer':<22} {'update ms':>10} {'ratio':>7} {'step ms':>10} {'ratio':>7}")
  for name in txs:
    print(f"{name:<22} {1e3 * update_t[name]:>10.2f} {update_t[name] / base_u:>7.2f} "
          f"{1e3 * step_t[name]:>10.2f} {step_t[name] / base_s:>7.2f}")
  print("goal: 2-norm and negative entropy within 1.5x of optax.sgd")


if __name__ == "__main__":
  main()
