"""What the figure scripts share: saving PNG + PDF, and the command line (results file, --out)."""

from __future__ import annotations

import argparse
import os
from typing import Callable

from mdgeom import results


def save(fig, out: str, dpi: int = 150) -> list[str]:
  """Writes `fig` as PNG and PDF next to each other (the extension of `out` is replaced)."""
  import matplotlib.pyplot as plt

  stem, _ = os.path.splitext(out)
  written = []
  for ext in (".png", ".pdf"):
    path = stem + ext
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    written.append(path)
  plt.close(fig)
  return written


def main(plot: Callable[[dict, str], list[str]], doc: str, default_results: str,
         default_out: str, run_command: str, argv=None) -> None:
  """`python -m figures.X [RESULTS] [--out PATH]`: draws `plot` from a results file."""
  parser = argparse.ArgumentParser(description=doc.splitlines()[0])
  parser.add_argument("results", nargs="?", default=default_results)
  parser.add_argument("--out", default=default_out)
  args = parser.parse_args(argv)
  if not os.path.exists(args.results):
    raise SystemExit(f"no results file at {args.results}: run `{run_command}` first.")
  for path in plot(results.read_json(args.results), args.out):
    print(f"wrote {path}")
