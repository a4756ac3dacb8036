"""Regenerates tests/fixtures/models/<name>.npz from the reference PyTorch implementations.

    pip install torch==2.14.1 torchvision==0.29.1   # plus each family's reference package
    python -m tests.reference.make_model_fixtures [names...]

A fixture holds what the default tests need without torch: the reference state-dict keys and
shapes, its parameter count, an input, and the reference logits for the deterministic weights of
`mdgeom.models.torch_import.deterministic_state_dict(keys_shapes, seed=0)`.
"""

import json
import os
import sys

import numpy as np

from tests.reference import builders

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "models")
BATCH = 2


def reference_logits(build, image_size, seed=0):
  import torch
  from mdgeom.models.torch_import import deterministic_state_dict
  torch.manual_seed(0)
  net = build().eval()
  sd = net.state_dict()
  shapes = {k: tuple(v.shape) for k, v in sd.items() if not k.endswith("num_batches_tracked")}
  weights = deterministic_state_dict(shapes, seed=seed)
  net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
  x = np.random.default_rng(seed).standard_normal((BATCH, 3, image_size, image_size))
  x = x.astype(np.float32)
  with torch.no_grad():
    y = net(torch.from_numpy(x)).double().numpy()
  n_params = sum(p.numel() for p in net.parameters())
  return shapes, n_params, x, y


def main(names):
  table = builders()
  os.makedirs(FIXTURES, exist_ok=True)
  for name in names or sorted(table):
    build, size = table[name]
    shapes, n_params, x, y = reference_logits(build, size)
    path = os.path.join(FIXTURES, f"{name}.npz")
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, shapes=json.dumps(shapes), n_params=n_params, image_size=size,
                        logits=y.astype(np.float32))
    os.replace(tmp, path)
    print(f"{name}: {n_params:,} parameters, logits {y.shape}, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
  main(sys.argv[1:])
