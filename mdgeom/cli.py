"""The `mdgeom` console script: `mdgeom <command> ...` (also `python -m mdgeom <command> ...`).

Commands:
  infer   which geometry explains weights before and after learning (mdgeom.inference)
  design  how many synapses an experiment needs to tell geometries apart
"""

from __future__ import annotations

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
    from mdgeom.inference import cli  # imported here: `mdgeom --help` stays fast

    return cli.infer_main(rest) if command == "infer" else cli.design_main(rest)
  print(f"mdgeom: unknown command {command!r}\n{USAGE}", file=sys.stderr, end="")
  return 2


if __name__ == "__main__":
  sys.exit(main())
