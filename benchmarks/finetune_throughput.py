"""Benchmark for one GPU: ResNet18 finetuning throughput against PyTorch, and one paper-shaped
cell end to end (issue 11). Runs within 8 minutes on one A100/H100-class GPU.

    python benchmarks/finetune_throughput.py                    # batch 256, 224x224
    python benchmarks/finetune_throughput.py --out=throughput.json
    python benchmarks/finetune_throughput.py --smoke            # tiny sizes, any CPU (tested)

On synthetic 224x224 images (random pixels, 1,000 random labels):

1. mdgeom: images/s of one jitted finetuning step of the Flax ResNet18 (forward and backward in
   train mode with batch norm, optimizer update, apply) with `mdgeom.mirror_descent` under
   negative entropy, the 2-norm and the 3-norm, and with `optax.sgd`, momentum 0.9, float32 and
   bfloat16 (the experiments' mixed precision: float32 master weights, `mdgeom.train`), batch 256
   resident on the device. The eight variants are compiled side by side first, then timed in
   interleaved rounds (median over rounds), so a slow phase of a shared machine hits them all
   alike.
2. PyTorch: the same step with torchvision's resnet18 and the authors' style of optimizer
   (torch.optim.SGD, momentum 0.9; float32, and autocast to bfloat16 for mixed precision;
   cudnn.benchmark on), and the ratio mdgeom / PyTorch of every variant at equal precision.
   Skipped, with a note, when torch or torchvision is not installed.
3. One paper-shaped cell end to end: `experiments.finetune.seed_cell` (the experiment's own code:
   finetuning with an orbax checkpoint every epoch as configs/resnet.py:resnet18 sets it, saving
   the weights, the full analysis under five hypothesised potentials) on N = D^0.5 images (D =
   ResNet18's analysed weights), 30 epochs, one potential; its wall time split into training and
   analysis, and the images/s of its training. Skipped when the time used so far leaves less than
   --cell-budget seconds of the 8 minutes.

The JSON written by --out holds every number with the device it ran on. Nothing here estimates a
GPU number: a run on a CPU reports CPU numbers.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import statistics
import sys
import tempfile
import time
import types

# JAX takes 75% of a GPU's memory at start by default; leave half to PyTorch's part (a 40 GB
# A100 holds both steps at batch 256 this way).
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mdgeom import models, results, train  # noqa: E402
from mdgeom.optim import mirror_descent  # noqa: E402

OPTIMIZERS = ("optax.sgd", "2-norm", "negative_entropy", "3-norm")
PRECISIONS = ("float32", "bfloat16")
LR = 1e-4  # small: random labels on random weights must not diverge (a NaN would stop a fit)


def _pretrained_like(variables):
  # Freshly initialised biases are exact zeros, which negative entropy cannot train (pretrained
  # weights have none): move them off zero as a pretrained network would be.
  return jax.tree.map(lambda x: np.where(x == 0, 1e-3, x).astype(x.dtype), variables)


def _images(model, n, size, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": rng.standard_normal((n, size, size, model.input_shape[-1]), np.float32),
          "label": rng.integers(0, model.num_classes, n).astype(np.int32)}


def _optimizer(name):
  if name == "optax.sgd":
    return optax.sgd(LR, momentum=0.9)
  return mirror_descent(name, LR, momentum=0.9)


def mdgeom_steps(arch, batch, size, steps, rounds) -> dict:
  """{precision: {optimizer: images/s}} of the jitted step (part 1)."""
  model = models.get(arch)
  variables = _pretrained_like(model.init(jax.random.key(0)))
  task = train.classification_task(model)
  data = jax.device_put(_images(model, batch, size))
  rng = jax.random.key(1)
  runs = {}
  for precision in PRECISIONS:
    loss_mean = train.batch_mean(task, precision)  # the experiments' (mixed) precision
    for name in OPTIMIZERS:
      tx = _optimizer(name)

      def step(params, state, opt_state, batch, rng, tx=tx, loss_mean=loss_mean):
        (loss, (_, state)), g = jax.value_and_grad(loss_mean, has_aux=True)(
            params, state, batch, rng)
        updates, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state, loss

      params = jax.tree.map(jnp.array, variables["params"])
      state = {"batch_stats": jax.tree.map(jnp.array, variables["batch_stats"])}
      carry = (params, state, tx.init(params))
      runs[precision, name] = {"lowered": jax.jit(step, donate_argnums=(0, 1, 2)).lower(
          *carry, data, rng), "carry": carry, "times": []}
  # XLA compiles outside the GIL: the eight programs compile side by side (on a GPU machine's
  # CPU cores), which keeps the whole script within its 8 minutes.
  t0 = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(min(len(runs), os.cpu_count() or 1)) as pool:
    for run, compiled in zip(runs.values(), pool.map(lambda r: r["lowered"].compile(),
                                                     runs.values())):
      run["fn"] = compiled
  print(f"  compiled {len(runs)} steps in {time.perf_counter() - t0:.0f} s", flush=True)
  for run in runs.values():  # one step each before timing
    *run["carry"], loss = run["fn"](*run["carry"], data, rng)
    jax.block_until_ready(loss)
  for _ in range(rounds):
    for run in runs.values():
      t0 = time.perf_counter()
      carry = run["carry"]
      for _ in range(steps):
        *carry, loss = run["fn"](*carry, data, rng)
      jax.block_until_ready(loss)
      run["times"].append(time.perf_counter() - t0)
      run["carry"] = carry
      if not np.isfinite(float(loss)):
        raise FloatingPointError("a timed step diverged: lower LR")
  return {p: {name: batch * steps / statistics.median(runs[p, name]["times"])
              for name in OPTIMIZERS} for p in PRECISIONS}


def torch_steps(batch, size, steps, rounds) -> dict | None:
  """{precision: images/s} of torchvision's resnet18 with SGD (part 2); None without torch."""
  try:
    import torch
    import torchvision
  except ImportError as e:
    print(f"  PyTorch part skipped: {e}")
    return None
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  torch.backends.cudnn.benchmark = True
  out = {}
  for precision in PRECISIONS:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=1000).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch, 3, size, size, device=dev)
    y = torch.randint(0, 1000, (batch,), device=dev)

    def step():
      opt.zero_grad(set_to_none=True)
      with torch.autocast(device_type=dev, dtype=torch.bfloat16,
                          enabled=precision == "bfloat16"):
        loss = loss_fn(model(x), y)
      loss.backward()
      opt.step()
      return loss

    def sync():
      if dev == "cuda":
        torch.cuda.synchronize()

    for _ in range(3):  # cudnn autotuning
      step()
    sync()
    times = []
    for _ in range(rounds):
      t0 = time.perf_counter()
      for _ in range(steps):
        loss = step()
      sync()
      times.append(time.perf_counter() - t0)
    if not torch.isfinite(loss):
      raise FloatingPointError("a timed PyTorch step diverged: lower LR")
    out[precision] = batch * steps / statistics.median(times)
    del model, opt
  out["device"] = torch.cuda.get_device_name() if dev == "cuda" else platform.processor() or "cpu"
  out["torch"] = torch.__version__
  return out


def paper_cell(arch, size, n_data, epochs, potential, precision, batch) -> dict:
  """One finetuning seed of configs/resnet.py:resnet18 through the experiment's code (part 3)."""
  try:
    from configs import resnet
    from experiments import finetune
  except ImportError as e:  # e.g. ml-collections missing on the GPU machine
    raise SystemExit(f"part 3 needs the experiments' dependencies ({e}): pip install "
                     "ml-collections absl-py scipy tqdm") from e
  from mdgeom.data import images

  config = resnet.get_config("resnet18")
  config.progress = False
  config.train.precision = precision
  config.train.batch_size = batch
  config.search.extend_seeds = False  # exactly `epochs` epochs, whatever the accuracy
  config.architectures = (arch,)
  model = models.get(arch)
  variables = _pretrained_like(model.init(jax.random.key(0)))
  d = model.count_analysed(variables)
  n = images.num_finetune_images(d) if n_data is None else n_data
  pool = _images(model, n, size, seed=1)
  source = types.SimpleNamespace(pool_size=n, take=lambda idx: {k: v[idx] for k, v in pool.items()})
  task = train.classification_task(model)
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.perf_counter()
    cell = finetune.seed_cell(config, model, task, variables, source, n, arch, potential, LR,
                              epochs, 0, workdir)
    wall = time.perf_counter() - t0
  return {"arch": arch, "n_weights": d, "n_images": n, "epochs": int(cell["epochs"]), "potential": potential,
          "precision": precision, "batch": batch, "wall_s": wall,
          "train_s": cell["train_seconds"], "analysis_s": cell["analysis_seconds"],
          "train_images_per_s": n * int(cell["epochs"]) / cell["train_seconds"],
          "final_loss": cell["final_loss"]}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--smoke", action="store_true",
                 help="tiny sizes to test the script on a CPU: resnet_small (the CPU configs' "
                 "16-32-64 ResNet) unless --arch, batch 4, 32x32, 2 steps, a 16-image cell of 2 "
                 "epochs; torchvision's resnet18 as ever")
  p.add_argument("--arch", default=None, help="mdgeom network (default resnet18)")
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--image-size", type=int, default=224)
  p.add_argument("--steps", type=int, default=10, help="steps per timed round")
  p.add_argument("--rounds", type=int, default=5, help="timed rounds (the median is reported)")
  p.add_argument("--cell-potential", default="negative_entropy")
  p.add_argument("--cell-epochs", type=int, default=30)
  p.add_argument("--cell-precision", default="bfloat16", help="configs/resnet.py:resnet18's")
  p.add_argument("--cell-budget", type=float, default=200.0,
                 help="seconds the cell needs; skipped when fewer are left of the 8 minutes")
  p.add_argument("--no-torch", action="store_true")
  p.add_argument("--out", help="write the numbers as JSON here")
  a = p.parse_args(argv)
  n_cell = None
  if a.smoke:
    a.batch, a.image_size, a.steps, a.rounds, a.cell_epochs = 4, 32, 2, 2, 2
    a.arch = a.arch or "resnet_small"
    n_cell = 16
  a.arch = a.arch or "resnet18"
  start = time.perf_counter()
  dev = jax.devices()[0]
  report = {"device": f"{jax.device_count()} x {dev.device_kind} ({dev.platform})",
            "jax": jax.__version__, "arch": a.arch, "batch": a.batch, "image_size": a.image_size,
            "steps": a.steps, "rounds": a.rounds, "smoke": a.smoke}
  print(f"{a.arch} finetuning step, batch {a.batch}, {a.image_size}x{a.image_size}, "
        f"{report['device']}; median of {a.rounds} rounds of {a.steps} steps", flush=True)
  report["mdgeom"] = mdgeom_steps(a.arch, a.batch, a.image_size, a.steps, a.rounds)
  report["torch"] = None if a.no_torch else torch_steps(a.batch, a.image_size, a.steps, a.rounds)
  for precision in PRECISIONS:
    line = f"{precision:<9}"
    for name in OPTIMIZERS:
      ips = report["mdgeom"][precision][name]
      ratio = (f" ({ips / report['torch'][precision]:.2f}x torch)" if report["torch"] else "")
      line += f"  {name} {ips:,.0f}/s{ratio}"
    if report["torch"]:
      line += f"  | torch SGD {report['torch'][precision]:,.0f}/s"
    print(line, flush=True)
  left = 480.0 - (time.perf_counter() - start)
  if a.smoke or left >= a.cell_budget:
    cell = paper_cell(a.arch, a.image_size, n_cell, a.cell_epochs, a.cell_potential,
                      a.cell_precision, a.batch)
    report["cell"] = cell
    print(f"paper-shaped cell: {cell['arch']}, D = {cell['n_weights']:,}, N = {cell['n_images']:,} "
          f"images, {cell['epochs']} epochs, {cell['potential']}, {cell['precision']}: "
          f"{cell['wall_s']:.0f} s (training {cell['train_s']:.0f} s = "
          f"{cell['train_images_per_s']:,.0f} images/s, analysis {cell['analysis_s']:.0f} s)",
          flush=True)
  else:
    report["cell"] = None
    print(f"paper-shaped cell skipped: {left:.0f} s left of 8 minutes (< --cell-budget)")
  report["total_s"] = time.perf_counter() - start
  if a.out:
    results.write_json_atomic(a.out, report)
  return report


if __name__ == "__main__":
  main()
