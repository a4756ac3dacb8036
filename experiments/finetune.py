"""Finetuning deep networks with mirror descent (paper section 4.3, Fig. 4A/B; docs/theory.md).

For each architecture x trained potential (negative entropy, 2-norm, 3-norm) x seed: take the
pretrained network, finetune it on N = D^0.5 images (D = number of conv and linear weights, one
random subset per seed) with stochastic mirror descent (momentum 0.9, no weight decay, cosine
schedule), with the learning rate and epoch count found by the paper's search, then analyse the
dual change of the conv and linear weights (readout, biases and batch norm excluded) under each
hypothesised potential.

    python -m experiments.finetune --config=configs/resnet.py --workdir=runs/finetune
    python -m experiments.finetune --config=configs/resnet.py:resnet18 \
        --config.data.data_dir=~/tensorflow_datasets --config.pretrain.checkpoint_dir=~/weights

The bare configs run on a CPU: a small network is pretrained in the same command on the
embedded MNIST digits (cached in workdir/pretrained/) and finetuned on a disjoint pool.

Writes workdir/results.json:
    {"config", "architectures", "trained_potentials", "hypothesized_potentials",
     "n_weights": {arch: D}, "n_data": {arch: N},
     "delta_cdf": {arch: {trained: {hypothesized: [per seed]}}}, "magnitude": {same},
     "ruled_out": {same, bool per seed}, "n_sign_flips": {same, int per seed},
     "delta_cdf_centered", "delta_cdf_units": {same as delta_cdf}: the centred statistic and the
     one after per-unit scales (mdgeom.scales),
     "per_layer": {arch: {trained: [per seed {leaf: {"n", "delta_cdf", "delta_cdf_centered",
     "delta_cdf_units", "kurtosis", "kurtosis_units"}}]}} (the trained potential's change),
     "train_accuracy": {arch: {trained: [per seed]}}, "seed_epochs": {same: epochs per seed,
     after the extensions}, "below_target": {arch: {trained: seeds below the target accuracy}},
     "phase_seconds": {arch: {"pretrain", "search", "finetune", "analysis"}} (training time
     counts the epochs of runs killed before a resume),
     "final_loss": {same}, "loss_history": {same, per seed the mean training loss of each
     epoch}, "learning_rate": {arch: {trained: value}},
     "learning_rate_at_grid_edge": {arch: {trained: "lower" | "upper" | null}},
     "epochs": {arch: {trained: value}}, "search": {arch: {trained: table}},
     "seeds_share_images": {arch: true when N is the whole pool, so seeds differ in batch order
     only},
     "pretrain": {arch: {...}}}
Weights: workdir/weights/<arch>/initial.msgpack (with initial.json: the fingerprint of those
variables) and <trained>/seed<k>.msgpack (flax serialization of the variables). Every search and
seed is a cell stored as it finishes (workdir/cells/) and skipped on rerun; a killed seed resumes
from its orbax checkpoint. Workers started with the same command on the same workdir share the
cells (mdgeom.results: each cell computed once, a seed waiting for its search, one worker
pretraining while the others wait for its network); --merge only writes results.json. Cells are keyed by the config and by the fingerprint of the pretrained
variables, so a workdir reused after the pretrained network changed recomputes them and rewrites
initial.msgpack.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time

import jax
import numpy as np
from absl import logging
from flax import serialization

from configs import finetune_default
from experiments import _cli
from mdgeom import analysis, models, potentials, results, train
from mdgeom.data import images
from mdgeom.models import torch_import

# Config entries that select which cells run; they are not part of a cell's fingerprint, so
# adding a seed or a potential keeps the finished cells.
_SELECTORS = ("architectures", "trained_potentials", "seeds", "progress")


def _validate(config, reference=None) -> None:
  """Everything the run needs before its first cell: the config's keys, types and values against
  `reference` (the defaults of configs/finetune_default.py, or the family's config), the
  architectures built with their model_kwargs, the potentials, and the files to import."""
  if reference is None:
    reference = finetune_default.get_config()
  _cli.check_config(config, reference, free=("model_kwargs",))
  known = set(models.names())
  for arch in config.architectures:
    if arch not in known:
      raise _cli.ConfigError(f"unknown architecture {arch!r} in config.architectures; known: "
                             f"{', '.join(sorted(known))}.")
    try:
      models.get(arch, num_classes=config.data.num_classes, **_model_kwargs(config))
    except TypeError as e:  # an argument the builder does not take
      raise _cli.ConfigError(f"config.model_kwargs {_model_kwargs(config)} do not fit {arch!r}: "
                             f"{e}") from None
  _cli.check_potentials(config, "trained_potentials", "hypothesized_potentials")
  if config.data.source not in ("mnist5k", "mnist_tfds", "imagenet", "image_folder"):
    raise _cli.ConfigError(f"unknown config.data.source {config.data.source!r}: use 'mnist5k', "
                           "'mnist_tfds', 'imagenet' or 'image_folder'.")
  if config.analysis.method not in ("grid", "exact"):
    raise _cli.ConfigError(f"config.analysis.method must be 'grid' or 'exact', got "
                           f"{config.analysis.method!r}.")
  if not len(config.seeds):
    raise _cli.ConfigError("config.seeds is empty.")
  if config.search.seed in list(config.seeds):
    raise _cli.ConfigError(f"config.search.seed {config.search.seed} is also a finetuning seed: "
                           "the learning rate is chosen on a held-out subset.")
  for i, lr in enumerate(config.search.learning_rates):
    if not lr > 0:
      raise _cli.ConfigError(f"config.search.learning_rates[{i}] must be > 0, got {lr!r}.")
  for key in ("search.epochs", "train.batch_size", "pretrain.epochs", "pretrain.batch_size",
              "data.num_classes"):
    group, name = key.split(".")
    if config[group][name] < 1:
      raise _cli.ConfigError(f"config.{key} must be at least 1, got {config[group][name]!r}.")
  for key in ("search.extra_epochs", "search.max_extensions", "data.n_data"):
    group, name = key.split(".")
    if config[group][name] < 0:
      raise _cli.ConfigError(f"config.{key} must be >= 0, got {config[group][name]!r}.")
  _cli.finite_positive(config, "pretrain.learning_rate")
  if config.train.precision not in ("float32", "bfloat16"):
    raise _cli.ConfigError(f"config.train.precision must be 'float32' or 'bfloat16', got "
                           f"{config.train.precision!r}.")
  if config.data.source in ("imagenet", "image_folder"):
    if not config.data.data_dir or not os.path.isdir(os.path.expanduser(config.data.data_dir)):
      raise FileNotFoundError(f"config.data.data_dir = {config.data.data_dir!r} is not a folder: "
                              f"point it at the {config.data.source} data.")
    for arch in config.architectures:  # imported, never downloaded: every file before any work
      path = _checkpoint_path(config, arch)
      if not os.path.exists(path):
        raise FileNotFoundError(
            f"no pretrained weights for {arch} at {path}: put them there (e.g. saved from "
            "torchvision with torch.save(model.state_dict(), path)) or set "
            "--config.pretrain.checkpoint_dir / checkpoint_pattern.")


def _model_kwargs(config) -> dict:
  kw = config.get("model_kwargs") or {}
  return dict(kw.to_dict() if hasattr(kw, "to_dict") else kw)


def _checkpoint_path(config, arch: str) -> str:
  pc = config.pretrain
  return os.path.expanduser(os.path.join(pc.checkpoint_dir, pc.checkpoint_pattern.format(
      arch=arch)))


def variables_fingerprint(variables) -> str:
  """A hash of the variables' values, structure and dtypes (their flax serialization)."""
  return hashlib.sha256(serialization.to_bytes(jax.device_get(variables))).hexdigest()[:16]


def _save_initial(workdir: str, arch: str, variables, fp: str) -> None:
  """weights/<arch>/initial.msgpack, rewritten whenever the pretrained variables changed (their
  fingerprint is kept beside it, in initial.json): the saved initial weights are always the ones
  the cells were finetuned from."""
  path = os.path.join(workdir, "weights", arch, "initial.msgpack")
  meta = os.path.join(workdir, "weights", arch, "initial.json")
  if os.path.exists(path) and os.path.exists(meta):
    try:
      if results.read_json(meta).get("fingerprint") == fp:
        return
    except (results.ResultFileError, OSError, AttributeError):
      pass  # unreadable: rewrite both
  save_variables(path, variables)
  results.write_json_atomic(meta, {"fingerprint": fp})


def save_variables(path: str, variables) -> None:
  results.write_bytes_atomic(path, serialization.to_bytes(jax.device_get(variables)))


def load_variables(path: str, target):
  """Variables saved by `save_variables`; ResultFileError naming the file when it cannot be read
  into `target`'s structure (truncated, or from another network)."""
  with open(path, "rb") as f:
    data = f.read()
  try:
    return serialization.from_bytes(target, data)
  except Exception as e:  # msgpack and flax raise several types for damaged or foreign files
    raise results.ResultFileError(f"{path} cannot be read as the variables of this network "
                                  f"({type(e).__name__}: {e}); delete it to recompute it.") from e


# ------------------------------------------------------------------------------------------
# Data and pretrained networks
# ------------------------------------------------------------------------------------------

class _Source:
  """Where finetuning images come from: `pool_size` images, `take(idx) -> {"image", "label"}`."""

  def __init__(self, config, model):
    d = config.data
    if d.source in ("mnist5k", "mnist_tfds"):
      mean, std = (np.float32(v) for v in d.mnist_mean_std)
      if d.source == "mnist5k":
        x, y = images.mnist5k(d.get("path"))
        pre, pool = images.split_pretrain_finetune(y, d.pool_per_class, d.split_seed)
        x_pre, y_pre, x_pool, y_pool = x[pre], y[pre], x[pool], y[pool]
      else:  # full MNIST: pretrain on the training set, finetune on the test set
        x_pre, y_pre = images.mnist_tfds(d.data_dir, "train")
        x_pool, y_pool = images.mnist_tfds(d.data_dir, "test")
      self.pretrain = {"image": (x_pre - mean) / std, "label": y_pre}
      self._x, self._y = (x_pool - mean) / std, y_pool
      self.pool_size = len(y_pool)
      self.take = lambda idx: {"image": self._x[idx], "label": self._y[idx]}
      self.all = lambda: {"image": self._x, "label": self._y}
    else:
      if d.source == "imagenet":
        ds = images.imagenet_validation(d.data_dir, split=d.split, image_size=d.image_size)
      else:
        ds = images.image_folder(d.data_dir, image_size=d.image_size)
      self.pretrain = None
      self.pool_size = len(ds)
      self.take = lambda idx: dict(zip(("image", "label"), ds.take(np.asarray(idx))))
      self.all = None


def classification(model, config, stage: str) -> train.Task:
  """The task of this experiment at each stage ("pretrain", "finetune"): cross-entropy."""
  return train.classification_task(model)


def _pretrained(config, model, source, workdir, task, task_id: str = "classification"):
  """Initial variables: pretrained in this command on the MNIST pretraining set (cached), or
  imported from the user's checkpoint file.

  The cache is keyed by everything that determines the pretrained network: the architecture and
  its arguments (num_classes, model_kwargs) and variable shapes, the pretraining and data
  settings, the precision, and the task (`task_id`, and the augmentations of a SimSiam config)."""
  pc = config.pretrain
  folder = os.path.join(workdir, "pretrained")
  variables = model.init(jax.random.key(pc.seed))
  if source.pretrain is None:
    path = _checkpoint_path(config, model.name)
    hint = (f"Put the ImageNet weights of {model.name} ({model.reference}) there, e.g. saved "
            "from torchvision with torch.save(model.state_dict(), path), or set "
            "--config.pretrain.checkpoint_dir / checkpoint_pattern.")
    variables = torch_import.load_pretrained(model, variables, path, how_to_get=hint)
    return variables, {"checkpoint": path}
  fp = results.fingerprint({
      "arch": model.name, "num_classes": model.num_classes,
      "model_kwargs": _model_kwargs(config),
      "shapes": jax.tree.map(lambda x: [list(np.shape(x)), str(np.asarray(x).dtype)], variables),
      "pretrain": results.config_dict(pc), "data": results.config_dict(config.data),
      "precision": config.train.precision, "task": task_id,
      "augment": results.config_dict(config.augment) if "augment" in config else None})
  vpath, jpath = (os.path.join(folder, f"{model.name}.{e}") for e in ("msgpack", "json"))
  info = {}
  if os.path.exists(vpath) and os.path.exists(jpath):
    try:
      info = results.read_json(jpath)
    except results.ResultFileError as e:  # e.g. truncated by a killed run: pretrain again
      logging.warning("%s", e)
  hit = isinstance(info, dict) and info.get("fingerprint") == fp
  if results.agreed(hit):  # (process 0 decides for every process of a multi-host program)
    info = info if hit else results.read_json(jpath)
    try:
      loaded = load_variables(vpath, variables)
      logging.info("%s: pretrained network loaded from %s", model.name, vpath)
      return loaded, info["value"]
    except results.ResultFileError as e:  # e.g. truncated by a killed run: pretrain again
      logging.warning("%s", e)
  if results.sweep_settings()["merge_only"]:
    raise RuntimeError(f"{model.name}: no pretrained network in {folder}, so no finished cells "
                       "to merge (--merge computes nothing).")
  r = train.fit(task, variables, source.pretrain, potential="2-norm",
                learning_rate=pc.learning_rate, epochs=pc.epochs, batch_size=pc.batch_size,
                momentum=pc.momentum, seed=pc.seed, precision=config.train.precision,
                progress=config.progress, desc=f"pretrain {model.name}",
                max_grad_norm=pc.get("max_grad_norm"),
                checkpoint_dir=os.path.join(folder, f"{model.name}.ckpt"))
  t0 = time.time()
  pool = train.evaluate(task, r.variables, source.all())
  pool_acc = pool.get("accuracy", float("nan"))
  info = {"train_accuracy": r.train_accuracy, "pool_accuracy": pool_acc,
          "pool_loss": pool["loss"], "final_loss": r.final_loss, "epochs": pc.epochs,
          "seconds": r.seconds + time.time() - t0}  # (r.seconds: with epochs before a kill)
  acc = ("" if np.isnan(pool_acc) else
         f", {r.train_accuracy:.1f}% train, {pool_acc:.1f}% on the held-out pool")
  print(f"{model.name}: pretrained {pc.epochs} epochs on {len(source.pretrain['label'])} "
        f"images, final loss {r.final_loss:.4g}{acc} ({info['seconds']:.0f} s)", flush=True)
  if pool_acc < pc.min_pool_accuracy:  # (NaN for tasks without accuracy: no check)
    raise RuntimeError(
        f"{model.name} pretrained to only {pool_acc:.1f}% on the held-out pool (< "
        f"pretrain.min_pool_accuracy = {pc.min_pool_accuracy}); finetuning a weak network says "
        "little about the geometry. Raise pretrain.epochs or change pretrain.learning_rate.")
  save_variables(vpath, r.variables)
  results.write_json_atomic(jpath, {"fingerprint": fp, "value": info})
  shutil.rmtree(os.path.join(folder, f"{model.name}.ckpt"), ignore_errors=True)
  return r.variables, info


# ------------------------------------------------------------------------------------------
# Cells
# ------------------------------------------------------------------------------------------

def _subset(config, source, n, seed):
  return images.sample_subset(source.pool_size, n, seed)


def _fit(config, task, variables, data, trained, lr, epochs, seed, ckpt=None, desc="",
         checkpoint_every=None):
  t = config.train
  return train.fit(task, variables, data, potential=trained, learning_rate=lr, epochs=epochs,
                   batch_size=t.batch_size, momentum=t.momentum, seed=seed,
                   precision=t.precision, checkpoint_dir=ckpt,
                   checkpoint_every=checkpoint_every or t.checkpoint_every,
                   progress=config.progress, desc=desc)


def search_cell(config, task, variables, source, n, arch, trained, ckpt=None) -> dict:
  """The paper's learning-rate search with epoch extension, on the held-out search subset.

  `ckpt`: a folder for the candidates' final orbax checkpoints, so a killed search resumes with
  the candidate it was training (finished ones restore their checkpoint instead of training
  again); removed when the search is done."""
  s = config.search
  data = source.take(_subset(config, source, n, s.seed))

  fit_seconds = []  # each candidate's training time, counting a killed run's (FitResult.seconds)

  def one(lr, epochs):
    r = _fit(config, task, variables, data, trained, lr, epochs, s.seed,
             ckpt=None if ckpt is None else os.path.join(ckpt, f"lr{lr:.6g}_x{epochs}"),
             checkpoint_every=epochs,
             desc=f"{arch} {potentials.short_label(trained)} search lr={lr:.0e} x{epochs}")
    fit_seconds.append(r.seconds)
    return r

  print(f"{arch} / {trained}: learning-rate search on {n} images", flush=True)
  r = train.search_learning_rate(one, list(s.learning_rates), s.epochs, s.extra_epochs,
                                 s.max_extensions, s.target_accuracy)
  if ckpt is not None:
    shutil.rmtree(ckpt, ignore_errors=True)
  # (with "at_grid_edge" and each candidate's "loss_history"); seconds: the candidates' training
  # time, whether in this run or in runs killed before it
  return {**r._asdict(), "seconds": float(sum(fit_seconds))}


def seed_cell(config, model, task, variables, source, n, arch, trained, lr, epochs, seed,
              workdir) -> dict:
  """Finetunes on seed's subset, saves the final weights, analyses the dual change."""
  idx = _subset(config, source, n, seed)
  data = source.take(idx)
  label = potentials.short_label(trained)
  ckpt = os.path.join(workdir, "checkpoints", arch, trained, f"seed{seed}")
  s = config.search
  # The paper's protocol for every run: extend by extra_epochs (from the pretrained network, with
  # the longer cosine schedule) until the training accuracy reaches the target, up to the
  # protocol's longest run (epochs + max_extensions x extra_epochs, as the search: a search that
  # ended there leaves no extension); a seed that still falls short is reported and counted.
  longest = s.epochs + s.max_extensions * s.extra_epochs if s.extend_seeds else epochs
  lengths = (list(range(epochs, longest + 1, s.extra_epochs))
             if s.extra_epochs and longest > epochs else [epochs])
  train_seconds = 0.0  # counting the epochs of runs killed before this one (FitResult.seconds)
  for i, n_epochs in enumerate(lengths):
    r = _fit(config, task, variables, data, trained, lr, n_epochs, seed,
             ckpt=os.path.join(ckpt, f"x{n_epochs}"), desc=f"{arch} {label} seed {seed}")
    train_seconds += r.seconds
    if not (r.train_accuracy < s.target_accuracy):  # (NaN: no accuracy, e.g. SimSiam)
      break
    if i + 1 < len(lengths):
      print(f"{arch} / {trained} / seed {seed}: {r.train_accuracy:.1f}% train after {n_epochs} "
            f"epochs, below {s.target_accuracy:g}%: {s.extra_epochs} more", flush=True)
  t1 = time.time()
  save_variables(os.path.join(workdir, "weights", arch, trained, f"seed{seed}.msgpack"),
                 r.variables)
  ranking = analysis.rank_potentials(
      variables["params"], r.variables["params"], list(config.hypothesized_potentials),
      where=model.analysed, method=config.analysis.method,
      exclude_unchanged=config.analysis.exclude_unchanged)
  by_name = {c.name: c for c in ranking.results}
  hyp = [potentials.get(h).name for h in config.hypothesized_potentials]
  shutil.rmtree(ckpt, ignore_errors=True)
  cell = {"delta_cdf": {h: by_name[h].delta_cdf for h in hyp},
          "magnitude": {h: by_name[h].magnitude for h in hyp},
          "ruled_out": {h: by_name[h].ruled_out for h in hyp},
          "reason": {h: by_name[h].reason for h in hyp},
          "n_sign_flips": {h: by_name[h].n_sign_flips for h in hyp},
          "train_accuracy": r.train_accuracy, "final_loss": r.final_loss,
          "loss_history": r.loss_history,  # mean training loss per epoch
          "n_weights": ranking.n_weights, "n_unchanged": ranking.n_unchanged,
          "epochs": int(r.epochs), "reached_target": (None if np.isnan(r.train_accuracy) else
                                                     bool(r.train_accuracy >= s.target_accuracy)),
          "subset": idx}
  cell.update(extra_analysis(config, model, variables["params"], r.variables["params"], trained))
  cell["train_seconds"] = train_seconds
  cell["analysis_seconds"] = time.time() - t1
  cell["seconds"] = train_seconds + cell["analysis_seconds"]
  best = ranking.best.name
  # SimSiam has no accuracy: print what is measured there, the final loss
  measured = (f"{r.train_accuracy:.1f}% train" if np.isfinite(r.train_accuracy) else
              f"final loss {r.final_loss:.4g}")
  print(f"{arch} / {trained} / seed {seed}: {measured}, best "
        f"{potentials.short_label(best)} (Delta-CDF " +
        ", ".join(f"{potentials.short_label(h)} {by_name[h].delta_cdf:.3f}" for h in hyp) +
        f") [{cell['seconds']:.0f} s]", flush=True)
  return cell


EXTRA_KEYS = ("delta_cdf_centered", "delta_cdf_units", "per_layer")
# Bumped when the extra analyses change (2: unit scales fitted to mean absolute values); cells
# with another version get them recomputed from their saved weights.
ANALYSIS_VERSION = 2


def extra_analysis(config, model, params0, params1, trained) -> dict:
  """Beside the paper's statistic: the centred one (robust to a net drift of the change), the one
  after per-unit scales (rank-1 a_i b_j per layer, mdgeom.scales), and per layer the Delta-CDF and
  kurtosis of the trained potential's change."""
  hyp = [potentials.get(h).name for h in config.hypothesized_potentials]
  kw = dict(where=model.analysed, method=config.analysis.method,
            exclude_unchanged=config.analysis.exclude_unchanged)
  out = {}
  for key, opts in (("delta_cdf_centered", {"center": True}),
                    ("delta_cdf_units", {"scales": "units"})):
    r = analysis.rank_potentials(params0, params1, hyp, **kw, **opts)
    by_name = {c.name: c.delta_cdf for c in r.results}
    out[key] = {h: by_name[h] for h in hyp}
  out["per_layer"] = analysis.leaf_statistics(
      trained, params0, params1, where=model.analysed,
      exclude_unchanged=config.analysis.exclude_unchanged)
  out["analysis_version"] = ANALYSIS_VERSION
  return out


def _complete(config, model, store, key, cell, variables, workdir, arch, trained, seed) -> dict:
  """Adds the analyses of EXTRA_KEYS to a cell computed before they existed, from its saved
  final weights (no retraining)."""
  if all(k in cell for k in EXTRA_KEYS) and cell.get("analysis_version") == ANALYSIS_VERSION:
    return cell
  path = os.path.join(workdir, "weights", arch, trained, f"seed{seed}.msgpack")
  final = load_variables(path, variables)
  cell = {**cell, **results.to_jsonable(extra_analysis(config, model, variables["params"],
                                                       final["params"], trained))}
  store.put(key, cell)
  return cell


def run(config, workdir: str, task_fn=classification, reference=None) -> dict:
  """Runs every (architecture, trained potential, seed) cell, skipping finished ones.

  `task_fn(model, config, stage) -> train.Task` gives the loss of pretraining and finetuning
  (cross-entropy here; the SimSiam experiment passes its own). `reference`: the config whose keys
  and types `config` is checked against (default: configs/finetune_default.py's)."""
  _validate(config, reference)
  source = _Source(config, None)  # (reads the data now: a missing file fails before any work)
  archs = list(config.architectures)
  sizes = {}
  for arch in archs:  # N for every architecture from the variables' shapes, before any work
    model = models.get(arch, num_classes=config.data.num_classes, **_model_kwargs(config))
    d = model.count_analysed(jax.eval_shape(model.init, jax.random.key(0)))
    n = images.num_finetune_images(d) if config.data.n_data <= 0 else int(config.data.n_data)
    if n > source.pool_size:
      raise _cli.ConfigError(f"{arch}: N = {n} finetuning images (D = {d}) but the pool has only "
                             f"{source.pool_size}; use a smaller network, a larger pool or "
                             "config.data.n_data.")
    sizes[arch] = d, n
  seeds = [int(s) for s in config.seeds]
  # N = the whole pool: every seed's subset is the same images, so the seeds differ only in batch
  # order, and the implicit bias of mirror descent makes their solutions nearly equal.
  shared = {arch: sizes[arch][1] == source.pool_size and len(seeds) > 1 for arch in archs}
  for arch in archs:
    if shared[arch]:
      logging.warning("%s: N = %d finetuning images is the whole pool, so the %d seeds finetune "
                      "on the same images and differ only in batch order: their spread is not "
                      "a sampling spread (a larger pool: config.data.pool_per_class, or the "
                      "full data set)", arch, sizes[arch][1], len(seeds))
  results.prepare_workdir(workdir)
  cfg = results.config_dict(config)
  base = {**{k: v for k, v in cfg.items() if k not in _SELECTORS},
          "potential_code": results.potential_fingerprints(
              list(config.hypothesized_potentials) + list(config.trained_potentials))}
  task_id = f"{getattr(task_fn, '__module__', '')}.{getattr(task_fn, '__qualname__', task_fn)}"
  trained_names = [potentials.get(p).name for p in config.trained_potentials]
  hyp = [potentials.get(h).name for h in config.hypothesized_potentials]
  out = {"config": cfg, "architectures": archs, "trained_potentials": trained_names,
         "hypothesized_potentials": hyp, "n_weights": {}, "n_data": {}, "delta_cdf": {},
         "magnitude": {}, "ruled_out": {}, "n_sign_flips": {}, "train_accuracy": {},
         "final_loss": {}, "loss_history": {}, "learning_rate": {},
         "learning_rate_at_grid_edge": {}, "epochs": {}, "search": {}, "pretrain": {},
         "delta_cdf_centered": {}, "delta_cdf_units": {}, "per_layer": {},
         "seed_epochs": {}, "below_target": {}, "phase_seconds": {},
         "seeds_share_images": shared}
  start = time.time()
  prepared, cells = {}, []
  for arch in archs:
    model = models.get(arch, num_classes=config.data.num_classes, **_model_kwargs(config))
    task = task_fn(model, config, "finetune")
    pretrain = lambda: _pretrained(config, model, source, workdir,
                                   task_fn(model, config, "pretrain"), task_id)
    if source.pretrain is None:  # weights imported from a file: every worker reads its own
      variables, info = pretrain()
    else:  # one worker of a sweep pretrains, the others wait and load its network
      with results.exclusive(os.path.join(workdir, "pretrained"), arch):
        variables, info = pretrain()
    d, n = sizes[arch]
    init_fp = variables_fingerprint(variables)
    _save_initial(workdir, arch, variables, init_fp)
    # The cells of an architecture belong to its pretrained variables: another network (a
    # changed checkpoint file or model) recomputes them instead of mixing two networks.
    store = results.CellStore(workdir, {**base, "initial_variables": init_fp})
    prepared[arch] = model, variables, info, store
    for trained in trained_names:
      search_key = f"{arch}__{trained}__search"
      cells.append(store.cell(
          search_key, lambda task=task, variables=variables, n=n, arch=arch, trained=trained,
          store=store: search_cell(config, task, variables, source, n, arch, trained,
                                   ckpt=os.path.join(workdir, "checkpoints", arch, trained,
                                                     f"search_{store.fingerprint[:12]}"))))
      # A seed waits for its search: a worker of a sweep takes other cells meanwhile.
      cells += [store.cell(
          f"{arch}__{trained}__seed{seed}",
          lambda s, model=model, task=task, variables=variables, n=n, arch=arch,
          trained=trained, seed=seed: seed_cell(
              config, model, task, variables, source, n, arch, trained, s["learning_rate"],
              s["epochs"], seed, workdir), needs=[search_key]) for seed in seeds]
  # Every cell of every architecture, each computed once by whichever worker claims it.
  values = results.run_cells(cells)
  for arch in archs:
    model, variables, info, store = prepared[arch]
    out["pretrain"][arch] = info
    out["n_weights"][arch], out["n_data"][arch] = sizes[arch]
    for key in ("delta_cdf", "magnitude", "ruled_out", "n_sign_flips", "delta_cdf_centered",
                "delta_cdf_units"):
      out[key][arch] = {t: {h: [] for h in hyp} for t in trained_names}
    for key in ("train_accuracy", "final_loss", "loss_history", "search", "per_layer",
                "seed_epochs"):
      out[key][arch] = {t: [] for t in trained_names}
    out["below_target"][arch] = {}
    # where the time went (cells done by an earlier run count their time as it was then)
    phases = out["phase_seconds"][arch] = {"pretrain": float(info.get("seconds", 0.0)),
                                           "search": 0.0, "finetune": 0.0, "analysis": 0.0}
    for trained in trained_names:
      s = values[f"{arch}__{trained}__search"]
      searched_before = f"{arch}__{trained}__search" not in store.computed
      phases["search"] += float(s.get("seconds") or 0.0)
      out["learning_rate"].setdefault(arch, {})[trained] = s["learning_rate"]
      out["epochs"].setdefault(arch, {})[trained] = s["epochs"]
      out["search"][arch][trained] = s
      edge = train.grid_edge(s["learning_rate"], config.search.learning_rates)
      out["learning_rate_at_grid_edge"].setdefault(arch, {})[trained] = edge
      if edge and searched_before:  # (a fresh search has just said so itself)
        logging.warning("%s / %s: the chosen learning rate %.0e is the %s end of the search grid "
                        "%s; the best rate may lie beyond it (config.search.learning_rates)",
                        arch, trained, s["learning_rate"], edge,
                        [float(v) for v in config.search.learning_rates])
      if not s["reached_target"] and s["train_accuracy"] is not None:  # (None: no accuracy)
        logging.warning("%s / %s: the search did not reach %.0f%% training accuracy (%.1f%% "
                        "after %d epochs)", arch, trained, config.search.target_accuracy,
                        s["train_accuracy"], s["epochs"])
      for seed in seeds:
        key = f"{arch}__{trained}__seed{seed}"
        c = values[key]
        if key not in store.computed:
          logging.info("%s / %s / seed %d: already done, skipped", arch, trained, seed)
          c = _complete(config, model, store, key, c, variables, workdir, arch, trained, seed)
        for h in hyp:
          out["delta_cdf"][arch][trained][h].append(c["delta_cdf"][h])
          out["delta_cdf_centered"][arch][trained][h].append(c["delta_cdf_centered"][h])
          out["delta_cdf_units"][arch][trained][h].append(c["delta_cdf_units"][h])
          out["magnitude"][arch][trained][h].append(c["magnitude"][h])
          out["ruled_out"][arch][trained][h].append(c["ruled_out"][h])
          out["n_sign_flips"][arch][trained][h].append(c.get("n_sign_flips", {}).get(h))
        out["per_layer"][arch][trained].append(c["per_layer"])
        out["seed_epochs"][arch][trained].append(c.get("epochs"))
        phases["finetune"] += float(c.get("train_seconds") or 0.0)
        phases["analysis"] += float(c.get("analysis_seconds") or 0.0)
        out["train_accuracy"][arch][trained].append(c["train_accuracy"])
        out["final_loss"][arch][trained].append(c["final_loss"])
        out["loss_history"][arch][trained].append(c.get("loss_history"))  # (None: older cell)
      below = [sd for sd, c in zip(seeds, out["train_accuracy"][arch][trained])
               if c is not None and np.isfinite(c) and c < config.search.target_accuracy]
      out["below_target"][arch][trained] = len(below)
      if below:
        logging.warning("%s / %s: %d of %d seeds ended below %.0f%% training accuracy (seeds %s); "
                        "they are kept and counted in results.json (below_target)", arch, trained,
                        len(below), len(seeds), config.search.target_accuracy, below)
  out["wall_time_s"] = time.time() - start
  results.write_json_atomic(os.path.join(workdir, "results.json"), out)
  return results.to_jsonable(out)


def summary(res: dict) -> str:
  """Per architecture: trained potential x hypothesised potential -> mean Delta-CDF over seeds,
  the paper's statistic and the one after per-unit scales (* marks the lowest in each row; x a
  candidate ruled out by sign flips in some seed)."""
  lines = []
  for key, what in (("delta_cdf", "the paper's statistic"),
                    ("delta_cdf_units", "after per-unit scales")):
    if key in res:
      lines += _summary_table(res, key, what)
  return "\n".join(lines)


def _summary_table(res: dict, key: str, what: str) -> list[str]:
  lines = []
  hyp = res["hypothesized_potentials"]
  for arch in res["architectures"]:
    n_seeds = len(res["train_accuracy"][arch][res["trained_potentials"][0]])
    lines.append(f"{arch}: D = {res['n_weights'][arch]} weights, N = {res['n_data'][arch]} "
                 f"images, {n_seeds} seeds. Delta-CDF, {what}, mean and SD over seeds "
                 "[trained x hypothesised]")
    if res.get("seeds_share_images", {}).get(arch):
      lines.append(f"  (N is the whole pool: every seed finetunes on the same {res['n_data'][arch]}"
                   " images, in another batch order; the SD is not a sampling spread)")
    lines.append(f"{'trained':<9}" + "".join(f"{potentials.short_label(h):>14}" for h in hyp) +
                 f"{'lr':>9}{'epochs':>8}{'train acc':>11}{'<target':>9}")
    for t in res["trained_potentials"]:
      vals = [np.array([np.nan if v is None else v for v in res[key][arch][t][h]], float)
              for h in hyp]
      means = [float(np.mean(v)) for v in vals]
      best = int(np.nanargmin(means))
      cells = []
      for i, (h, v) in enumerate(zip(hyp, vals)):
        mark = "*" if i == best else ("x" if any(res["ruled_out"][arch][t][h]) else " ")
        sd = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
        cells.append(f"{np.mean(v):8.3f}±{sd:.3f}{mark}")
      acc = np.mean([np.nan if v is None else v for v in res["train_accuracy"][arch][t]])
      ep = [e for e in res.get("seed_epochs", {}).get(arch, {}).get(t, []) if e is not None]
      epochs = (f"{min(ep)}-{max(ep)}" if ep and min(ep) != max(ep) else
                str(ep[0] if ep else res["epochs"][arch][t]))
      below = res.get("below_target", {}).get(arch, {}).get(t)
      lines.append(f"{potentials.short_label(t):<9}" + "".join(cells) +
                   f"{res['learning_rate'][arch][t]:9.0e}{epochs:>8}{acc:10.1f}%"
                   f"{'' if below is None else f'{below}/{n_seeds}':>9}")
    ph = res.get("phase_seconds", {}).get(arch)
    if ph and key == "delta_cdf":
      lines.append("  seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in ph.items()))
  return lines


if __name__ == "__main__":
  _cli.main(run, summary, "configs/resnet.py", "runs/finetune")
