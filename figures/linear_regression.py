"""Fig. 6 (and 3A): Delta-CDF and magnitude of the dual change against width, linear regression.

    python -m figures.linear_regression runs/linreg/results.json --out=figures/fig6_linear_regression.png

Rows: trained potential; columns: (Delta-CDF, magnitude) for each input-correlation power c.
Lines: median over the converged seeds (final loss below the target; the others are flagged in
the results and left out here) for N = D^0.5 and N = D^0.75, bands: 5-95% quantiles; dashed: the
exact (closed-form) solution's Delta-CDF where computed.
"""

from __future__ import annotations


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from figures import _common  # noqa: E402

COLORS = {0.5: "#D55E00", 0.75: "#0072B2"}


def _band(values, keep=None):
  keep = [True] * len(values) if keep is None else keep
  v = np.asarray([x for x, k in zip(values, keep) if x is not None and k], np.float64)
  if v.size == 0:
    return np.nan, np.nan, np.nan
  return np.quantile(v, 0.5), np.quantile(v, 0.05), np.quantile(v, 0.95)


def plot(res: dict, out: str) -> list[str]:
  cells = res["cells"]
  pots = list(dict.fromkeys(c["potential"] for c in cells))
  powers = sorted({c["corr_power"] for c in cells})
  n_ds = sorted({c["n_d"] for c in cells})
  fig, axes = plt.subplots(len(pots), 2 * len(powers),
                           figsize=(8 * len(powers), 2.8 * len(pots)), squeeze=False, sharex=True)
  for r, pot in enumerate(pots):
    for k, c in enumerate(powers):
      ax_d, ax_m = axes[r, 2 * k], axes[r, 2 * k + 1]
      for a in n_ds:
        sel = sorted((x for x in cells if x["potential"] == pot and x["corr_power"] == c
                      and x["n_d"] == a), key=lambda x: x["width"])
        if not sel:
          continue
        widths = [x["width"] for x in sel]
        for ax, key in ((ax_d, "delta_cdf"), (ax_m, "magnitude")):
          # seeds above the loss target (flagged in the results) are left out of the bands
          med, lo, hi = np.array([_band(x[key], x["converged"]) for x in sel]).T
          ax.plot(widths, med, lw=2, color=COLORS.get(a), label=f"$N = D^{{{a}}}$")
          ax.fill_between(widths, lo, hi, alpha=0.3, color=COLORS.get(a))
        cf = np.array([_band(x["closed_form_delta_cdf"])[0] for x in sel])
        if np.isfinite(cf).any():
          ax_d.plot(widths, cf, ls="--", lw=1.5, color=COLORS.get(a),
                    label=f"exact solution, $N = D^{{{a}}}$")
      ax_d.set_title(f"{pot}, c = {c}: $\\Delta$CDF")
      ax_m.set_title(f"{pot}, c = {c}: magnitude")
      for ax in (ax_d, ax_m):
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
  for ax in axes[-1]:
    ax.set_xlabel("width D (number of weights)")
  axes[0, 0].legend(fontsize=7)
  fig.tight_layout()
  return _common.save(fig, out, dpi=120)


def main(argv=None):
  _common.main(plot, __doc__, "runs/linreg/results.json", "figures/fig6_linear_regression.png",
               ("python -m experiments.linear_regression "
                "--config=configs/linear_regression.py "
                "--workdir=runs/linreg"), argv)


if __name__ == "__main__":
  main()
