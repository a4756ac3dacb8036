"""Run folders and result files: atomic writes, results that carry their config, resumable cells.

Every experiment writes `workdir/results.json` = {"config": {...}, ...} with the config (and so
the seeds) that produced it. Sweeps store each finished cell in `workdir/cells/<key>.json`
together with a fingerprint of the config that produced it, and skip cells already done; a cell
file that cannot be read (truncated, corrupt) counts as not done and is recomputed. Files are
written with the mode a plain `open()` gives (0o666 less the umask), so collaborators sharing a
cluster's group can read the results.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from typing import Any, Callable, Optional

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


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes JSON to a temporary file in the same folder, then renames it over `path`, so a
  reader (or a killed run) never sees a half-written file. The file gets `file_mode()`."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
  try:
    os.fchmod(fd, file_mode())
    with os.fdopen(fd, "w") as f:
      json.dump(to_jsonable(obj), f, indent=1, allow_nan=False)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


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


class CellStore:
  """Finished cells of a sweep, one JSON file each, keyed by a name and a config fingerprint.

  `get_or_compute(key, fn)` returns the stored value when the cell exists and was produced by the
  same `fingerprint_data`; otherwise it computes `fn()`, stores it atomically and returns it.
  """

  def __init__(self, workdir: str, fingerprint_data: Any):
    if os.path.exists(workdir) and not os.path.isdir(workdir):
      raise NotADirectoryError(f"workdir {workdir!r} is a file: results need a folder.")
    self.folder = os.path.join(workdir, "cells")
    self.fingerprint = fingerprint(fingerprint_data)

  def path(self, key: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in key)
    return os.path.join(self.folder, f"{safe}.json")

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
    return stored["value"]

  def put(self, key: str, value: Any) -> None:
    write_json_atomic(self.path(key), {"key": key, "fingerprint": self.fingerprint,
                                       "value": value})

  def get_or_compute(self, key: str, fn: Callable[[], Any]) -> tuple[Any, bool]:
    """(value, was_cached)."""
    value = self.get(key)
    if value is not None:
      return value, True
    value = to_jsonable(fn())
    self.put(key, value)
    return value, False
