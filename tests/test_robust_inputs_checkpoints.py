"""Checkpoints that cannot be trusted raise one error naming the file, never load silently."""

import sys
import types

import numpy as np
import pytest
from safetensors.numpy import save_file

from mdgeom.models import torch_import as T


def write(path, tensors):
  save_file(tensors, str(path))
  return path


def good_tensors():
  return {"fc.weight": np.ones((3, 2), np.float32), "fc.bias": np.zeros(3, np.float32)}


def test_safetensors_round_trip_still_loads(tmp_path):
  sd = T.load_state_dict(write(tmp_path / "ok.safetensors", good_tensors()))
  np.testing.assert_array_equal(sd["fc.weight"], np.ones((3, 2)))


@pytest.mark.parametrize("value, counts", [(np.nan, "1 NaN, 0 Inf"), (-np.inf, "0 NaN, 1 Inf")])
def test_nonfinite_tensor_names_file_and_tensor(tmp_path, value, counts):
  """Before: the NaN loaded silently and every output of the network was NaN."""
  tensors = good_tensors()
  tensors["fc.bias"][1] = value
  path = write(tmp_path / "diverged.safetensors", tensors)
  with pytest.raises(T.CheckpointError, match=f"'fc.bias': {counts} of 3") as e:
    T.load_state_dict(path, how_to_get="see the model card")
  assert str(path) in str(e.value) and "see the model card" in str(e.value)
  assert isinstance(e.value, ValueError)
  sd = T.load_state_dict(path, allow_nonfinite=True)  # opt-out for intended values
  assert not np.isfinite(sd["fc.bias"][1])


@pytest.mark.parametrize("damage", [
    lambda data: data[:-7],  # truncated download
    lambda data: data[:5],
    lambda data: b"",
    lambda data: b"<html>rate limited</html>",  # an error page saved under the file's name
])
def test_corrupt_safetensors_names_the_file(tmp_path, damage):
  """Before: SafetensorError('Error while deserializing header: ...'), naming no file."""
  data = write(tmp_path / "tmp.safetensors", good_tensors()).read_bytes()
  path = tmp_path / "model.safetensors"
  path.write_bytes(damage(data))
  with pytest.raises(T.CheckpointError, match="corrupt or truncated") as e:
    T.load_state_dict(path)
  assert str(path) in str(e.value) and type(e.value.__cause__).__name__ == "SafetensorError"


def test_directory_says_it_is_a_directory_and_lists_checkpoints(tmp_path):
  """Before: 'reading <dir> needs PyTorch', which sends the user the wrong way."""
  write(tmp_path / "weights.safetensors", good_tensors())
  (tmp_path / "notes.txt").write_text("x")
  with pytest.raises(IsADirectoryError, match="is a directory") as e:
    T.load_state_dict(tmp_path)
  assert "weights.safetensors" in str(e.value) and "notes.txt" not in str(e.value)


def test_corrupt_torch_file_names_the_file(tmp_path, monkeypatch):
  """torch.load's EOFError / RuntimeError on a truncated .pth (torch faked: not installed here)."""
  fake = types.ModuleType("torch")

  def load(path, **kwargs):
    raise EOFError("Ran out of input")

  fake.load = load
  monkeypatch.setitem(sys.modules, "torch", fake)
  path = tmp_path / "resnet.pth"
  path.write_bytes(b"PK\x03\x04")
  with pytest.raises(T.CheckpointError, match="EOFError: Ran out of input") as e:
    T.load_state_dict(path, how_to_get="https://example.org/resnet.pth")
  assert str(path) in str(e.value) and "https://example.org/resnet.pth" in str(e.value)
  assert isinstance(e.value.__cause__, EOFError)
