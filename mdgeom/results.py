"""Run folders and result files: atomic writes, results that carry their config, resumable cells.

Every experiment writes `workdir/results.json` = {"config": {...}, ...} with the config (and so
the seeds) that produced it. Sweeps store each finished cell in `workdir/cells/<key>.json`
together with a fingerprint of the config that produced it, and skip cells already done.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any, Callable, Optional

import numpy as np


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


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes JSON to a temporary file in the same folder, then renames it over `path`, so a
  reader (or a killed run) never sees a half-written file."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
  try:
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
  with open(path) as f:
    return json.load(f)


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
    self.folder = os.path.join(workdir, "cells")
    self.fingerprint = fingerprint(fingerprint_data)

  def path(self, key: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in key)
    return os.path.join(self.folder, f"{safe}.json")

  def get(self, key: str) -> Optional[Any]:
    p = self.path(key)
    if not os.path.exists(p):
      return None
    stored = read_json(p)
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
