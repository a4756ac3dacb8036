"""Every port in the zoo against its reference PyTorch implementation.

Default run: committed fixtures (reference keys, parameter count and logits for deterministic
weights, see tests/reference/make_model_fixtures.py), no torch needed. With torch installed,
`pytest -m torch` also compares live at 224x224 with the reference's own random initialisation.
"""

import glob
import json
import os

import jax
import numpy as np
import pytest

from mdgeom import models
from mdgeom.models import torch_import

FIXTURES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "fixtures", "models", "*.npz")))
NAMES = [os.path.basename(p)[:-4] for p in FIXTURES]


def _input(size, batch=2, seed=0):
  x = np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)
  return x


def _zeros(model):
  # Shapes only: compiling the random initialisation of a big model costs a minute on a CPU, and
  # every value is replaced by the import anyway.
  shapes = jax.eval_shape(model.init, jax.random.key(0))
  return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


def _rel_err(a, b):
  return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("name", NAMES)
def test_port_matches_reference_fixture(name):
  fx = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "models", f"{name}.npz"))
  shapes = {k: tuple(v) for k, v in json.loads(str(fx["shapes"])).items()}
  model = models.get(name)
  variables = _zeros(model)
  assert models.count_params(variables["params"]) == int(fx["n_params"])
  # The import checks that the key sets and shapes agree exactly (else WeightImportError).
  variables = torch_import.import_torch(
      variables, torch_import.deterministic_state_dict(shapes), model.rename)
  x = _input(int(fx["image_size"]))
  y = jax.jit(lambda v, x: model.apply(v, x))(variables, np.transpose(x, (0, 2, 3, 1)))
  assert y.shape == fx["logits"].shape
  assert _rel_err(y, fx["logits"]) <= 1e-4


@pytest.mark.torch
@pytest.mark.parametrize("name", NAMES)
def test_port_matches_reference_live(name):
  torch = pytest.importorskip("torch")
  from tests.reference import builders
  build, _ = builders()[name]
  torch.manual_seed(1)
  net = build().eval()
  sd = {k: v.numpy() for k, v in net.state_dict().items()}
  model = models.get(name)
  variables = torch_import.import_torch(_zeros(model), sd, model.rename)
  assert models.count_params(variables["params"]) == sum(p.numel() for p in net.parameters())
  x = _input(224, batch=2, seed=1)
  with torch.no_grad():
    ref = net(torch.from_numpy(x)).double().numpy()
  y = jax.jit(lambda v, x: model.apply(v, x))(variables, np.transpose(x, (0, 2, 3, 1)))
  assert _rel_err(y, ref) <= 1e-4
