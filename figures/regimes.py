"""Lazy and rich regimes (appendix A.1): change magnitude against the initial weight scale c.

    python -m figures.regimes runs/regimes/results.json --out=figures/fig_regimes.png

Reads the results file written by `experiments.regimes`; one panel per (init kind, N), one colour
per potential. Markers: median exact magnitude (Eq. 8/13) over converged seeds, bars: their range;
dashed: the linearised prediction (B) of A.1; dotted: the p-norms' c -> 0 asymptote (R), where it
exceeds 1; a red
cross marks each solve that did not converge. The horizontal line M = 1 is the lazy/rich boundary.
Writes a PNG and a PDF beside each other.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from figures import _common  # noqa: E402

COLORS = {"negative_entropy": "#0072B2", "1.5-norm": "#CC79A7", "2-norm": "#009E73",
          "3-norm": "#D55E00"}
FALLBACK = ("#E69F00", "#56B4E9", "#F0E442", "#000000")
TITLES = {"constant": "constant $w_0 = c$",
          "lognormal": "log-normal $|w_0|$, mean $c$, random sign"}


def _label(name: str) -> str:
  return "negative entropy" if name == "negative_entropy" else name


def _nan(x) -> np.ndarray:
  return np.array(x, dtype=np.float64)  # null (missing) -> NaN


def plot(res: dict, out: str) -> list[str]:
  inits, ns = list(res["init_kinds"]), list(res["num_data"])
  scales, curve = _nan(res["init_scales"]), _nan(res["curve_scales"])
  fig, axes = plt.subplots(len(inits), len(ns), figsize=(4.3 * len(ns), 3.7 * len(inits)),
                           sharex=True, sharey=True, squeeze=False)
  finite = [1.0]
  for row, init in zip(axes, inits):
    for j, (ax, n) in enumerate(zip(row, ns)):
      for k, name in enumerate(res["potentials"]):
        r = res[init][name]
        color = COLORS.get(name, FALLBACK[k % len(FALLBACK)])
        mag = _nan(r["magnitude"][j])  # [c][seed]
        ok = np.asarray(r["converged"][j], bool) & np.isfinite(mag)
        med = _nan(r["magnitude_median"][j])
        lo = np.array([m[o].min() if o.any() else np.nan for m, o in zip(mag, ok)])
        hi = np.array([m[o].max() if o.any() else np.nan for m, o in zip(mag, ok)])
        ax.errorbar(scales, med, yerr=[med - lo, hi - med], fmt="o", ms=4, color=color,
                    capsize=2, label=_label(name))
        bad = ~ok
        if bad.any():
          c_bad = np.broadcast_to(scales[:, None], mag.shape)[bad]
          ax.plot(c_bad, np.where(np.isfinite(mag[bad]), mag[bad], 1.0), "x", color="red",
                  ms=7, mew=2, label=None)
        ax.plot(curve, _nan(r["bound_curve"][j]), "--", color=color, lw=1.3)
        if r["rich_curve"] is not None:  # an asymptote for c -> 0: drawn on the rich side only
          rich = _nan(r["rich_curve"][j])
          ax.plot(curve, np.where(rich >= 1, rich, np.nan), ":", color=color, lw=1.5)
        finite += list(med[np.isfinite(med)])
      ax.axhline(1.0, color="black", lw=1, alpha=0.6)
      if init == "constant" and curve.min() < 1 / math.e < curve.max():
        ax.axvline(1 / math.e, color="gray", lw=0.8, ls="-.", alpha=0.6)
      ax.set_xscale("log")
      ax.set_yscale("log")
      ax.grid(alpha=0.3, which="major")
      ax.set_title(f"{TITLES.get(init, init)}\nN = {n}, D = {res['dim']}", fontsize=10)
      if row is axes[-1]:
        ax.set_xlabel("initial weight scale $c$")
      if j == 0:
        ax.set_ylabel(r"$\|\nabla\phi(w^*) - \nabla\phi(w_0)\| \,/\, \|\nabla\phi(w_0)\|$")
  # the curves diverge (1/c, c^-(p-1), NE at c = 1/e): keep the measured range in view
  lo, hi = min(finite), max(finite)
  axes[0][0].set_ylim(lo / 3, hi * 3)
  handles, labels = axes[0][0].get_legend_handles_labels()
  extra = [plt.Line2D([], [], color="gray", ls="--"), plt.Line2D([], [], color="gray", ls=":"),
           plt.Line2D([], [], color="black", alpha=0.6),
           plt.Line2D([], [], color="red", marker="x", ls="", mew=2)]
  extra_labels = ["A.1 lazy prediction (B)", "p-norm rich asymptote (R)",
                  "M = 1: lazy below, rich above", "did not converge"]
  fig.legend(handles + extra, labels + extra_labels, loc="lower center",
             ncol=min(4, len(handles) + len(extra)), frameon=False, fontsize=9)
  n_fail = len(res.get("failures", []))
  note = ("\ndash-dot: $c = 1/e$, where negative entropy's $f'(c) = 0$" if "constant" in inits
          else "")
  fig.suptitle(f"Lazy vs rich: exact dual-change magnitude (Eq. 8/13), "
               f"{res['config']['num_seeds']} seeds, {n_fail} non-converged solve(s){note}",
               fontsize=10)
  n_legend_rows = math.ceil((len(handles) + len(extra)) / 4)
  fig.tight_layout(rect=(0, 0.035 * n_legend_rows + 0.02, 1, 0.95))
  return _common.save(fig, out, dpi=150)


def main(argv=None):
  _common.main(plot, __doc__, "runs/regimes/results.json", "figures/fig_regimes.png",
               ("python -m experiments.regimes "
                "--config=configs/regimes.py "
                "--workdir=runs/regimes"), argv)


if __name__ == "__main__":
  main()
