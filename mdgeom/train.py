"""One training loop for every experiment: finetuning (Fig. 4), the RNN (Fig. 7A), SimSiam (7B).

Stochastic mirror descent (`mdgeom.mirror_descent`, Eq. 5-7) with heavy-ball momentum, no weight
decay and a cosine-annealed learning rate stepped once per epoch (torch's CosineAnnealingLR with
T_max = epochs, as in the paper's code): eta_e = eta (1 + cos(pi e / E)) / 2 in epoch e.

- Whole epochs are one jitted call: a `lax.scan` over the full batches (plus one step for a
  smaller last batch, like torch's `drop_last=False`), so small models on a CPU are not bound by
  Python dispatch. The data set lives on the devices (the paper's N = D^0.5 images fit easily).
- Data parallel over all devices (or `devices=`) with `jax.sharding`: parameters are
  replicated, each batch is split along its first axis; XLA inserts the gradient all-reduce (and
  batch norm's batch statistics are those of the whole batch, as on one device).
- Multi-host (multi-controller JAX): after `jax.distributed.initialize()` every process runs the
  same `fit` on the same data; the mesh spans every process's devices, and each process feeds
  only its devices' share of every batch (`feed="host"`), so the weights equal those of one
  process with as many devices. Orbax writes checkpoints in its multi-process mode.
- `precision="bfloat16"`: forward and backward in bfloat16, float32 master weights, optimizer
  state and loss (mixed precision, as the paper's autocast).
- Orbax checkpoints after every `checkpoint_every` epochs; a killed run given the same
  `checkpoint_dir` resumes from the last one and ends with the same weights, because batch order
  and dropout keys are functions of (seed, epoch, step) only.
- `search_learning_rate`: the paper's grid search (lowest final loss) with epoch extension until
  the training accuracy reaches the target; a choice at either end of the grid is flagged
  (`at_grid_edge`, and a logged warning), since the best rate may then lie outside it.

A task is a loss over a batch (`Task`); `classification_task(model)` is cross-entropy.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mdgeom import potentials as potentials_lib
from mdgeom import results
from mdgeom.optim import mirror_descent

_log = logging.getLogger(__name__)


class Task(NamedTuple):
  """What is trained.

  loss: (params, state, batch, rng, train) -> (per_example_loss (B,), (metrics, new_state)),
    where `metrics` maps names to per-example values (B,) (e.g. "correct" in {0, 1}) and
    `new_state` holds the updated non-parameter collections (batch statistics).
  """
  loss: Callable


def classification_task(model, label_smoothing: float = 0.0) -> Task:
  """Softmax cross-entropy of a `mdgeom.models.Model` on batches {"image", "label"}."""

  def loss(params, state, batch, rng, train):
    variables = {"params": params, **state}
    if train:
      logits, new_stats = model.apply(variables, batch["image"], train=True)
      new_state = {**state, "batch_stats": new_stats} if "batch_stats" in state else state
    else:
      logits, new_state = model.apply(variables, batch["image"], train=False), state
    logits = logits.astype(jnp.float32)
    labels = batch["label"]
    onehot = jax.nn.one_hot(labels, logits.shape[-1])
    if label_smoothing:
      onehot = optax.smooth_labels(onehot, label_smoothing)
    per_example = optax.softmax_cross_entropy(logits, onehot)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return per_example, ({"correct": correct}, new_state)

  return Task(loss)


class FitResult(NamedTuple):
  variables: Any          # {"params": ..., other collections}
  final_loss: float       # mean training loss over the last epoch (the paper's selection value)
  train_accuracy: float   # % correct on the training data in eval mode after training (or NaN)
  learning_rate: float
  epochs: int
  loss_history: np.ndarray  # mean loss per epoch
  seconds: float           # training time, including the epochs before a resume (see fit)


def cosine_epoch_lr(learning_rate, epoch, epochs):
  """eta (1 + cos(pi e / E)) / 2: torch's CosineAnnealingLR(T_max=E), stepped once per epoch."""
  return learning_rate * 0.5 * (1.0 + jnp.cos(jnp.pi * epoch / epochs))


def make_mesh(devices: Optional[Sequence] = None) -> Mesh:
  """A one-axis ("data") mesh over `devices` (default: every device of every process, which is
  the local devices unless `jax.distributed.initialize()` joined several processes)."""
  devices = list(jax.devices() if devices is None else devices)
  return Mesh(np.array(devices), ("data",))


def _cast_floats(tree, dtype):
  return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                      tree)


def batch_mean(task, precision):
  compute = jnp.bfloat16 if precision == "bfloat16" else jnp.float32

  def f(params, state, batch, rng):
    p = _cast_floats(params, compute) if compute != jnp.float32 else params
    b = _cast_floats(batch, compute) if compute != jnp.float32 else batch
    per_example, (metrics, new_state) = task.loss(p, state, b, rng, True)
    new_state = jax.tree.map(lambda new, old: new.astype(old.dtype), new_state, state)
    return jnp.mean(per_example.astype(jnp.float32)), (metrics, new_state)

  return f


class _Programs(NamedTuple):
  scan_epoch: Callable
  step: Callable
  evaluate: Callable


_PROGRAM_CACHE: dict = {}


def _programs(task: Task, pot, momentum, precision, mesh: Mesh,
              max_grad_norm: Optional[float] = None) -> _Programs:
  """Jitted epoch/step/eval functions; cached so repeated fits (learning-rate grid, seeds,
  epoch extensions) reuse one compilation: learning rate and epoch count are traced inputs."""
  key = (task, id(pot), momentum, precision, mesh, max_grad_norm)
  if key in _PROGRAM_CACHE:
    return _PROGRAM_CACHE[key]
  n_dev = mesh.devices.size
  batch_sharding = NamedSharding(mesh, P("data"))
  loss_mean = batch_mean(task, precision)
  grad_fn = jax.value_and_grad(loss_mean, has_aux=True)

  def one_step(params, state, opt_state, data, idx, lr, rng):
    # idx: the batch's example indices into the data set on the devices, or (feed="host") 0,
    # with `data` the step's batch (1, B, ...) that the processes fed.
    batch = jax.tree.map(lambda a: a[idx], data)
    size = jax.tree.leaves(batch)[0].shape[0]
    if size % n_dev == 0 and n_dev > 1:
      batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
    (loss, (metrics, state)), grads = grad_fn(params, state, batch, rng)
    if max_grad_norm is not None:  # e.g. pretraining an RNN, whose gradients can explode
      grads, _ = optax.clip_by_global_norm(max_grad_norm).update(grads, None)
    opt = mirror_descent(pot, learning_rate=lr, momentum=momentum)
    updates, opt_state = opt.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    # Sums over the batch: loss and, for the progress bar, the train-mode correct count.
    correct = jnp.sum(metrics["correct"]) if "correct" in metrics else jnp.nan
    return params, state, opt_state, jnp.stack([loss * size,
                                                jnp.asarray(correct, jnp.float32)])

  def scan_epoch(params, state, opt_state, data, perm, lr, key):
    def body(carry, inp):
      params, state, opt_state = carry
      i, idx = inp
      params, state, opt_state, loss_sum = one_step(params, state, opt_state, data, idx, lr,
                                                    jax.random.fold_in(key, i))
      return (params, state, opt_state), loss_sum
    steps = jnp.arange(perm.shape[0])
    (params, state, opt_state), losses = jax.lax.scan(body, (params, state, opt_state),
                                                      (steps, perm))
    return params, state, opt_state, jnp.sum(losses, axis=0)

  def step(params, state, opt_state, data, idx, lr, key, i):
    return one_step(params, state, opt_state, data, idx, lr, jax.random.fold_in(key, i))

  def evaluate(params, state, data, idx, mask):
    # idx: (num_batches, B) padded with index 0; mask marks real examples. Sums the loss and
    # every per-example metric of the task.
    def outputs(ix):
      batch = jax.tree.map(lambda a: a[ix], data)
      per_example, (metrics, _) = task.loss(params, state, batch, jax.random.key(0), False)
      return {"loss": per_example.astype(jnp.float32),
              **{k: v.astype(jnp.float32) for k, v in metrics.items()}}

    def body(tot, inp):
      ix, m = inp
      out = outputs(ix)
      return {k: tot[k] + jnp.sum(out[k] * m) for k in tot}, None
    shapes = jax.eval_shape(outputs, idx[0])
    init = {k: jnp.zeros([]) for k in shapes}
    tot, _ = jax.lax.scan(body, init, (idx, mask))
    return tot

  progs = _Programs(
      # (pot is kept alive by the closures, so its id stays unique while cached)
      jax.jit(scan_epoch, donate_argnums=(0, 1, 2)),
      jax.jit(step, donate_argnums=(0, 1, 2)),
      jax.jit(evaluate))
  _PROGRAM_CACHE[key] = progs
  return progs


def _check_data(data: Mapping[str, Any]) -> int:
  if not data:
    raise ValueError("no training data given.")
  sizes = {k: np.shape(v)[0] for k, v in data.items()}
  if len(set(sizes.values())) != 1:
    raise ValueError(f"data arrays have different numbers of examples: {sizes}.")
  n = next(iter(sizes.values()))
  if n == 0:
    raise ValueError("the training data are empty.")
  for k, v in data.items():
    if np.issubdtype(np.asarray(v).dtype, np.floating) and not np.all(np.isfinite(v)):
      raise ValueError(f"data[{k!r}] has NaN or Inf values.")
  return n


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """The order of the examples in an epoch: a function of (seed, epoch) only."""
  return np.random.default_rng([seed, epoch, 0x5eed]).permutation(n)


def evaluate(task: Task, variables, data: Mapping[str, Any], batch_size: int = 256,
             devices: Optional[Sequence] = None) -> dict:
  """Mean loss and per-example metrics of `variables` on `data` in eval mode (batch norm running
  averages, no dropout); the "correct" metric is reported as "accuracy" in %."""
  n = _check_data(data)
  mesh = make_mesh(devices)
  progs = _programs(task, potentials_lib.get("2-norm"), 0.0, "float32", mesh)
  params = variables["params"]
  state = {k: v for k, v in variables.items() if k != "params"}
  nb = math.ceil(n / batch_size)
  idx = np.zeros(nb * batch_size, np.int32)
  idx[:n] = np.arange(n)
  mask = (np.arange(nb * batch_size) < n).astype(np.float32)
  tot = progs.evaluate(params, state, data, idx.reshape(nb, batch_size),
                       mask.reshape(nb, batch_size))
  out = {k: float(v) / n for k, v in tot.items()}
  if "correct" in out:
    out["accuracy"] = 100.0 * out.pop("correct")
  return out


def fit(task: Task, variables, data: Mapping[str, Any], *, potential, learning_rate: float,
        epochs: int, batch_size: int = 256, momentum: float = 0.9, seed: int = 0,
        precision: str = "float32", devices: Optional[Sequence] = None,
        checkpoint_dir: Optional[str] = None, checkpoint_every: int = 1,
        accuracy: bool = True, progress: bool = True, desc: str = "",
        max_grad_norm: Optional[float] = None, scan_steps: Optional[bool] = None,
        feed: Optional[str] = None) -> FitResult:
  """Trains `variables` on `data` (a dict of arrays with a common first axis) with mirror descent.

  Args:
    task: the loss (`classification_task(model)` for images).
    variables: {"params": ..., "batch_stats": ...} initial (e.g. pretrained) variables.
    potential: a Potential or name; every parameter leaf is updated with it (the paper's code
      applies the potential to all parameters; the analysis later excludes some).
    learning_rate, epochs: peak learning rate of the per-epoch cosine schedule and its length.
    batch_size: examples per step; the last batch of an epoch may be smaller.
    seed: batch order and per-step keys come from it.
    precision: "float32" or "bfloat16" (mixed precision).
    devices: devices to split each batch over (default all devices: those of every process
      after `jax.distributed.initialize()`, where every process calls `fit` with the same data).
    checkpoint_dir: if given, an orbax checkpoint is written every `checkpoint_every` epochs and
      a run finds and resumes from the latest one.
    accuracy: evaluate the training accuracy (%) in eval mode at the end (tasks with a
      "correct" metric; NaN otherwise).
    max_grad_norm: if given, each step's gradient is rescaled to at most this global 2-norm
      before the mirror-descent update (None: no clipping, the paper's finetuning).
    scan_steps: run an epoch's full batches as one `lax.scan` (True) or dispatch each step from
      Python (False; same steps, keys and result). None: scan, except on a CPU for a loss with
      convolutions, whose kernel gradients XLA:CPU computes 20-40x slower inside a loop body
      (jax-ml/jax#12868).
    feed: "device": the data set is sent to the devices once and each step gathers its batch
      there; "host": each step's batch is gathered on the host, each process sending only the
      rows of its own devices (`jax.make_array_from_callback`), one dispatch per step (for data
      larger than device memory). None: "host" when the devices span several processes
      (multi-host), else "device". Both give the same steps and weights.
  """
  if precision not in ("float32", "bfloat16"):
    raise ValueError(f"unknown precision {precision!r}: use 'float32' or 'bfloat16'.")
  if epochs < 1 or batch_size < 1:
    raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}.")
  if not (learning_rate > 0 and math.isfinite(learning_rate)):
    raise ValueError(f"learning_rate must be positive and finite, got {learning_rate}.")
  n = _check_data(data)
  pot = potentials_lib.get(potential)
  mesh = make_mesh(devices)
  replicated = NamedSharding(mesh, P())
  multi_process = not _addressable(mesh)
  if feed is None:
    feed = "host" if multi_process else "device"
  if feed not in ("device", "host"):
    raise ValueError(f"unknown feed {feed!r}: use 'device' or 'host'.")
  if max_grad_norm is not None and not max_grad_norm > 0:
    raise ValueError(f"max_grad_norm must be positive or None, got {max_grad_norm}.")
  progs = _programs(task, pot, float(momentum), precision, mesh,
                    None if max_grad_norm is None else float(max_grad_norm))
  t0 = time.perf_counter()

  params = variables["params"]
  state = {k: v for k, v in variables.items() if k != "params"}
  opt_state = mirror_descent(pot, learning_rate=1.0, momentum=momentum).init(params)
  history = np.full(epochs, np.nan)
  # Across processes, arrays travel through the host: every process holds the same values, and
  # device_put builds the global array from each process's copy.
  put = lambda t: jax.device_put(jax.device_get(t) if multi_process else t, replicated)
  params, state, opt_state = put(params), put(state), put(opt_state)
  start = 0
  before = 0.0  # seconds spent on the restored epochs by the runs before this one
  manager = None
  if checkpoint_dir is not None:
    # (after the put: the restore target carries the sharding, which orbax needs across hosts)
    manager = _checkpoint_manager(checkpoint_dir)
    restored = _restore(manager, params, state, opt_state, history)
    if restored is not None:
      start, params, state, opt_state, history = restored
      before = _elapsed_at(checkpoint_dir, start)
  # Copies: the jitted epoch donates its inputs, the caller keeps its own arrays.
  params, state, opt_state = jax.tree.map(jnp.copy, (params, state, opt_state))
  if feed == "device":
    dev_data = put({k: np.asarray(v) if multi_process else jnp.asarray(v)
                    for k, v in data.items()})
  else:
    host_data = {k: np.asarray(v).astype(jax.dtypes.canonicalize_dtype(np.asarray(v).dtype),
                                         copy=False) for k, v in data.items()}
  key = jax.random.key(seed)

  n_full, rest = divmod(n, batch_size)
  if scan_steps is None:
    scan_steps = not (mesh.devices.flat[0].platform == "cpu" and
                      _has_convolution(task, params, state, data, batch_size))
  desc = desc or f"{pot.name} lr={learning_rate:.0e}"
  bar = _progress(range(start, epochs), progress, desc, initial=start, total=epochs)
  loop_start = last_line = time.perf_counter()
  for epoch in bar:
    lr = jnp.float32(cosine_epoch_lr(learning_rate, epoch, epochs))
    perm = epoch_permutation(seed, epoch, n).astype(np.int32)
    ekey = jax.random.fold_in(key, epoch)
    loss_sum = 0.0
    if feed == "host":
      for i in range(n_full + (rest > 0)):
        rows = perm[i * batch_size:(i + 1) * batch_size]
        params, state, opt_state, ls = progs.step(params, state, opt_state,
                                                  _feed(host_data, rows, mesh), 0, lr, ekey, i)
        loss_sum = loss_sum + ls
    elif n_full and not scan_steps:
      for i in range(n_full):
        params, state, opt_state, ls = progs.step(
            params, state, opt_state, dev_data, perm[i * batch_size:(i + 1) * batch_size], lr,
            ekey, i)
        loss_sum = loss_sum + ls
    elif n_full:
      params, state, opt_state, ls = progs.scan_epoch(
          params, state, opt_state, dev_data, perm[:n_full * batch_size].reshape(n_full, -1),
          lr, ekey)
      loss_sum = ls
    if rest and feed == "device":
      params, state, opt_state, ls = progs.step(params, state, opt_state, dev_data,
                                                perm[n_full * batch_size:], lr, ekey, n_full)
      loss_sum = loss_sum + ls
    sums = np.asarray(loss_sum)
    history[epoch] = float(sums[0]) / n
    if hasattr(bar, "set_postfix"):  # accuracy: running, in train mode, over the epoch
      bar.set_postfix(loss=f"{history[epoch]:.4g}", acc=f"{100 * sums[1] / n:.1f}%")
      if getattr(bar, "disable", False):  # no terminal (a log file): a line a minute with ETA
        now = time.perf_counter()
        if now - last_line >= PROGRESS_LINE_SECONDS and epoch + 1 < epochs:
          last_line = now
          eta = (now - loop_start) / (epoch + 1 - start) * (epochs - epoch - 1)
          print(f"{desc}: epoch {epoch + 1}/{epochs}, loss {history[epoch]:.4g}, "
                f"train {100 * sums[1] / n:.1f}%, ETA {eta:.0f} s", flush=True)
    if not np.isfinite(history[epoch]):
      history[epoch + 1:] = np.nan
      break  # diverged: the learning-rate search reads a NaN final loss
    if manager is not None and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs):
      _save(manager, epoch + 1, params, state, opt_state, history)
      _record_elapsed(checkpoint_dir, epoch + 1, before + time.perf_counter() - t0)
  if manager is not None:
    manager.wait_until_finished()
    manager.close()

  out = {"params": params, **state}
  acc = float("nan")
  if accuracy and np.isfinite(history[-1]):
    acc = evaluate(task, out, data, batch_size, devices).get("accuracy", float("nan"))
  out = jax.device_get(out)
  return FitResult(out, float(history[-1]), acc, float(learning_rate), int(epochs), history,
                   before + time.perf_counter() - t0)


def _addressable(mesh: Mesh) -> bool:
  """Whether every device of `mesh` belongs to this process."""
  return all(d.process_index == jax.process_index() for d in mesh.devices.flat)


def _feed(data: Mapping[str, np.ndarray], rows: np.ndarray, mesh: Mesh) -> dict:
  """The batch `data[rows]` as global arrays (1, len(rows), ...) split over the mesh's devices
  along the batch (replicated when it does not divide evenly): each process gathers and sends
  only the rows of its own devices, as `jax.make_array_from_process_local_data` would."""
  b = len(rows)
  sharding = NamedSharding(mesh, P(None, "data") if b % mesh.devices.size == 0 else P())

  def one(v):
    # index: this device's slices of (1, b, ...); only the batch axis is ever split.
    return jax.make_array_from_callback((1, b, *v.shape[1:]), sharding,
                                        lambda index: v[rows[index[1]]][None])

  return {k: one(v) for k, v in data.items()}


_CONV_CACHE: dict = {}


def _has_convolution(task, params, state, data, batch_size) -> bool:
  """Whether the task's loss on a batch convolves (traced once per task and batch shape)."""
  batch = {k: jax.ShapeDtypeStruct((min(batch_size, np.shape(v)[0]), *np.shape(v)[1:]),
                                   np.asarray(v).dtype) for k, v in data.items()}
  key = (task, tuple((k, b.shape, str(b.dtype)) for k, b in sorted(batch.items())))
  if key not in _CONV_CACHE:
    jaxpr = jax.make_jaxpr(lambda p, s, b: task.loss(p, s, b, jax.random.key(0), True))(
        params, state, batch)
    _CONV_CACHE[key] = "conv_general_dilated" in str(jaxpr)
  return _CONV_CACHE[key]


PROGRESS_LINE_SECONDS = 60.0  # without a terminal, fit prints a progress line this often


def _progress(it, enabled, desc, initial, total):
  if not enabled:
    return it
  from tqdm.auto import tqdm
  # disable=None: no bar when stderr is not a terminal (CI logs); cells still print a line each.
  return tqdm(it, desc=desc, initial=initial, total=total, leave=False, dynamic_ncols=True,
              disable=None)


def _quiet_orbax():
  # Orbax logs several INFO lines per save through absl; keep its warnings only.
  import logging
  absl_logger = logging.getLogger("absl")
  if not any(getattr(f, "_mdgeom", False) for f in absl_logger.filters):
    def keep(record):
      return record.levelno >= logging.WARNING or "/orbax/" not in record.pathname
    keep._mdgeom = True
    absl_logger.addFilter(keep)


def _checkpoint_manager(directory):
  import orbax.checkpoint as ocp
  _quiet_orbax()
  directory = os.path.abspath(directory)
  opts = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
  return ocp.CheckpointManager(directory, options=opts)


def _save(manager, epoch, params, state, opt_state, history):
  import orbax.checkpoint as ocp
  item = {"params": params, "state": state, "opt_state": opt_state,
          "history": np.asarray(history)}
  manager.save(epoch, args=ocp.args.StandardSave(item))


_ELAPSED_FILE = "seconds.json"  # beside orbax's step folders: {step: seconds of fit up to it}


def _record_elapsed(directory, step, seconds) -> None:
  """Notes how long fit had run when it saved `step`, so that a resumed run's FitResult.seconds
  counts the epochs before the kill (phase tables of resumed runs otherwise undercount)."""
  if jax.process_index() != 0:
    return
  path = os.path.join(os.path.abspath(directory), _ELAPSED_FILE)
  table = {k: v for k, v in _read_elapsed(path).items()
           if k.isdigit() and int(k) <= step}  # (a rerun from an earlier step drops later ones)
  table[str(step)] = float(seconds)
  results.write_json_atomic(path, table)


def _read_elapsed(path) -> dict:
  try:
    table = results.read_json(path)
  except (OSError, results.ResultFileError):  # none yet, or damaged by a kill: nothing recorded
    return {}
  return table if isinstance(table, dict) else {}


def _elapsed_at(directory, step) -> float:
  """Seconds fit had run when it saved `step` (0 for a checkpoint written before they were
  recorded: only this run's time is counted then)."""
  table = _read_elapsed(os.path.join(os.path.abspath(directory), _ELAPSED_FILE))
  v = table.get(str(step))
  return float(v) if isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 else 0.0


def _restore(manager, params, state, opt_state, history):
  import orbax.checkpoint as ocp
  step = manager.latest_step()
  if step is None:
    return None
  target = {"params": params, "state": state, "opt_state": opt_state,
            "history": np.asarray(history)}
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  item = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  return (int(step), item["params"], item["state"], item["opt_state"],
          np.asarray(item["history"]))


class SearchResult(NamedTuple):
  learning_rate: float
  epochs: int
  reached_target: bool
  final_loss: float
  train_accuracy: float
  table: list  # [{"epochs", "learning_rate", "final_loss", "train_accuracy", "loss_history"}]
  at_grid_edge: str | None = None  # "lower" / "upper": the choice is the grid's end value


def grid_edge(value: float, grid: Sequence[float]) -> str | None:
  """"lower" or "upper" when `value` is the smallest or largest of a grid of at least two
  distinct values (the search could not look beyond it), else None."""
  g = [float(v) for v in grid]
  if len(set(g)) < 2:
    return None
  if float(value) == max(g):
    return "upper"
  if float(value) == min(g):
    return "lower"
  return None


def paper_learning_rates(num: int = 5, low: float = 1e-5, high: float = 1e-1) -> np.ndarray:
  """The paper's finetuning grid: `num` values log-spaced in [low, high]."""
  return np.logspace(np.log10(low), np.log10(high), num)


def search_learning_rate(train_fn: Callable[[float, int], FitResult],
                         learning_rates: Sequence[float], epochs: int = 30,
                         extra_epochs: int = 30, max_extensions: int = 4,
                         target_accuracy: float = 100.0, log: Callable = print) -> SearchResult:
  """The paper's search: train with every learning rate for `epochs` epochs, keep the one with
  the lowest final training loss (NaN = diverged, skipped); if its training accuracy is below the
  target, add `extra_epochs` and search again, at most `max_extensions` times.

  `train_fn(learning_rate, epochs) -> FitResult` trains one candidate.
  """
  table = []
  for ext in range(max_extensions + 1):
    n_epochs = epochs + ext * extra_epochs
    res = [train_fn(float(lr), n_epochs) for lr in learning_rates]
    for lr, r in zip(learning_rates, res):
      history = getattr(r, "loss_history", None)
      table.append({"epochs": n_epochs, "learning_rate": float(lr), "final_loss": r.final_loss,
                    "train_accuracy": r.train_accuracy,
                    "loss_history": None if history is None else
                    [float(v) for v in np.asarray(history, float).ravel()]})
    losses = np.array([r.final_loss for r in res], float)
    if np.all(np.isnan(losses)):
      raise FloatingPointError(f"every learning rate diverged at {n_epochs} epochs: "
                               f"{list(map(float, learning_rates))}.")
    best = int(np.nanargmin(losses))
    acc = res[best].train_accuracy
    log(f"  {n_epochs} epochs: best lr {learning_rates[best]:.1e}, final loss "
        f"{losses[best]:.3g}, train accuracy {acc:.1f}%")
    if acc >= target_accuracy:
      return _searched(learning_rates, best, n_epochs, True, losses, acc, table)
  return _searched(learning_rates, best, n_epochs, False, losses, acc, table)


def _searched(learning_rates, best, n_epochs, reached, losses, acc, table) -> SearchResult:
  lr = float(learning_rates[best])
  edge = grid_edge(lr, learning_rates)
  if edge is not None:
    _log.warning("learning-rate search: the chosen rate %.1e is the %s end of the grid %s; the "
                 "best rate may lie beyond it (extend the grid)", lr, edge,
                 [float(v) for v in learning_rates])
  return SearchResult(lr, n_epochs, reached, float(losses[best]), acc, table, edge)


__all__ = ["FitResult", "SearchResult", "Task", "classification_task", "cosine_epoch_lr",
           "epoch_permutation", "evaluate", "fit", "grid_edge", "make_mesh", "paper_learning_rates",
           "search_learning_rate"]
