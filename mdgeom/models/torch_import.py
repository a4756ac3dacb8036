"""PyTorch weights from local files into the zoo's Flax variables, and back.

A Flax leaf's torch key is its module path joined with "." (module names are the reference's
attribute names, see `mdgeom.models`), with the top-level renames of the model and these leaf
names:

    params/.../kernel (conv, 4-D)  <- weight (O, I/groups, kh, kw), transposed to (kh, kw, I/groups, O)
    params/.../kernel (linear, 2-D) <- weight (O, I), transposed to (I, O)
    params/.../scale               <- weight (batch norm)
    params/.../bias                <- bias
    batch_stats/.../mean, var      <- running_mean, running_var

`num_batches_tracked` buffers are ignored. Nothing is downloaded: paths are local files, and a
missing file raises an error that says where to get it.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from mdgeom import _checks

_LEAF = {("params", "kernel"): "weight", ("params", "scale"): "weight",
         ("params", "bias"): "bias", ("batch_stats", "mean"): "running_mean",
         ("batch_stats", "var"): "running_var"}
IGNORED_SUFFIXES = ("num_batches_tracked",)


class WeightImportError(ValueError):
  """The checkpoint does not match the model: lists missing, unexpected and mis-shaped keys."""

  def __init__(self, missing, unexpected, misshaped, source=""):
    self.missing, self.unexpected, self.misshaped = list(missing), list(unexpected), list(misshaped)
    lines = [f"checkpoint {source} does not match the model:" if source else
             "checkpoint does not match the model:"]

    def show(title, items):
      if items:
        lines.append(f"  {len(items)} {title}: " + ", ".join(map(str, items[:20])) +
                     (" ..." if len(items) > 20 else ""))

    show("missing keys (in the model, not in the checkpoint)", self.missing)
    show("unexpected keys (in the checkpoint, not in the model)", self.unexpected)
    show("mis-shaped keys (key: checkpoint shape vs model shape)",
         [f"{k}: {a} vs {b}" for k, a, b in self.misshaped])
    super().__init__("\n".join(lines))


class CheckpointError(ValueError):
  """A checkpoint file cannot be read (corrupt, truncated, not a checkpoint) or holds NaN/Inf.

  The message names the file (and the tensors), says what is wrong and what to do; the library
  error that was caught (SafetensorError, EOFError, ...) is chained as __cause__.
  """


CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".pth.tar", ".bin", ".ckpt")

# Axis order of a Flax kernel in terms of torch's weight axes, by rank: conv (O, I, kh, kw) ->
# (kh, kw, I, O), conv1d (O, I, k) -> (k, I, O), linear (O, I) -> (I, O).
_FROM_TORCH = {4: (2, 3, 1, 0), 3: (2, 1, 0), 2: (1, 0)}


def _to_torch(x: np.ndarray, leaf: str) -> np.ndarray:
  if leaf == "kernel" and x.ndim in _FROM_TORCH:
    return np.transpose(x, np.argsort(_FROM_TORCH[x.ndim]))
  return x


def _from_torch(t: np.ndarray, leaf: str) -> np.ndarray:
  if leaf == "kernel" and t.ndim in _FROM_TORCH:
    return np.transpose(t, _FROM_TORCH[t.ndim])
  return t


def _path_keys(path) -> tuple:
  return tuple(getattr(p, "key", getattr(p, "name", p)) for p in path)


def torch_key(path: tuple, rename: Optional[Mapping[str, str]] = None) -> str:
  """The torch state-dict key of a Flax leaf path ("params", "layer1", "0", "conv1", "kernel")."""
  collection, *modules, leaf = path
  rename = rename or {}
  if modules and modules[0] in rename:
    modules = [rename[modules[0]]] + list(modules[1:])
  name = _LEAF.get((collection, leaf), leaf)
  return ".".join([*modules, name])


def export_torch(variables, rename: Optional[Mapping[str, str]] = None) -> dict:
  """Flax variables as a torch-layout state dict of numpy arrays (the inverse of `import_torch`)."""
  out = {}
  for path, x in jax.tree_util.tree_leaves_with_path(variables):
    keys = _path_keys(path)
    # Contiguous: safetensors writes a transposed view's memory in the wrong order.
    out[torch_key(keys, rename)] = np.ascontiguousarray(_to_torch(np.asarray(x), keys[-1]))
  return out


def import_torch(variables, state_dict: Mapping[str, Any],
                 rename: Optional[Mapping[str, str]] = None, source: str = ""):
  """Returns `variables` with every leaf replaced by its value from a torch `state_dict`.

  Raises `WeightImportError` naming every missing, unexpected and mis-shaped key, so a wrong
  architecture or a truncated file never loads silently.
  """
  sd = {k: np.asarray(v) for k, v in state_dict.items()
        if not k.endswith(IGNORED_SUFFIXES)}
  leaves = jax.tree_util.tree_leaves_with_path(variables)
  treedef = jax.tree_util.tree_structure(variables)
  new, missing, misshaped, used = [], [], [], set()
  for path, x in leaves:
    keys = _path_keys(path)
    key = torch_key(keys, rename)
    expect = _to_torch(np.zeros(np.shape(x), np.float32), keys[-1]).shape
    if key not in sd:
      missing.append(key)
      new.append(x)
      continue
    used.add(key)
    t = sd[key]
    if t.shape != expect:
      misshaped.append((key, tuple(t.shape), tuple(expect)))
      new.append(x)
      continue
    new.append(np.asarray(_from_torch(t, keys[-1]), dtype=np.asarray(x).dtype))
  unexpected = sorted(set(sd) - used)
  if missing or unexpected or misshaped:
    raise WeightImportError(missing, unexpected, misshaped, source)
  return jax.tree_util.tree_unflatten(treedef, new)


def _redownload(how_to_get: str) -> str:
  return (f" Get it again: {how_to_get.rstrip().rstrip('.')}." if how_to_get
          else " Download or export it again.")


def _check_finite_tensors(sd: Mapping[str, np.ndarray], path: str, how_to_get: str) -> None:
  """Raises CheckpointError naming the file and every floating tensor with NaN or Inf."""
  bad = []
  for key, v in sd.items():
    a = np.asarray(v)
    if not jnp.issubdtype(a.dtype, jnp.inexact):  # jnp knows bfloat16; np.issubdtype does not
      continue
    a = a if np.issubdtype(a.dtype, np.inexact) else a.astype(np.float32)
    finite = np.isfinite(a)
    if not finite.all():
      n_nan = int(np.isnan(a).sum())
      bad.append(f"{key!r}: {n_nan} NaN, {int((~finite).sum()) - n_nan} Inf of {a.size}")
  if bad:
    shown = _checks.first_items(bad, 10, "; ", " tensors")
    raise CheckpointError(
        f"checkpoint {path} holds non-finite values in {len(bad)} tensors ({shown}): it was saved "
        "from a diverged run or is corrupt, and loading it would give NaN outputs."
        f"{_redownload(how_to_get)} Pass allow_nonfinite=True only if these values are intended "
        "(e.g. -inf masks).")


def load_state_dict(path: str, how_to_get: str = "", *, allow_nonfinite: bool = False) -> dict:
  """Reads a state dict from a local `.safetensors` file (no torch needed) or a `.pth`/`.pt`/
  `.pth.tar`/`.bin` file (needs torch). Unwraps {"state_dict": ...}/{"model": ...} checkpoints and
  strips the "module." prefix of DataParallel checkpoints (CORnet's).

  Raises:
    FileNotFoundError: no such path (the message adds `how_to_get`). IsADirectoryError: the path
    is a directory (the message lists checkpoint files in it). CheckpointError (a ValueError): the
    file is corrupt, truncated or not a checkpoint, or (unless allow_nonfinite) a floating tensor
    holds NaN or Inf; the message names the file and the tensors. ImportError: a torch file
    without torch installed.
  """
  path = os.path.expanduser(str(path))
  if not os.path.exists(path):
    hint = f" {how_to_get}" if how_to_get else ""
    raise FileNotFoundError(f"checkpoint file not found: {path}.{hint}")
  if os.path.isdir(path):
    found = sorted(f for f in os.listdir(path) if f.endswith(CHECKPOINT_SUFFIXES))
    listing = (f" Checkpoint files in it: {', '.join(found[:10])}" +
               (" ..." if len(found) > 10 else "") + "." if found else
               " It holds no such file.")
    raise IsADirectoryError(
        f"checkpoint path {path} is a directory; pass the checkpoint file itself: a .safetensors "
        f"file (read without PyTorch) or a .pth/.pt/.pth.tar/.bin file (needs PyTorch).{listing}")
  if path.endswith(".safetensors"):
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    try:
      sd = load_file(path)
    except (SafetensorError, TypeError, ValueError) as e:
      raise CheckpointError(
          f"cannot read checkpoint {path} ({os.path.getsize(path)} bytes) as safetensors: {e}. The "
          "file is corrupt or truncated (an interrupted download?) or not a safetensors file."
          f"{_redownload(how_to_get)}") from e
  else:
    try:
      import torch
    except ImportError as e:
      raise ImportError(
          f"reading {path} needs PyTorch (pip install torch); or convert the checkpoint once to "
          ".safetensors (safetensors.torch.save_file) and pass that file instead.") from e
    import pickle
    try:
      obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, OSError) as e:
      raise CheckpointError(
          f"cannot read checkpoint {path} ({os.path.getsize(path)} bytes) with torch.load: "
          f"{type(e).__name__}: {e}. The file is corrupt or truncated (an interrupted download?) "
          f"or not a PyTorch checkpoint.{_redownload(how_to_get)}") from e
    for k in ("state_dict", "model", "model_state_dict"):
      if isinstance(obj, dict) and k in obj and isinstance(obj[k], dict):
        obj = obj[k]
    if not isinstance(obj, dict):
      raise CheckpointError(f"{path} does not hold a state dict (found {type(obj).__name__}).")
    sd = {k: v.detach().float().numpy() if v.is_floating_point() else v.numpy()
          for k, v in obj.items() if hasattr(v, "numpy")}
  if not allow_nonfinite:
    _check_finite_tensors(sd, path, how_to_get)
  if sd and all(k.startswith("module.") for k in sd):
    sd = {k[len("module."):]: v for k, v in sd.items()}
  return sd


def load_pretrained(model, variables, path: str, how_to_get: str = "", *,
                    allow_nonfinite: bool = False):
  """`import_torch` of the state dict at `path` into `variables` of a `mdgeom.models.Model`.

  Raises what `load_state_dict` and `import_torch` raise (CheckpointError, WeightImportError, ...).
  """
  sd = load_state_dict(path, how_to_get, allow_nonfinite=allow_nonfinite)
  return import_torch(variables, sd, model.rename, source=path)


def deterministic_state_dict(keys_shapes: Mapping[str, tuple], seed: int = 0) -> dict:
  """Reproducible, well-scaled weights for every torch key (the same with or without torch), used
  by the reference-output fixtures: weights ~ N(0, 1/fan_in), batch-norm weights ~ U(0.5, 1.5),
  biases and running means ~ N(0, 0.1^2), running variances ~ U(0.5, 1.5)."""
  import zlib
  out = {}
  for key, shape in keys_shapes.items():
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    shape = tuple(shape)
    if key.endswith("running_var"):
      x = rng.uniform(0.5, 1.5, shape)
    elif key.endswith("weight") and len(shape) == 1:
      x = rng.uniform(0.5, 1.5, shape)
    elif key.endswith("weight"):
      fan_in = int(np.prod(shape[1:]))
      x = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
    else:
      x = rng.normal(0.0, 0.1, shape)
    out[key] = x.astype(np.float32)
  return out


__all__ = ["CHECKPOINT_SUFFIXES", "CheckpointError", "WeightImportError", "deterministic_state_dict",
           "export_torch", "import_torch", "load_pretrained", "load_state_dict", "torch_key"]
