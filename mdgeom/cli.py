"""The `mdgeom` console script: `mdgeom <command> ...` (also `python -m mdgeom <command> ...`).

Commands:
  infer   rank candidate geometries for weights before and after learning (mdgeom.infer)
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

USAGE = """usage: mdgeom <command> [args]

commands:
  infer BEFORE AFTER   rank candidate geometries of plasticity by the Gaussianity of the dual
                       change (mdgeom infer --help)
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(USAGE, end="")
    return 0 if argv else 2
  command, rest = argv[0], argv[1:]
  if command == "infer":
    from mdgeom import infer  # imported here: `mdgeom --help` stays fast

    return infer.main(rest)
  print(f"mdgeom: unknown command {command!r}\n{USAGE}", file=sys.stderr, end="")
  return 2


if __name__ == "__main__":
  sys.exit(main())
