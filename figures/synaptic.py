"""Fig. 5: spine volumes (MICrONS L2/3) against the negative-entropy, 3-norm and 2-norm models.

    python -m figures.synaptic runs/synaptic/results.json --out=figures/fig5_synaptic.png

Reads the results file of `experiments.synaptic_data` and the data file named in its config;
draws the log-volume histogram with each fitted model's density (A: negative entropy, B: 3-norm,
C: Euclidean). Writes a PNG and a PDF.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from figures import _common  # noqa: E402
from mdgeom import synaptic  # noqa: E402

DATA_COLOR = "#F4A6C6"
TITLES = {"negative_entropy": "A  negative entropy (w0: two constants)",
          "3-norm": "B  3-norm (w0: constant or log-normal)",
          "2-norm": "C  2-norm, Euclidean (same w0 family)"}
COLORS = {"negative_entropy": "#0072B2", "3-norm": "#D55E00", "2-norm": "#009E73"}


def model_logpdf(name: str, m: dict, z):
  if name == "negative_entropy":
    return synaptic.mixture_logpdf(z, m["w0_probs"][0], np.asarray(m["log_w0"]),
                                   m["dual_change_std"])
  return synaptic.pnorm_model_logpdf(z, m["p"], m["pi_constant"], m["constant"],
                                     m["lognormal_mu"], m["lognormal_sigma"],
                                     m["dual_change_std"])[0]


def plot(res: dict, out: str) -> list[str]:
  cfg = res["config"]
  x = np.log(synaptic.load_spine_volumes(cfg["data_path"], cfg["column"], cfg["expected_rows"]))
  z = np.linspace(x.min() - 0.5, x.max() + 0.5, 600)
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
  for ax, name in zip(axes, ("negative_entropy", "3-norm", "2-norm")):
    m = res["models"][name]
    ax.hist(x, bins=60, density=True, color=DATA_COLOR, label=f"data (n = {x.size})")
    ax.plot(z, np.exp(model_logpdf(name, m, z)), color=COLORS[name], lw=2.5, label="model")
    b = res["models"]["lognormal_baseline"]
    ax.plot(z, np.exp(-0.5 * ((z - b["mu"]) / b["sigma"]) ** 2) / (b["sigma"] * np.sqrt(2 * np.pi)),
            "k:", lw=1, label="one log-normal")
    ax.set_title(TITLES[name], fontsize=10)
    ax.text(0.02, 0.97, f"loglik/synapse {m['loglik_per_synapse']:.3f}\nKS {m['ks']:.3f} "
            f"(p = {m['ks_p_value']:.2g})\n$\\Delta$CDF {m['delta_cdf']:.3f}",
            transform=ax.transAxes, va="top", fontsize=8)
    ax.set_xlabel(r"log spine volume, $\ln(\mu m^3)$")
    ax.legend(fontsize=8, loc="upper right")
  axes[0].set_ylabel("density")
  fig.tight_layout()
  return _common.save(fig, out, dpi=150)


def main(argv=None):
  _common.main(plot, __doc__, "runs/synaptic/results.json", "figures/fig5_synaptic.png",
               "python -m experiments.synaptic_data --config=configs/synaptic.py "
               "--workdir=runs/synaptic", argv)


if __name__ == "__main__":
  main()
