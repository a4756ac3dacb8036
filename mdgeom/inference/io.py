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


def _read_rows(path: str) -> tuple[list[str] | None, list[list[str]]]:
  try:
    with open(path, newline="") as f:
      rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
  except (UnicodeDecodeError, OSError, csv.Error) as e:
    raise InferenceError(f"{path}: cannot read it as a text CSV ({e}).") from None
  if not rows:
    raise InferenceError(f"{path} is empty.")
  header = None
  if not all(_is_number(c) for c in rows[0]):
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
      raise InferenceError(f"{path} has {width} columns {names}: choose one with --column.")
    return 0
  if header and column in header:
    return header.index(column)
  if str(column).isdigit() and int(column) < width:
    return int(column)
  raise InferenceError(f"{path} has no column {column!r} (columns: "
                       f"{header if header else list(range(width))}).")


def _read_csv_column(path: str, column: str | None, numeric: bool):
  header, rows = _read_rows(path)
  width = len(header) if header else len(rows[0])
  j = _column_index(path, header, width, column)
  first = 2 if header else 1
  if not numeric:
    out = []
    for k, r in enumerate(rows):
      if j >= len(r) or not r[j].strip():
        raise InferenceError(f"{path}, line {k + first}: column {column!r} is empty.")
      out.append(r[j].strip())
    return out
  out = np.empty(len(rows))
  for k, r in enumerate(rows):
    text = r[j].strip() if j < len(r) else ""
    try:
      out[k] = float(text)
    except ValueError:
      raise InferenceError(f"{path}, line {k + first}: {text!r} is not a number.") from None
  return out


def read_unit_ids(path: str, pre_column: str, post_column: str) -> scales_lib.UnitIds:
  """Presynaptic and postsynaptic unit ids of each synapse from two CSV columns (any labels:
  neuron ids, names), for the per-unit scale model of a synapse table."""
  pre = _read_csv_column(path, pre_column, numeric=False)
  post = _read_csv_column(path, post_column, numeric=False)
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
