"""Fig. 3B: Delta-CDF of the dual change against the hypothesised potential, per true potential.

    python -m figures.robustness runs/robustness/results.json --out=figures/fig3b_robustness.png

Reads the results file written by `experiments.robustness`; writes a PNG and a PDF beside it.
"""

from __future__ import annotations


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from figures import _common  # noqa: E402
from mdgeom import potentials  # noqa: E402

COLORS = {"negative_entropy": "#0072B2", "2-norm": "#009E73", "3-norm": "#D55E00"}
TITLES = {"gaussian": "Gaussian initialisation", "lognormal": "log-normal initialisation"}



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
    ax.set_xticks(x, [potentials.short_label(h) for h in hyp], rotation=90 if len(hyp) > 8 else 0)
    ax.set_xlabel(r"hypothesised potential $\psi$ (p of the p-norm; NE = negative entropy)")
    ax.set_title(f"{TITLES.get(init, init)} ({res['config']['num_seeds']} seeds)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel(r"$\Delta$CDF of $\nabla\psi(w) - \nabla\psi(w_0)$")
  axes[0][0].legend(loc="upper center")
  fig.tight_layout()
  return _common.save(fig, out, dpi=150)


def main(argv=None):
  _common.main(plot, __doc__, "runs/robustness/results.json", "figures/fig3b_robustness.png",
               ("python -m experiments.robustness "
                "--config=configs/robustness.py "
                "--workdir=runs/robustness"), argv)


if __name__ == "__main__":
  main()
