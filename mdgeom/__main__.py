"""`python -m mdgeom <command> ...`, the same as the `mdgeom` console script."""

import sys

from mdgeom.cli import main

sys.exit(main())
