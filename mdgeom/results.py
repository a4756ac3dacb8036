"""Run folders and result files: atomic writes, results that carry their config, resumable cells,
and sweeps shared by any number of workers.

Every experiment writes `workdir/results.json` = {"config": {...}, ...} with the config (and so
the seeds) that produced it. Sweeps store each finished cell in `workdir/cells/<key>.json`
together with a fingerprint of the config that produced it and the worker that computed it
({"host", "pid"}), and skip cells already done; a cell file that cannot be read (truncated,
corrupt) counts as not done and is recomputed. Files are written with the mode a plain `open()`
gives (0o666 less the umask), so collaborators sharing a cluster's group can read the results.

Workers. Any number of processes (SLURM array tasks, one per GPU of a node, several machines
with a shared file system) may run the same experiment command on the same workdir: a worker
claims a cell before computing it with a lock file `cells/<key>.lock.<generation>` created with
O_EXCL (so exactly one worker wins it), holding its host, pid and the time, and refreshed (its
mtime) while the cell computes. A claim expires when its worker is gone: the same host and the
pid no longer runs, or the file was not refreshed for `claim_timeout` seconds (another host, or
a hung process); the next worker then claims the next generation, again with O_EXCL, so two
workers never take over the same dead claim. A worker takes the first cell in order whose inputs
are done and that nobody holds, waits while the remaining cells are held by live workers (and
takes over those whose worker died), and returns once every cell is done; each experiment then
merges the cells into results.json, so the last worker to finish leaves the complete file
(`--merge` merges without computing).

Processes of one multi-host JAX program (`jax.distributed.initialize()`) act as one worker:
process 0 claims and decides, every process computes (the computation is collective), and files
are written by process 0 only (`is_primary`); the workdir must then be on a file system that all
of them share.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import socket
import sys
import tempfile
import threading
import time
from typing import Any, Callable, NamedTuple, Optional, Sequence

import numpy as np

_log = logging.getLogger(__name__)


class ResultFileError(ValueError):
  """A result or cell file that exists but cannot be read as JSON (truncated, corrupt, not
  text). The message names the file; the parser's error is chained as __cause__."""


def to_jsonable(obj: Any) -> Any:
  """Converts numpy/JAX scalars and arrays, tuples and ConfigDicts to plain JSON types; NaN and
  Inf become null."""
  if hasattr(obj, "to_dict") and callable(obj.to_dict):
    return to_jsonable(obj.to_dict())
  if isinstance(obj, dict):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if isinstance(obj, (np.ndarray, np.generic)) or type(obj).__module__.startswith("jax"):
    a = np.asarray(obj)
    return to_jsonable(a.tolist() if a.ndim else a.item())
  if isinstance(obj, float) and not np.isfinite(obj):
    return None  # JSON has no NaN/Inf: null marks a value that is not finite (e.g. diverged)
  return obj


def _umask() -> int:
  """The process umask, read without changing it where the system says it (Linux), else by
  setting and restoring it."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError, IndexError):
    pass
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def file_mode() -> int:
  """The mode of a new file made by `open(path, "w")`: 0o666 less the umask (0o644 with the
  usual umask 022). mkstemp's 0o600 would hide results from the rest of a shared group."""
  return 0o666 & ~_umask()


def prepare_workdir(workdir) -> str:
  """Creates `workdir` (and its parents) and checks that results can be written there; raises
  NotADirectoryError (it, or a parent, is a file), PermissionError, or TypeError (not a path)
  naming the folder, before an experiment does any work."""
  if not isinstance(workdir, (str, os.PathLike)) or not str(workdir).strip():
    raise TypeError(f"workdir must be a folder path, got {workdir!r}.")
  workdir = os.fspath(workdir)
  path = os.path.abspath(workdir)
  probe = path
  while probe and not os.path.exists(probe):  # the nearest existing ancestor
    parent = os.path.dirname(probe)
    if parent == probe:
      break
    probe = parent
  if os.path.exists(probe) and not os.path.isdir(probe):
    what = "is a file" if probe == path else f"is under {probe!r}, which is a file"
    raise NotADirectoryError(f"workdir {workdir!r} {what}: results need a folder; choose "
                             "another --workdir.")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise type(e)(e.errno, f"cannot create workdir {workdir!r}: {e.strerror}") from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise PermissionError(f"workdir {workdir!r} is not writable: choose another --workdir.")
  return path


def write_bytes_atomic(path: str, data: bytes) -> None:
  """Writes `data` to a temporary file in the same folder, flushed to disk, then renames it over
  `path`, so a reader (or a killed run) never sees a half-written file. The file gets
  `file_mode()`. In a multi-host JAX program only process 0 writes (`is_primary`): the others
  hold the same values."""
  if not is_primary():
    return
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
  try:
    os.fchmod(fd, file_mode())
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_json_atomic(path: str, obj: Any) -> None:
  """`obj` as JSON (NaN refused), written with `write_bytes_atomic`."""
  text = json.dumps(to_jsonable(obj), indent=1, allow_nan=False)
  write_bytes_atomic(path, text.encode("utf-8"))


def read_results(run: str) -> dict:
  """The results.json of a finished run, given its workdir or the file itself; errors name the
  path (FileNotFoundError, or ResultFileError for a damaged file)."""
  path = os.path.join(run, "results.json") if os.path.isdir(run) else run
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such results file (pass a finished run's workdir or "
                            "its results.json; the experiment writes it when every cell is done).")
  return read_json(path)


def read_json(path: str) -> Any:
  """The JSON data in `path`; ResultFileError naming the file if it is not valid JSON text."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ResultFileError(f"{path} is not a valid JSON file ({e}); it may be truncated by a "
                          "killed run or a full disk: delete it (a cell is then recomputed).") from e


def config_dict(config) -> dict:
  """A ConfigDict (or dict) as plain JSON-ready data."""
  return to_jsonable(config.to_dict() if hasattr(config, "to_dict") else dict(config))


def fingerprint(obj: Any) -> str:
  """A short stable hash of JSON-ready data (sorted keys)."""
  text = json.dumps(to_jsonable(obj), sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def potential_fingerprints(names) -> dict:
  """{name: fingerprint of what the potential computes} (`mdgeom.potentials.fingerprint`), for a
  cell store's fingerprint: a user's potential ("module:function") edited between two runs then
  invalidates the cells computed with the old code, which its name alone would not."""
  from mdgeom import potentials  # (results is imported by modules that potentials needs)

  return {str(n): potentials.fingerprint(n) for n in names}


# ------------------------------------------------------------------------------------------
# The processes of one multi-host JAX program
# ------------------------------------------------------------------------------------------

def _jax_group() -> tuple[int, int]:
  """(process index, process count) of the JAX program this process belongs to: (0, 1) unless
  `jax.distributed.initialize()` joined several processes. Never starts a JAX backend itself."""
  jax = sys.modules.get("jax")
  if jax is None or not jax.distributed.is_initialized():
    return 0, 1
  return jax.process_index(), jax.process_count()


def is_primary() -> bool:
  """Whether this process writes the results: always, except in a multi-host JAX program, where
  process 0 does."""
  return _jax_group()[0] == 0


def agreed(value: int) -> int:
  """Process 0's `value` (an integer) in every process of a multi-host JAX program (a
  collective: every process must call it at the same point), else `value`. Decisions that read
  the file system (is a cell done? is it free?) are taken by process 0 and shared this way, so
  that the processes always run the same computation."""
  if _jax_group()[1] == 1:
    return int(value)
  from jax.experimental import multihost_utils
  return int(multihost_utils.broadcast_one_to_all(np.int64(value)))


# ------------------------------------------------------------------------------------------
# Claims: lock files shared by the workers of a sweep
# ------------------------------------------------------------------------------------------

_SETTINGS = {"merge_only": False, "wait": True, "claim_timeout": 600.0, "poll": 2.0}


class CellsPending(RuntimeError):
  """Raised by `run_cells` with `configure_sweep(wait=False)` when every cell left is held by
  another live worker (or waits for one): this worker has nothing more to do now."""


def configure_sweep(merge_only: Optional[bool] = None, wait: Optional[bool] = None,
                    claim_timeout: Optional[float] = None, poll: Optional[float] = None) -> dict:
  """Sets this process's sweep options (the experiments' command line does, from --merge,
  --wait and --claim_timeout) and returns the previous ones.

  merge_only: cell stores compute nothing; a missing cell is an error naming it.
  wait: when the cells left are held by other live workers, wait for them (taking over the
    cells of workers that die, then merging results.json), or (False) raise CellsPending.
  claim_timeout: seconds without a refresh after which a claim counts as abandoned (workers on
    other hosts; on the same host a claim also expires as soon as its process is gone). A claim
    is refreshed every claim_timeout / 4 seconds (at most every 60 s).
  poll: seconds between two looks at cells held by other workers.
  """
  old = dict(_SETTINGS)
  for k, v in (("merge_only", merge_only), ("wait", wait), ("claim_timeout", claim_timeout),
               ("poll", poll)):
    if v is None:
      continue
    if k in ("merge_only", "wait"):
      _SETTINGS[k] = bool(v)
    elif isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
      _SETTINGS[k] = float(v)
    else:
      raise ValueError(f"{k} must be a positive number of seconds, got {v!r}.")
  return old


def sweep_settings() -> dict:
  """This process's sweep options (see configure_sweep)."""
  return dict(_SETTINGS)


def worker_id() -> dict:
  """{"host", "pid"} of this process, as cell files and claims record it."""
  return {"host": socket.gethostname(), "pid": os.getpid()}


def _pid_running(pid: int) -> bool:
  """Whether `pid` runs on this host (a zombie, killed but not yet reaped, does not)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # another user's process
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except (OSError, IndexError):
    return True


class Claim:
  """A held lock file: refreshed (its mtime) by a daemon thread until `release()`."""

  def __init__(self, path: str, refresh: float):
    self.path = path
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._refresh, args=(refresh,), daemon=True,
                                    name=f"claim {os.path.basename(path)}")
    self._thread.start()

  def _refresh(self, every: float) -> None:
    while not self._stop.wait(every):
      try:
        os.utime(self.path)
      except FileNotFoundError:  # taken over: this worker was silent for claim_timeout
        _log.warning("claim %s was taken over by another worker", self.path)
        return
      except OSError as e:  # e.g. a file server hiccup: try again at the next refresh
        _log.warning("cannot refresh claim %s: %s", self.path, e)

  def release(self) -> None:
    self._stop.set()
    self._thread.join()
    with contextlib.suppress(FileNotFoundError):
      os.unlink(self.path)


def _lock_name(safe: str, generation: int) -> str:
  return f"{safe}.lock.{generation}"


def _scan_locks(folder: str) -> dict[str, list[tuple[int, str]]]:
  """{safe name: [(generation, path)]} of the lock files in `folder`."""
  out: dict[str, list[tuple[int, str]]] = {}
  try:
    entries = list(os.scandir(folder))
  except FileNotFoundError:
    return out
  for e in entries:
    base, sep, gen = e.name.rpartition(".lock.")
    if sep and gen.isdigit():
      out.setdefault(base, []).append((int(gen), e.path))
  return out


def _holder(path: str, timeout: float) -> Optional[dict]:
  """The worker holding the lock file `path` ({"host", "pid", "time"}), or None when the claim
  is free: the file is gone, its process is gone (same host), or it was not refreshed for
  `timeout` seconds."""
  try:
    age = time.time() - os.stat(path).st_mtime
  except FileNotFoundError:
    return None
  try:
    with open(path) as f:
      info = json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    info = {}  # just created, its content not yet written: live unless old
  if age > timeout:
    return None
  if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
    if not _pid_running(info["pid"]):
      return None
  return info or {"host": "?", "pid": "?"}


def try_claim(folder: str, name: str, timeout: Optional[float] = None,
              _locks: Optional[dict] = None) -> tuple[Optional[Claim], Optional[dict]]:
  """(claim, None) when this process now holds `name` in `folder`, else (None, holder) with the
  live worker that holds it ({"host", "pid", "time"}; None when a race was lost, to try again).

  The lock file of generation g + 1 replaces an expired one of generation g, created with O_EXCL
  like the first: of the workers that find the same dead claim, exactly one takes it over."""
  timeout = _SETTINGS["claim_timeout"] if timeout is None else float(timeout)
  safe = _safe(name)
  locks = (_scan_locks(folder) if _locks is None else _locks).get(safe, [])
  generation = 0
  if locks:
    top, path = max(locks)
    holder = _holder(path, timeout)
    if holder is not None:
      return None, holder
    generation = top + 1
  path = os.path.join(folder, _lock_name(safe, generation))
  os.makedirs(folder, exist_ok=True)
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, file_mode())
  except FileExistsError:
    return None, None
  with os.fdopen(fd, "w") as f:
    json.dump({**worker_id(), "time": time.time()}, f)
  for _, old in locks:  # the expired generations
    with contextlib.suppress(FileNotFoundError):
      os.unlink(old)
  return Claim(path, refresh=min(60.0, timeout / 4)), None


@contextlib.contextmanager
def exclusive(folder: str, name: str):
  """Holds the claim `name` in `folder` for the block, waiting while a live worker holds it (and
  taking over a dead worker's): for work that one worker does and the others then reuse, such
  as pretraining a network. In a multi-host JAX program process 0 holds it for the group."""
  claim = None
  if is_primary():
    waited = 0.0
    while True:
      claim, holder = try_claim(folder, name)
      if claim is not None:
        break
      if holder is not None and waited == 0.0:
        _log.info("waiting for %s, held by %s:%s", name, holder.get("host"), holder.get("pid"))
      waited += _sleep()
  agreed(1)  # the others wait here for process 0's claim
  try:
    yield
  finally:
    agreed(1)  # and process 0 releases once every process is done
    if claim is not None:
      claim.release()


def _sleep() -> float:
  # Jittered, so that workers started together do not poll in step.
  t = _SETTINGS["poll"] * random.uniform(0.75, 1.25)
  time.sleep(t)
  return t


def _safe(key: str) -> str:
  return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in key)


# ------------------------------------------------------------------------------------------
# Cell stores
# ------------------------------------------------------------------------------------------

class Cell(NamedTuple):
  """One unit of work of a sweep (`run_cells`).

  key: the cell's name in its store (also the name of its claim).
  fn: `fn(*values of needs) -> value`; with `outputs`, a dict {key: value} holding every key of
    `outputs` (cells computed together, e.g. potentials trained in one vectorised call).
  needs: keys of cells of the same store whose values `fn` takes; the cell waits for them.
  outputs: the keys it writes (default: `key` alone).
  store: the CellStore it belongs to (`CellStore.cell` sets it).
  """
  key: str
  fn: Callable[..., Any]
  needs: tuple = ()
  outputs: tuple = ()
  store: Any = None


class CellStore:
  """Finished cells of a sweep, one JSON file each, keyed by a name and a config fingerprint,
  shared by any number of workers (see the module docstring).

  `run([store.cell(key, fn), ...])` computes the cells that are not done, each by one worker, and
  returns every cell's value; `get_or_compute(key, fn)` does so for one cell. A stored value
  counts as done when it was produced by the same `fingerprint_data` and `valid(value)` holds
  (e.g. it has a statistic that older versions lacked).
  """

  def __init__(self, workdir: str, fingerprint_data: Any,
               valid: Optional[Callable[[Any], bool]] = None):
    if os.path.exists(workdir) and not os.path.isdir(workdir):
      raise NotADirectoryError(f"workdir {workdir!r} is a file: results need a folder.")
    self.folder = os.path.join(workdir, "cells")
    self.fingerprint = fingerprint(fingerprint_data)
    self.valid = valid
    self.computed: set[str] = set()  # keys this process computed (not read from files)

  def path(self, key: str) -> str:
    return os.path.join(self.folder, f"{_safe(key)}.json")

  def get(self, key: str) -> Optional[Any]:
    """The stored value, or None when the cell is missing, was produced by another config, or
    cannot be read (a truncated or corrupt file is recomputed, with a warning naming it)."""
    p = self.path(key)
    if not os.path.exists(p):
      return None
    try:
      stored = read_json(p)
    except (ResultFileError, OSError) as e:
      _log.warning("cell %s cannot be read and is recomputed: %s", p, e)
      return None
    if not isinstance(stored, dict) or "value" not in stored:
      _log.warning("cell %s is not a cell file (no 'value') and is recomputed", p)
      return None
    if stored.get("fingerprint") != self.fingerprint:
      return None  # produced by a different config: recompute
    if self.valid is not None and not self.valid(stored["value"]):
      return None
    return stored["value"]

  def put(self, key: str, value: Any) -> None:
    write_json_atomic(self.path(key), {"key": key, "fingerprint": self.fingerprint,
                                       "worker": worker_id(), "value": value})

  def cell(self, key: str, fn: Callable[..., Any], needs: Sequence[str] = (),
           outputs: Sequence[str] = ()) -> Cell:
    """A Cell of this store (see Cell)."""
    return Cell(key, fn, tuple(needs), tuple(outputs), self)

  def run(self, cells: Sequence[Cell]) -> dict:
    """`run_cells` over cells of this store."""
    return run_cells(cells)

  def get_or_compute(self, key: str, fn: Callable[[], Any]) -> tuple[Any, bool]:
    """(value, was_cached): the stored value, or `fn()` computed and stored by this worker
    (waiting while another live worker computes it)."""
    value = run_cells([self.cell(key, fn)])[key]
    return value, key not in self.computed


_DONE, _WAIT, _MISSING = -1, -2, -3


def run_cells(cells: Sequence[Cell]) -> dict:
  """Computes the cells that are not done, each by exactly one of the workers running the same
  sweep, and returns {key: value} for every output of every cell (keys unique across stores).

  This worker repeatedly takes the first cell, in the given order, that is not done, whose needs
  are done and that it can claim; computes it (holding the claim) and stores its outputs. When
  every remaining cell is held by live workers or waits for one, it polls until they finish or
  their workers die (their claims expire and it takes them over), or with `configure_sweep(
  wait=False)` raises CellsPending. In `configure_sweep(merge_only=True)` mode nothing is
  computed, and a cell that is not done raises RuntimeError.
  """
  cells = list(cells)
  for c in cells:
    if c.store is None:
      raise ValueError(f"cell {c.key!r} has no store: make cells with CellStore.cell.")
  outputs = [c.outputs or (c.key,) for c in cells]
  keys = [k for outs in outputs for k in outs]
  if len(set(keys)) != len(keys):
    raise ValueError(f"cell keys are not unique: {sorted(k for k in keys if keys.count(k) > 1)}.")
  owner = {k: c.store for c, outs in zip(cells, outputs) for k in outs}
  values: dict = {}
  merge_only = _SETTINGS["merge_only"]

  def known(key) -> bool:
    if key not in values:
      v = owner[key].get(key)
      if v is None:
        return False
      values[key] = v
    return True

  def next_action() -> tuple[int, Optional[Claim], list]:
    """(index of a claimed cell, its claim, []) or (_DONE / _WAIT / _MISSING, None, holders)."""
    locks = {}  # one look at each store's lock files per pass
    holders, missing = [], []
    for i, (c, outs) in enumerate(zip(cells, outputs)):
      if all(known(k) for k in outs):
        continue
      missing.append(c.key)
      if merge_only or not all(known(k) for k in c.needs):
        continue
      folder = c.store.folder
      if folder not in locks:
        locks[folder] = _scan_locks(folder)
      claim, holder = try_claim(folder, c.key, _locks=locks[folder])
      if claim is None:
        holders.append(holder)
        continue
      if all(known(k) for k in outs):  # finished between our look and the claim
        claim.release()
        missing.pop()
        continue
      return i, claim, []
    if not missing:
      return _DONE, None, []
    return (_MISSING if merge_only else _WAIT), None, (missing if merge_only else holders)

  primary = is_primary()
  waiting_since = None
  while True:
    index, claim, info = next_action() if primary else (0, None, [])
    index = agreed(index)
    if index == _DONE:
      break
    if index == _MISSING:
      shown = ", ".join(info[:5]) + (f" and {len(info) - 5} more" if len(info) > 5 else "")
      raise RuntimeError(f"{len(info) if primary else 'some'} cells are not done ({shown}): run "
                         "the experiment without --merge (or wait for its workers) first.")
    if index == _WAIT and not _SETTINGS["wait"]:
      raise CellsPending("the cells left are held by other workers (or wait for cells they "
                         "hold); the last worker to finish merges results.json.")
    if index == _WAIT:
      now = time.time()
      if waiting_since is None or now - waiting_since > 300:  # a line every 5 minutes
        live = sorted({f"{h.get('host')}:{h.get('pid')}" for h in info if h})
        _log.info("waiting for cells held by other workers%s", f" ({', '.join(live)})"
                  if live else "")
        waiting_since = now
      _sleep()
      continue
    waiting_since = None
    c, outs = cells[index], outputs[index]
    try:
      args = [values[k] if k in values else _read_shared(owner[k], k) for k in c.needs]
      out = c.fn(*args)
      out = {c.key: out} if not c.outputs else out
      if set(out) != set(outs):
        raise ValueError(f"cell {c.key!r} returned {sorted(out)}, expected {sorted(outs)}.")
      for k in outs:
        v = to_jsonable(out[k])
        c.store.put(k, v)
        c.store.computed.add(k)
        values[k] = v
    finally:
      if claim is not None:
        claim.release()
  for k in keys:  # (the other processes of a multi-host program read what others computed)
    if k not in values:
      values[k] = _read_shared(owner[k], k)
  return {k: values[k] for k in keys}


def _read_shared(store: CellStore, key: str, patience: float = 60.0) -> Any:
  """A cell that process 0 found done, read by another process of its group: a shared file
  system may show a new file to other hosts a little later."""
  deadline = time.time() + patience
  while True:
    v = store.get(key)
    if v is not None:
      return v
    if time.time() > deadline:
      raise RuntimeError(f"cell {store.path(key)} is done for process 0 but cannot be read here: "
                         "multi-host runs need the workdir on a file system every host shares.")
    time.sleep(1.0)
