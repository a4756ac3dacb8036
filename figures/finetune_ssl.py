"""Fig. 7B: Gaussianity of the encoder's dual change after finetuning SimSiam with its own loss.

    python -m figures.finetune_ssl runs/finetune_ssl/results.json --out=figures/fig7b_simsiam.png

`figures.finetune`'s panels for the results of `experiments.finetune_ssl`: A, Delta-CDF under the
trained potential against D (the encoder's conv weights); B, Delta-CDF against the hypothesised
potential. The B panel lists the final SimSiam loss of each trained potential (there is no
accuracy).
"""

from __future__ import annotations

import numpy as np

from figures import _common
from figures import finetune
from mdgeom import potentials

TITLE = "Fig. 7B: SimSiam finetuned with its own loss, encoder conv weights analysed"


def plot(res: dict, out: str) -> list[str]:
  fig, axes = finetune.draw(res, TITLE)
  archs = sorted(res["architectures"], key=lambda a: res["n_weights"][a])
  for ax, arch in zip(axes[0][1:], archs):
    lines = []
    for t in res["trained_potentials"]:
      v = np.array([np.nan if x is None else x for x in res["final_loss"][arch][t]], float)
      if np.any(np.isfinite(v)):
        lines.append(f"{potentials.short_label(t)}: {np.nanmean(v):.3f}")
    if lines:
      ax.text(0.5, 0.97, "final SimSiam loss\n" + "\n".join(lines), ha="center", va="top",
              fontsize=7, transform=ax.transAxes, bbox=dict(facecolor="white", alpha=0.8, lw=0))
  return _common.save(fig, out, dpi=150)


def main(argv=None):
  _common.main(plot, __doc__, "runs/finetune_ssl/results.json", "figures/fig7b_simsiam.png",
               "python -m experiments.finetune_ssl --config=configs/simsiam.py "
               "--workdir=runs/finetune_ssl", argv)


if __name__ == "__main__":
  main()
