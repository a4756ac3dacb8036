"""Benchmark: what the paper's finetuning protocol costs per CPU network, measured in one run.

    python -m benchmarks.protocol_cost                       # the bare configs' networks
    python -m benchmarks.protocol_cost --archs rnn1000 resnet_tiny --rounds 3

For each network at its N = D^0.5 (D = analysed weights, `Model.count_analysed`): the time of a
finetuning epoch of `mdgeom.train.fit` (batch 256, momentum 0.9, the 2-norm; compilation
excluded, median over rounds interleaved across the networks, since these machines are noisy),
its matrix-product and convolution flops (counted in the jaxpr of the epoch's gradient steps),
the rate achieved against a float32 matrix product timed in the same run (the machine's practical
ceiling), and the protocol's time without extensions: the search's 5 rates x 30 epochs plus the
seeds x 30 epochs, for each of the three trained potentials (a diverging candidate stops at its
first non-finite loss and costs less; extensions rerun the whole grid at 60, 90, ... epochs and
add to it). Ratios are to the first network listed.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np

from mdgeom import models, train

DEFAULT_ARCHS = ("resnet_small", "resnet_tiny", "mlp", "rnn100", "rnn1000")


def _setup(arch: str, seed: int = 0):
  model = models.get(arch, num_classes=10)
  variables = model.init(jax.random.key(seed))
  n = int(round(model.count_analysed(variables) ** 0.5))
  rng = np.random.default_rng(seed)
  shape = tuple(model.input_shape)
  data = {"image": rng.standard_normal((n, *shape)).astype(np.float32),
          "label": rng.integers(0, 10, n).astype(np.int32)}
  return model, variables, data, train.classification_task(model)


def _conv_or_dot_flops(eqn) -> float:
  out = eqn.outvars[0].aval.shape
  if eqn.primitive.name == "dot_general":
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    return 2.0 * math.prod(out) * math.prod(lhs[d] for d in lhs_contract)
  rhs = eqn.invars[1].aval.shape  # conv_general_dilated: each output sums C_in/groups x window
  out_feature = eqn.params["dimension_numbers"].rhs_spec[0]
  return (2.0 * math.prod(out) * math.prod(rhs) / rhs[out_feature]
          / eqn.params.get("batch_group_count", 1))


def jaxpr_flops(jaxpr) -> float:
  """Matrix-product and convolution flops of a (closed) jaxpr, scan bodies counted `length`
  times (XLA's cost analysis counts a loop body once); elementwise work is left out."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name in ("dot_general", "conv_general_dilated"):
      total += _conv_or_dot_flops(eqn)
    elif name == "scan":
      total += eqn.params["length"] * jaxpr_flops(eqn.params["jaxpr"])
    elif name == "cond":
      total += max(jaxpr_flops(b) for b in eqn.params["branches"])
    else:  # calls (pjit, custom_jvp/vjp, remat): their inner jaxprs once
      for v in eqn.params.values():
        for sub in (v if isinstance(v, (tuple, list)) else (v,)):
          if isinstance(sub, (jax.extend.core.Jaxpr, jax.extend.core.ClosedJaxpr)):
            total += jaxpr_flops(sub)
  return total


def epoch_flops(task, variables, data, batch_size: int = 256) -> float:
  """Flops of one epoch's gradient steps (forward and backward, `jaxpr_flops`; the update is a
  few flops per weight)."""
  n = len(data["label"])
  params = variables["params"]
  state = {k: v for k, v in variables.items() if k != "params"}

  def mean_loss(p, batch):
    per, _ = task.loss(p, state, batch, jax.random.key(0), True)
    return per.mean()

  total = 0.0
  full, rest = divmod(n, batch_size)
  for size, count in ((batch_size, full), (rest, 1 if rest else 0)):
    if count:
      batch = {k: v[:size] for k, v in data.items()}
      total += count * jaxpr_flops(jax.make_jaxpr(jax.grad(mean_loss))(params, batch))
  return total


def matmul_rate(size: int = 1024, repeats: int = 20) -> float:
  """float32 GFLOP/s of a jitted size^3 matrix product chain on this machine."""
  a = jnp.asarray(np.random.default_rng(0).standard_normal((size, size)), jnp.float32)
  f = jax.jit(lambda x: (x @ a) * (1.0 / size))  # (rescaled inside: one dispatch per product)
  x = f(a).block_until_ready()
  t = time.perf_counter()
  for _ in range(repeats):
    x = f(x)
  x.block_until_ready()
  return 2 * size ** 3 * repeats / (time.perf_counter() - t) / 1e9


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--archs", nargs="+", default=list(DEFAULT_ARCHS))
  p.add_argument("--epochs", type=int, default=3, help="epochs per timed round")
  p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
  p.add_argument("--seeds", type=int, default=5, help="finetuning seeds in the protocol time")
  a = p.parse_args(argv)
  if a.epochs < 1 or a.rounds < 1 or a.seeds < 1:
    raise SystemExit("error: --epochs, --rounds and --seeds must be positive")
  setups, times = {}, {}
  for arch in a.archs:
    try:
      setups[arch] = _setup(arch)
    except ValueError as e:
      raise SystemExit(f"error: {e}") from None
    times[arch] = []

  def fit(arch, epochs, seed):
    _, variables, data, task = setups[arch]  # (one task: fit's compiled programs are reused)
    return train.fit(task, variables, data, potential="2-norm", learning_rate=1e-3,
                     epochs=epochs, seed=seed, accuracy=False, progress=False).seconds

  for arch in a.archs:
    fit(arch, 1, 0)  # compiles
  for r in range(a.rounds):
    for arch in a.archs:
      times[arch].append(fit(arch, a.epochs, r + 1) / a.epochs)
  peak = matmul_rate()
  runs_per_potential = 5 * 30 + a.seeds * 30
  print(f"float32 1024^3 matrix product: {peak:.0f} GFLOP/s (the rate column's reference)")
  print(f"{'network':<14} {'D':>9} {'N':>6} {'s/epoch':>9} {'ratio':>7} {'GFLOP/epoch':>12} "
        f"{'GFLOP/s':>8} {'of peak':>8} {'protocol (min)':>15}")
  first = None
  for arch in a.archs:
    model, variables, data, task = setups[arch]
    t = statistics.median(times[arch])
    first = first or t
    flops = epoch_flops(task, variables, data)
    minutes = 3 * runs_per_potential * t / 60
    print(f"{arch:<14} {model.count_analysed(variables):>9} {len(data['label']):>6} {t:>9.3f} "
          f"{t / first:>7.2f} {flops / 1e9:>12.2f} {flops / t / 1e9:>8.0f} "
          f"{flops / t / 1e9 / peak:>8.0%} {minutes:>15.1f}")
  print(f"(protocol: 3 potentials x (5 rates + {a.seeds} seeds) x 30 epochs, no extension, "
        "no divergence)")


if __name__ == "__main__":
  main()
