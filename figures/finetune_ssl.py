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

TITLE = "Fig. 7B: SimSiam finetuned with its own loss, encoder conv weights analysed"


def plot(res: dict, out: str) -> list[str]:
  fig, axes = finetune.draw(res, TITLE)

  def final_loss(arch, trained):
    v = finetune.values(res["final_loss"][arch][trained])
    return f"{np.nanmean(v):.3f}" if np.any(np.isfinite(v)) else None

  finetune.annotate(axes, res, "final SimSiam loss", final_loss)
  return _common.save(fig, out, dpi=150)


def main(argv=None):
  _common.main(plot, __doc__, "runs/finetune_ssl/results.json", "figures/fig7b_simsiam.png",
               "python -m experiments.finetune_ssl --config=configs/simsiam.py "
               "--workdir=runs/finetune_ssl", argv)


if __name__ == "__main__":
  main()
