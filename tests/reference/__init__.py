"""Reference PyTorch implementations of the model zoo, for the port tests.

Each submodule defines `BUILDERS = {mdgeom_model_name: (build, image_size)}` where `build()`
returns the reference torch module (torchvision's, or the reference package's) with
`num_classes` as in `mdgeom.models.get(name)`. Torch is imported only inside `build`.
`make_model_fixtures.py` turns these into the small committed fixtures the default tests use.
"""

import importlib
import pkgutil


def builders() -> dict:
  out = {}
  for info in pkgutil.iter_modules(__path__):
    mod = importlib.import_module(f"{__name__}.{info.name}")
    out.update(getattr(mod, "BUILDERS", {}))
  return out
