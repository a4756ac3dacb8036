"""The `mdgeom` console script: `mdgeom <command> ...` (also `python -m mdgeom <command> ...`).

Commands:
  infer   which geometry explains weights before and after learning (mdgeom.inference)
  design  how many synapses an experiment needs to tell geometries apart

Compiled XLA programs are kept in a persistent cache, so that a second run skips most of the
compilation (about 20 s of a first run on 2 cores): $MDGEOM_CACHE_DIR, default
~/.cache/mdgeom/jax; MDGEOM_CACHE_DIR=none turns it off.
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

USAGE = """usage: mdgeom <command> [args]

commands:
  infer BEFORE AFTER   which geometry of plasticity explains weights measured before and after
                       learning (mdgeom infer --help)
  design               how many synapses an experiment must measure to identify the geometry,
                       by simulation (mdgeom design --help)
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(USAGE, end="")
    return 0 if argv else 2
  command, rest = argv[0], argv[1:]
  if command in ("infer", "design"):
    _compilation_cache()
    from mdgeom.inference import cli  # imported here: `mdgeom --help` stays fast

    return cli.infer_main(rest) if command == "infer" else cli.design_main(rest)
  print(f"mdgeom: unknown command {command!r}\n{USAGE}", file=sys.stderr, end="")
  return 2


def _compilation_cache() -> None:
  """Turns on JAX's persistent compilation cache for the command (not for library users, whose
  JAX configuration is theirs); a directory that cannot be made leaves it off."""
  path = os.environ.get("MDGEOM_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache",
                                                          "mdgeom", "jax"))
  if path.strip().lower() in ("", "none", "off", "0"):
    return
  try:
    os.makedirs(path, exist_ok=True)
  except OSError:
    return
  import jax

  if not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


if __name__ == "__main__":
  sys.exit(main())
