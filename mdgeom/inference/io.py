"""Reading paired weights (CSV, NPY, NPZ) and checking that a pair can be analysed.

A pair is the same synapses measured before (w0) and after (w) learning, in the same order. NPY and
NPZ arrays keep their shape: a 2-D array is a weight matrix [post, pre] (or any [rows, cols]) and
carries unit structure for the per-unit scale model; a CSV column is a flat list of synapses,
whose units (if known) come from two id columns (`read_unit_ids`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from mdgeom import scales as scales_lib

MIN_WEIGHTS = 20  # below this the statistic, its bootstrap and its null mean little


class InferenceError(ValueError):
  """Input that the inference cannot use (the message says what is wrong and what to do)."""


def read_weights(path: str, column: str | None = None) -> np.ndarray:
  """Weights from a CSV (one column, or `column` by name or 0-based index), NPY or NPZ (`column`
  names the array; optional when the file holds one). NPY/NPZ keep their shape; float64."""
  if os.path.isdir(path):
    raise InferenceError(f"{path} is a directory: give the file of weights (.csv, .npy, .npz).")
  if not os.path.exists(path):
    raise InferenceError(f"{path}: no such file.")
  ext = os.path.splitext(path)[1].lower()
  try:
    if ext == ".npy":
      arr = np.load(path, allow_pickle=False)
    elif ext == ".npz":
      with np.load(path, allow_pickle=False) as z:
        keys = list(z.keys())
        if column is None:
          if len(keys) != 1:
            raise InferenceError(f"{path} holds arrays {keys}: choose one with --column.")
          column = keys[0]
        if column not in keys:
          raise InferenceError(f"{path} has no array {column!r} (arrays: {keys}).")
        arr = z[column]
    else:
      return _read_csv_column(path, column, numeric=True)
  except InferenceError:
    raise
  except Exception as e:  # numpy's errors for corrupt files vary (ValueError, OSError, ...)
    raise InferenceError(f"{path}: cannot read it as {ext or 'CSV'} ({type(e).__name__}: {e}).")
  if np.issubdtype(arr.dtype, np.complexfloating):
    raise InferenceError(f"{path}: complex numbers (dtype {arr.dtype}); weights must be real.")
  if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
    raise InferenceError(f"{path}: expected real numbers, got an array of dtype {arr.dtype}.")
  return np.asarray(arr, np.float64)


MISSING = {"", "na", "nan", "n/a", "null", "none", "-"}  # CSV cells that mean "not measured"


def _read_rows(path: str) -> tuple[list[str] | None, list[list[str]]]:
  """Header (or None) and rows of a CSV; blank lines inside the file are kept as rows with
  every value missing (so that rows stay aligned), trailing blank lines are dropped."""
  try:
    with open(path, newline="") as f:
      rows = list(csv.reader(f))
  except (UnicodeDecodeError, OSError, csv.Error) as e:
    raise InferenceError(f"{path}: cannot read it as a text CSV ({e}).") from None
  while rows and not any(c.strip() for c in rows[-1]):
    rows.pop()
  while rows and not any(c.strip() for c in rows[0]):
    rows.pop(0)
  if not rows:
    raise InferenceError(f"{path} is empty.")
  header = None
  if not all(_is_number(c) or c.strip().lower() in MISSING for c in rows[0]):
    header, rows = [c.strip() for c in rows[0]], rows[1:]
  if not rows:
    raise InferenceError(f"{path} has a header but no rows.")
  return header, rows


def _is_number(text: str) -> bool:
  try:
    float(text)
    return True
  except ValueError:
    return False


def _column_index(path, header, width, column) -> int:
  if column is None:
    if width != 1:
      names = header if header else list(range(width))
      raise InferenceError(
          f"{path} has {width} columns {names}: choose one with --column (for BEFORE and AFTER "
          "in columns of one file: --before-column NAME --after-column NAME).")
    return 0
  if header and column in header:
    return header.index(column)
  if str(column).isdigit() and int(column) < width:
    return int(column)
  raise InferenceError(f"{path} has no column {column!r} (columns: "
                       f"{header if header else list(range(width))}).")


def _read_csv_column(path: str, column: str | None, numeric: bool):
  """One column of a CSV, row by row: numbers (missing cells -> NaN) or labels (missing ->
  None)."""
  header, rows = _read_rows(path)
  width = len(header) if header else max(len(r) for r in rows)
  j = _column_index(path, header, width, column)
  first = 2 if header else 1
  out = [] if not numeric else np.empty(len(rows))
  for k, r in enumerate(rows):
    text = r[j].strip() if j < len(r) else ""
    missing = text.lower() in MISSING
    if not numeric:
      out.append(None if missing else text)
      continue
    if missing:
      out[k] = np.nan
      continue
    try:
      out[k] = float(text)
    except ValueError:
      raise InferenceError(f"{path}, line {k + first}: {text!r} is not a number.") from None
    if not np.isfinite(out[k]):
      raise InferenceError(f"{path}, line {k + first}: {text!r} is not a finite number.")
  return out


class Pair(NamedTuple):
  """Paired measurements read from files, aligned synapse by synapse."""

  w0: np.ndarray
  w: np.ndarray
  repeat: np.ndarray | None
  units: scales_lib.UnitIds | None
  n_missing: int       # synapses dropped because a value was missing in one of the files
  n_unmatched: int     # synapses in only one file (matched by id)


def read_pair(before: str, after: str, before_column: str | None = None,
              after_column: str | None = None, *, id_column: str | None = None,
              repeat: str | None = None, repeat_column: str | None = None,
              units: tuple[str, str] | None = None) -> Pair:
  """BEFORE and AFTER (and a repeated BEFORE) as aligned flat or matrix arrays.

  Synapses pair by row, or by `id_column` (a CSV column in each file). A missing CSV cell
  (blank, NA, nan) removes that synapse from every file and is counted; files of different
  lengths are an error when pairing by row. NPY/NPZ arrays keep their shape (and must not hold
  NaN). `units`: (pre, post) columns of BEFORE's CSV with each synapse's units.
  """
  if os.path.abspath(before) == os.path.abspath(after) and before_column == after_column:
    raise InferenceError(
        f"BEFORE and AFTER are the same {'column' if before_column else 'data'} of {before}: "
        "for two columns of one file name them with --before-column NAME --after-column NAME.")
  w0 = read_weights(before, before_column)
  w = read_weights(after, after_column)
  rep = read_weights(repeat, repeat_column) if repeat else None
  csv_in = [os.path.splitext(pth)[1].lower() not in (".npy", ".npz")
            for pth in (before, after) + ((repeat,) if repeat else ())]
  ids = None
  if units is not None:
    if w0.ndim != 1:
      raise InferenceError("--units names CSV columns; a 2-D matrix carries its units already.")
    pre = _read_csv_column(before, units[0], numeric=False)
    post = _read_csv_column(before, units[1], numeric=False)
    ids = (pre, post)
  n_unmatched = 0
  if id_column is not None:
    if not all(csv_in):
      raise InferenceError("--id-column pairs CSV files by a synapse id column; NPY/NPZ arrays "
                           "pair by position.")
    keys = [_read_csv_column(pth, id_column, numeric=False)
            for pth in (before, after) + ((repeat,) if repeat else ())]
    for pth, k in zip((before, after, repeat), keys):
      seen = [x for x in k if x is not None]
      if len(set(seen)) != len(seen):
        raise InferenceError(f"{pth}: the id column {id_column!r} repeats ids; each synapse "
                             "needs its own.")
    common = set(x for x in keys[0] if x is not None)
    for k in keys[1:]:
      common &= set(x for x in k if x is not None)
    order = [x for x in keys[0] if x in common]
    n_unmatched = len(set().union(*[set(x for x in k if x is not None) for k in keys])) - len(
        common)
    if not order:
      raise InferenceError(f"no synapse id of {before} appears in {after}"
                           + (f" and {repeat}" if repeat else "") + f" (column {id_column!r}).")
    pos = [{x: i for i, x in enumerate(k) if x is not None} for k in keys]
    take = [np.array([pp[x] for x in order]) for pp in pos]
    w0, w = w0[take[0]], w[take[1]]
    if rep is not None:
      rep = rep[take[2]]
    if ids is not None:
      ids = tuple([lab[i] for i in take[0]] for lab in ids)
  else:
    arrays = [("BEFORE", before, w0), ("AFTER", after, w)] + (
        [("REPEAT", repeat, rep)] if rep is not None else [])
    sizes = {name: a.shape for name, _, a in arrays}
    if len(set(sizes.values())) > 1:
      desc = ", ".join(f"{name} ({pth}) {a.shape[0] if a.ndim == 1 else a.shape}"
                       for name, pth, a in arrays)
      raise InferenceError(f"the files hold different numbers of synapses: {desc}. Pairs are "
                           "matched by row; give files of the same synapses, or match them by "
                           "a synapse id column (--id-column NAME).")
  missing = ~np.isfinite(w0) | ~np.isfinite(w)
  if rep is not None:
    missing |= ~np.isfinite(rep)
  if ids is not None:
    missing |= np.array([a is None or b is None for a, b in zip(*ids)]).reshape(missing.shape)
  n_missing = int(missing.sum())
  if n_missing:
    if w0.ndim != 1 or not all(csv_in):
      check_pair(w0, w)  # NaN in a matrix or an array: the error names it
    keep = ~missing
    w0, w = w0[keep], w[keep]
    if rep is not None:
      rep = rep[keep]
    if ids is not None:
      ids = tuple([lab for lab, k in zip(col, keep) if k] for col in ids)
  unit_ids = None
  if ids is not None:
    _, r = np.unique(np.asarray(ids[0]), return_inverse=True)
    _, c = np.unique(np.asarray(ids[1]), return_inverse=True)
    unit_ids = scales_lib.UnitIds(r.astype(np.int64), c.astype(np.int64))
  return Pair(w0, w, rep, unit_ids, n_missing, n_unmatched)


def read_unit_ids(path: str, pre_column: str, post_column: str) -> scales_lib.UnitIds:
  """Presynaptic and postsynaptic unit ids of each synapse from two CSV columns (any labels:
  neuron ids, names), for the per-unit scale model of a synapse table."""
  pre = _read_csv_column(path, pre_column, numeric=False)
  post = _read_csv_column(path, post_column, numeric=False)
  first = 2
  for k, (a, b) in enumerate(zip(pre, post)):
    if a is None or b is None:
      raise InferenceError(f"{path}, line {k + first}: a unit id is missing.")
  _, rows = np.unique(np.asarray(pre), return_inverse=True)
  _, cols = np.unique(np.asarray(post), return_inverse=True)
  return scales_lib.UnitIds(rows.astype(np.int64), cols.astype(np.int64))


def check_pair(w0, w, min_weights: int = MIN_WEIGHTS,
               names: Sequence[str] = ("BEFORE", "AFTER")) -> None:
  """Raises InferenceError for complex values, unequal shapes, NaN/Inf, too few weights, or no
  change at all."""
  w0, w = np.asarray(w0), np.asarray(w)
  for arr, name in zip((w0, w), names):
    if np.iscomplexobj(arr):
      raise InferenceError(f"{name} holds complex numbers; weights must be real.")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
      raise InferenceError(f"{name} is not numeric (dtype {arr.dtype}).")
  if w0.shape != w.shape:
    raise InferenceError(f"{names[0]} has shape {w0.shape} and {names[1]} {w.shape}: they must be "
                         "the same synapses, paired one to one.")
  for arr, name in zip((w0, w), names):
    bad = ~np.isfinite(arr)
    if bad.any():
      first = np.unravel_index(int(np.argmax(bad)), arr.shape) if arr.ndim > 1 else int(
          np.argmax(bad))
      raise InferenceError(f"{name} has {int(bad.sum())} NaN/Inf values (first at index "
                           f"{first}); remove those synapses from both files.")
  if w0.size < min_weights:
    raise InferenceError(f"only {w0.size} weights: the Delta-CDF statistic, its bootstrap and its "
                         f"null need at least {min_weights}.")
  if np.all(w0 == w):
    raise InferenceError("no weight changed between BEFORE and AFTER: there is no change to test.")
