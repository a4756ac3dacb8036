"""The command line shared by the experiments: --config (an ml_collections config file, with
`:variant` and `--config.key=value` overrides), --workdir and --verbose; the flags of sweeps
shared by several workers (--merge, --claim_timeout; mdgeom.results) and of multi-host JAX
(--distributed, --coordinator_address, --num_processes, --process_id, --local_device_ids:
`jax.distributed.initialize`); main() only parses, sets these up and calls run(). And `check_config`, which every run() calls first: a config's keys, types and values
against the defaults of its config file, so a typo or a NaN stops the run before any work.

Flags are defined when a script runs, not when its module is imported, so tests and notebooks
can import several experiments in one process.

Expected failures (a bad config, a missing file, a run that cannot go on) print one line that
names the problem and exit with status 2 (the command line) or 1 (the run); `--verbose` shows
the traceback instead.
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
import sys
from collections.abc import Callable, Iterable, Mapping

import numpy as np
from absl import app, flags

_CONFIG_HELP = ("Experiment config file: a Python file with get_config(); `file.py:variant` picks "
                "a named variant. Override any knob with --config.key=value (e.g. "
                "--config.num_seeds=5); unknown keys are refused.")
_WORKDIR_HELP = "Folder of results.json, the finished cells and saved weights (created if needed)."
_VERBOSE_HELP = "Show the full traceback of an error instead of one line."
_MERGE_HELP = ("Compute nothing: merge the finished cells of --workdir into results.json (an error "
               "names the cells that are not done).")
_WAIT_HELP = ("When every cell left is held by another worker of the sweep, wait for them (taking "
              "over the cells of workers that die, then writing results.json); --nowait exits "
              "instead (status 0), leaving them to their workers.")
_CLAIM_HELP = ("Seconds without a refresh after which another worker's claim on a cell counts as "
               "abandoned and the cell is taken over (a claim of a process that is gone, on the "
               "same host, expires at once). Claims are refreshed every min(60, timeout/4) s.")
_DISTRIBUTED_HELP = ("Join a multi-host JAX program (jax.distributed.initialize): the processes "
                     "train every run together, data parallel over all their devices. Without "
                     "--coordinator_address etc., the cluster is detected from the environment "
                     "(SLURM srun, Open MPI, TPU pods).")
_COORDINATOR_HELP = "host:port of process 0 (implies --distributed)."
_NUM_PROCESSES_HELP = "Number of processes of the multi-host program (with --coordinator_address)."
_PROCESS_ID_HELP = "This process's index, 0 .. num_processes - 1 (with --coordinator_address)."
_LOCAL_DEVICES_HELP = "Local device ids this process uses, e.g. 0 (one GPU per process)."
_SWEEP_FLAGS = ("merge", "wait", "claim_timeout")
_DISTRIBUTED_FLAGS = ("distributed", "coordinator_address", "num_processes", "process_id",
                      "local_device_ids")


class ConfigError(ValueError):
  """A config that cannot run: an unknown key, a value of the wrong type, an empty list, a
  non-finite number or a value out of range. The message names the key (`config.a.b`) and the
  value."""


# ------------------------------------------------------------------------------------------
# Config checks shared by the experiments' run()
# ------------------------------------------------------------------------------------------

def _as_dict(config) -> dict:
  if hasattr(config, "to_dict") and callable(config.to_dict):
    return config.to_dict()
  if isinstance(config, Mapping):
    return dict(config)
  raise ConfigError(f"the config must be an ml_collections.ConfigDict or a dict, got "
                    f"{type(config).__name__}.")


def _leaf_paths(tree: Mapping, prefix: str = "") -> list[str]:
  out = []
  for k, v in tree.items():
    path = f"{prefix}{k}"
    out.append(path)
    if isinstance(v, Mapping):
      out += _leaf_paths(v, path + ".")
  return out


def unknown_key_message(path: str, reference: Mapping, where: str = "") -> str:
  """'unknown config key ...; did you mean ...?', with difflib's close matches among the keys at
  the same level and among all dotted paths (a nested key given at the top level, or the
  reverse)."""
  parent, _, leaf = path.rpartition(".")
  level = reference
  for part in parent.split(".") if parent else ():
    level = level.get(part, {}) if isinstance(level, Mapping) else {}
  siblings = list(level) if isinstance(level, Mapping) else []
  matches = [f"{parent}.{m}" if parent else m
             for m in difflib.get_close_matches(leaf, siblings, n=3, cutoff=0.6)]
  for m in difflib.get_close_matches(path, _leaf_paths(reference), n=3, cutoff=0.6):
    if m not in matches:
      matches.append(m)
  msg = f"unknown config key {path!r}{where}"
  if matches:
    return msg + "; did you mean " + " or ".join(repr(m) for m in matches[:3]) + "?"
  return msg + "; known keys here: " + ", ".join(sorted(siblings)) + "."


def _is_real(x) -> bool:
  return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_value(path: str, value, ref, allow_empty: Iterable[str]) -> None:
  if ref is None:
    # None in the defaults: optional, any type ("no clipping", "the embedded file").
    if _is_real(value) and not math.isfinite(value):
      raise ConfigError(f"config.{path} = {value!r} is not finite.")
    return
  if value is None:
    raise ConfigError(f"config.{path} must be set (the default is {ref!r}), got None.")
  if isinstance(ref, bool):
    if not isinstance(value, (bool, np.bool_)):
      raise ConfigError(f"config.{path} must be True or False, got {value!r}.")
    return
  if isinstance(ref, numbers.Integral):
    if not _is_real(value) or (isinstance(value, float) and not value.is_integer()):
      raise ConfigError(f"config.{path} must be an integer, got {value!r}.")
    return
  if isinstance(ref, numbers.Real):
    if not _is_real(value):
      raise ConfigError(f"config.{path} must be a number, got {value!r}.")
    if not math.isfinite(value):
      raise ConfigError(f"config.{path} = {value!r} is not finite.")
    return
  if isinstance(ref, str):
    if not isinstance(value, str):
      raise ConfigError(f"config.{path} must be a string, got {value!r}.")
    return
  if isinstance(ref, (tuple, list)):
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
      raise ConfigError(f"config.{path} must be a tuple, got {value!r}.")
    if not value and ref and path not in allow_empty:
      raise ConfigError(f"config.{path} is empty: give at least one value (the default is "
                        f"{tuple(ref)!r}).")
    kinds = {type(r) for r in ref}
    for i, v in enumerate(value):
      if ref and all(isinstance(r, str) for r in ref) and not isinstance(v, str):
        raise ConfigError(f"config.{path}[{i}] must be a string, got {v!r}.")
      if ref and all(_is_real(r) for r in ref):
        if not _is_real(v):
          raise ConfigError(f"config.{path}[{i}] must be a number, got {v!r}.")
        if not math.isfinite(v):
          raise ConfigError(f"config.{path}[{i}] = {v!r} is not finite.")
        if kinds <= {int} and isinstance(v, float) and not v.is_integer():
          raise ConfigError(f"config.{path}[{i}] must be an integer, got {v!r}.")
    return


def _check_tree(value: Mapping, ref: Mapping, root: Mapping, prefix: str, free, allow_empty,
                where) -> None:
  for key, v in value.items():
    path = f"{prefix}{key}"
    if key not in ref:
      raise ConfigError(unknown_key_message(path, root, where))
    r = ref[key]
    if path in free:
      if v is not None and not isinstance(v, Mapping):
        raise ConfigError(f"config.{path} must be a dict of keyword arguments, got {v!r}.")
      continue
    if isinstance(r, Mapping):
      if not isinstance(v, Mapping):
        raise ConfigError(f"config.{path} must be a group of settings like the default "
                          f"({', '.join(sorted(r))}), got {v!r}.")
      _check_tree(v, r, root, path + ".", free, allow_empty, where)
    else:
      _check_value(path, v, r, allow_empty)


def check_config(config, reference, *, free: Iterable[str] = (), allow_empty: Iterable[str] = (),
                 where: str = "") -> None:
  """Raises ConfigError unless every key of `config` is a key of `reference` (the config file's
  defaults) and its value fits: the same kind (integer, number, string, bool, tuple, group),
  finite numbers (also inside tuples), and tuples that are not empty where the default is not
  (except the paths in `allow_empty`). Paths in `free` are dicts of keyword arguments (e.g.
  `model_kwargs`) whose keys are not checked. `where` names the config file in messages.

  Keys missing from `config` are allowed: run() reads optional knobs with `config.get`."""
  value, ref = _as_dict(config), _as_dict(reference)
  _check_tree(value, ref, ref, "", set(free), set(allow_empty), where)


def finite_positive(config, *paths: str) -> None:
  """ConfigError unless each `config.<path>` is a finite number > 0."""
  for path in paths:
    v = config
    for part in path.split("."):
      v = v[part] if isinstance(v, Mapping) else getattr(v, part)
    if not _is_real(v) or not math.isfinite(v) or not v > 0:
      raise ConfigError(f"config.{path} must be a finite number > 0, got {v!r}.")


def check_potentials(config, *keys: str) -> None:
  """ConfigError naming the key for a potential name of `config.<key>` that mdgeom cannot parse
  (the message lists the known names)."""
  from mdgeom import potentials
  for key in keys:
    for name in config[key]:
      try:
        potentials.get(name)
      except (ValueError, TypeError) as e:
        raise ConfigError(f"config.{key}: {e}") from None


# ------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------

def _root_cause(e: BaseException) -> BaseException:
  # config_flags re-raises a config file's error with its traceback pasted into the message,
  # and absl wraps that again: the first exception of the chain holds the plain message.
  seen = set()
  while id(e) not in seen and (e.__cause__ or e.__context__) is not None:
    seen.add(id(e))
    e = e.__cause__ or e.__context__
  return e


def _one_line(e: BaseException) -> str:
  text = str(e).strip()
  if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str):
    text = e.args[0]  # (str() of a KeyError is the repr of its key)
  text = text or type(e).__name__
  return text if isinstance(e, (ValueError, OSError, KeyError, RuntimeError)) else (
      f"{type(e).__name__}: {text}")


def _usage_error_message(e: BaseException) -> str:
  """One line for an error while the flags are parsed."""
  if isinstance(e, ConfigError):
    return str(e).splitlines()[0]
  first = str(e).strip().splitlines()[0] if str(e).strip() else ""
  if first and isinstance(e, flags.Error) and "Error whilst parsing" not in first:
    return first  # absl's own message names the flag: "flag --config.x=abc: ..."
  return _one_line(_root_cause(e)).splitlines()[0]


def _guard(fn: Callable, verbose: bool):
  """fn(), with a failure while reading the command line turned into one line (status 2)."""
  try:
    return fn()
  except SystemExit:
    raise
  except Exception as e:  # flags.Error, a config file's error, an override of the wrong type
    if verbose:
      raise
    _fail(_usage_error_message(e), 2)


def _fail(message: str, status: int) -> None:
  prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "experiment"
  print(f"{prog}: error: {message}", file=sys.stderr)
  sys.exit(status)


def _flag_value(argv: list[str], name: str, default):
  for i, a in enumerate(argv):
    if a.startswith(f"--{name}="):
      value = a.split("=", 1)[1]
    elif a == f"--{name}" and i + 1 < len(argv):
      value = argv[i + 1]
    else:
      continue
    default = value  # the last one wins, as in absl
  return default


def _verbose(argv: list[str]) -> bool:
  v = _flag_value(argv, "verbose", None)
  return "--verbose" in argv or (v is not None and v.lower() in ("1", "true", "yes"))


def _load_config_file(spec: str):
  """The config of `file.py[:variant]`, unlocked, as config_flags loads it."""
  from ml_collections.config_flags import config_flags as cf
  try:
    config = cf.ConfigFileFlagParser("config", lock_config=False).parse(spec)
  except Exception as e:  # a config file's own error, e.g. an unknown variant
    raise ConfigError(f"--config={spec}: {_one_line(_root_cause(e))}") from e
  if isinstance(config, cf._ErrorConfig):  # config_flags defers a missing file's error
    path = spec.split(":", 1)[0]
    raise ConfigError(f"--config={spec}: cannot read the config file {path!r} (no such file? "
                      f"paths are relative to {os.getcwd()}).")
  return config


def check_overrides(argv: list[str], default_config: str) -> None:
  """ConfigError for a `--config.key=...` whose key is not in the chosen config file, with close
  matches; before absl parses the flags (its own error is a traceback)."""
  spec = _flag_value(argv, "config", default_config)
  overrides = []
  for a in argv:
    if a.startswith(("--config.", "-config.", "--noconfig.")):
      overrides.append(a.split("=", 1)[0].split("config.", 1)[1])
  ref = _as_dict(_load_config_file(spec))
  for path in overrides:
    node = ref
    for part in path.split("."):
      if not isinstance(node, Mapping) or part not in node:
        raise ConfigError(unknown_key_message(path, ref, f" (--config.{path}) in {spec}"))
      node = node[part]


_HELP = ("--help", "-h", "--helpfull", "--helpshort", "-?", "--helpxml")


# Failures a user can act on (a bad value, a missing file, a run that cannot go on): one line.
# (TypeError, KeyError and the like are bugs: their traceback is shown.)
EXPECTED_ERRORS = (ValueError, OSError, RuntimeError, FloatingPointError)


def main(run: Callable, summary: Callable, default_config: str, default_workdir: str) -> None:
  argv = list(sys.argv)
  verbose = _verbose(argv)
  if not any(a in _HELP for a in argv):
    # Before the flags are defined: config_flags applies the --config.key overrides to the
    # default config as soon as the flag is defined, and a bad key is then a traceback.
    _guard(lambda: check_overrides(argv, default_config), verbose)
  config = _guard(lambda: _define_flags(default_config, default_workdir), verbose)

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from mdgeom import results
    fl = flags.FLAGS
    try:
      _setup_processes(fl)
      res = run(config.value, fl.workdir)
    except _FlagCombinationError as e:  # a command-line error, like every bad flag
      _fail(str(e), 2)
    except results.CellsPending as e:  # --nowait: nothing left for this worker
      print(f"{_one_line(e)}")
      return
    except EXPECTED_ERRORS as e:
      if flags.FLAGS.verbose:
        raise
      _fail(f"{_one_line(e)} (--verbose shows the traceback)", 1)
    if results.is_primary():  # (one summary for a multi-host program)
      print(summary(res))
      print(f"results: {os.path.join(flags.FLAGS.workdir, 'results.json')}")

  app.run(_main, flags_parser=lambda args: _guard(lambda: flags.FLAGS(args), verbose))


class _FlagCombinationError(ValueError):
  """Flags that do not go together (status 2, as absl's own flag errors)."""


def _setup_processes(fl) -> None:
  """Sweep options (mdgeom.results.configure_sweep) and, when asked, jax.distributed; before
  run(), which is before any JAX computation (initialize must come first)."""
  from mdgeom import results
  if not (fl.workdir or "").strip():
    raise _FlagCombinationError("--workdir is empty: give the directory the run writes to (its "
                                "cells, checkpoints and results.json), e.g. --workdir=runs/mine.")
  results.configure_sweep(merge_only=fl.merge, wait=fl.wait, claim_timeout=fl.claim_timeout)
  if not (fl.distributed or fl.coordinator_address):
    if fl.num_processes is not None or fl.process_id is not None:
      raise _FlagCombinationError("--num_processes and --process_id need --coordinator_address "
                                  "(or --distributed under SLURM / Open MPI, which detects them).")
    if fl.local_device_ids is not None:
      raise _FlagCombinationError("--local_device_ids selects this process's devices in a "
                                  "multi-host program: it needs --distributed or "
                                  "--coordinator_address (for one process, set "
                                  "CUDA_VISIBLE_DEVICES instead).")
    return
  import jax
  ids = fl.local_device_ids
  jax.distributed.initialize(
      coordinator_address=fl.coordinator_address, num_processes=fl.num_processes,
      process_id=fl.process_id,
      local_device_ids=None if ids is None else [int(i) for i in ids])


def _define_flags(default_config: str, default_workdir: str):
  from ml_collections import config_flags
  config = config_flags.DEFINE_config_file("config", default_config, _CONFIG_HELP)
  flags.DEFINE_string("workdir", default_workdir, _WORKDIR_HELP)
  flags.DEFINE_bool("verbose", False, _VERBOSE_HELP)
  flags.DEFINE_bool("merge", False, _MERGE_HELP)
  flags.DEFINE_bool("wait", True, _WAIT_HELP)
  flags.DEFINE_float("claim_timeout", 600.0, _CLAIM_HELP, lower_bound=1.0)
  flags.DEFINE_bool("distributed", False, _DISTRIBUTED_HELP)
  flags.DEFINE_string("coordinator_address", None, _COORDINATOR_HELP)
  flags.DEFINE_integer("num_processes", None, _NUM_PROCESSES_HELP, lower_bound=1)
  flags.DEFINE_integer("process_id", None, _PROCESS_ID_HELP, lower_bound=0)
  flags.DEFINE_list("local_device_ids", None, _LOCAL_DEVICES_HELP)
  # absl's --help lists the key flags of the main module, whose name is sys.argv[0]; these are
  # defined here, so they are declared key to it explicitly.
  for name in ("config", "workdir", "verbose", *_SWEEP_FLAGS, *_DISTRIBUTED_FLAGS):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])
  return config


__all__ = ["EXPECTED_ERRORS", "ConfigError", "check_config", "check_overrides", "check_potentials",
           "finite_positive", "main", "unknown_key_message"]
