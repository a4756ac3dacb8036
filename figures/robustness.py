"""Fig. 3B: Delta-CDF of the dual change against the hypothesised potential, per true potential.

    python -m figures.robustness runs/robustness/results.json --out=figures/fig3b_robustness.png

Reads the results file written by `experiments.robustness`; writes a PNG and a PDF beside it.
"""

from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mdgeom import results  # noqa: E402

COLORS = {"negative_entropy": "#0072B2", "2-norm": "#009E73", "3-norm": "#D55E00"}
TITLES = {"gaussian": "Gaussian initialisation", "lognormal": "log-normal initialisation"}


def _label(name: str) -> str:
  return "NE" if name == "negative_entropy" else name.replace("-norm", "")


def plot(res: dict, out: str) -> list[str]:
  inits = list(res["config"]["initializations"])
  hyp = res["hypothesized_potentials"]
  fig, axes = plt.subplots(1, len(inits), figsize=(5.5 * len(inits), 4.2), sharey=True,
                           squeeze=False)
  x = np.arange(len(hyp))
  for ax, init in zip(axes[0], inits):
    r = res[init]
    for t, mean, std in zip(res["true_potentials"], r["delta_cdf_mean"], r["delta_cdf_std"]):
      mean, std = np.asarray(mean), np.asarray(std)
      color = COLORS.get(t)
      ax.plot(x, mean, lw=2, color=color, label=f"true: {t.replace('_', ' ')}")
      ax.fill_between(x, mean - std, mean + std, alpha=0.3, color=color)
    ax.set_xticks(x, [_label(h) for h in hyp], rotation=90 if len(hyp) > 8 else 0)
    ax.set_xlabel(r"hypothesised potential $\psi$ (p of the p-norm; NE = negative entropy)")
    ax.set_title(f"{TITLES.get(init, init)} ({res['config']['num_seeds']} seeds)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel(r"$\Delta$CDF of $\nabla\psi(w) - \nabla\psi(w_0)$")
  axes[0][0].legend(loc="upper center")
  fig.tight_layout()
  stem, _ = os.path.splitext(out)
  written = []
  for ext in (".png", ".pdf"):
    path = stem + ext
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=150)
    written.append(path)
  plt.close(fig)
  return written


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("results", nargs="?", default="runs/robustness/results.json")
  parser.add_argument("--out", default="figures/fig3b_robustness.png")
  args = parser.parse_args(argv)
  if not os.path.exists(args.results):
    raise SystemExit(f"no results file at {args.results}: run `python -m experiments.robustness "
                     "--config=configs/robustness.py --workdir=runs/robustness` first.")
  for path in plot(results.read_json(args.results), args.out):
    print(f"wrote {path}")


if __name__ == "__main__":
  main()
