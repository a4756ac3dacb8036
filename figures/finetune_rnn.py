"""Fig. 7A: Gaussianity of the recurrent weights' dual change after finetuning tanh RNNs.

    python -m figures.finetune_rnn runs/finetune_rnn/results.json --out=figures/fig7a_rnn.png

`figures.finetune`'s panels for the results of `experiments.finetune_rnn` (architectures are the
hidden sizes; D = hidden^2 recurrent weights): A, Delta-CDF under the trained potential against
D; B, Delta-CDF against the hypothesised potential per hidden size. Each B panel lists the sign
flips of the recurrent weights per trained potential: any flip rules negative entropy out.
"""

from __future__ import annotations

import numpy as np

from figures import _common
from figures import finetune

TITLE = "Fig. 7A: tanh RNN on row-wise sequential MNIST, recurrent weights analysed"


def plot(res: dict, out: str) -> list[str]:
  fig, axes = finetune.draw(res, TITLE)

  def flips(arch, trained):
    v = finetune.values(res.get("n_sign_flips", {}).get(arch, {}).get(trained, {})
                         .get("negative_entropy", []))
    return f"{np.nanmean(v):.0f}" if np.any(np.isfinite(v)) else None

  finetune.annotate(axes, res, "sign flips (rule NE out)", flips)
  return _common.save(fig, out, dpi=150)


def main(argv=None):
  _common.main(plot, __doc__, "runs/finetune_rnn/results.json", "figures/fig7a_rnn.png",
               "python -m experiments.finetune_rnn --config=configs/rnn.py "
               "--workdir=runs/finetune_rnn", argv)


if __name__ == "__main__":
  main()
