"""Fig. 4A/B: Gaussianity of the dual change after finetuning deep networks.

    python -m figures.finetune runs/finetune/results.json [more results.json ...] \
        --out=figures/fig4_finetune.png

A: Delta-CDF of the dual change under the trained potential itself (psi = phi) against the
number of analysed weights D, one line per trained potential, one point per architecture (mean
and the range over seeds). B: Delta-CDF against the hypothesised potential psi, one panel per
architecture, one line per trained potential (mean +- std over seeds). First row: the paper's
pooled statistic; second row: the same after per-unit scales (each layer's change divided by its
rank-1 scale a_i b_j, mdgeom.scales). Several results files (e.g. one per config) are merged;
reads the files written by `experiments.finetune`.
"""

from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from figures import _common  # noqa: E402
from mdgeom import potentials, results  # noqa: E402

COLORS = {"negative_entropy": "#0072B2", "2-norm": "#009E73", "3-norm": "#D55E00"}


def values(xs):
  return np.array([np.nan if v is None else v for v in xs], float)


def merge(runs: list[dict]) -> dict:
  """One results dict from several runs (architectures of later files override earlier ones)."""
  out = {"architectures": [], "trained_potentials": [], "hypothesized_potentials": None}
  for r in runs:
    if out["hypothesized_potentials"] is None:
      out["hypothesized_potentials"] = r["hypothesized_potentials"]
    elif r["hypothesized_potentials"] != out["hypothesized_potentials"]:
      raise ValueError("results files with different hypothesised potentials cannot be merged.")
    for t in r["trained_potentials"]:
      if t not in out["trained_potentials"]:
        out["trained_potentials"].append(t)
    for a in r["architectures"]:
      if a not in out["architectures"]:
        out["architectures"].append(a)
    for key in ("n_weights", "n_data", "delta_cdf", "train_accuracy"):
      out.setdefault(key, {}).update(r[key])
    if "delta_cdf_units" in r:  # (results written before per-unit scales existed lack it)
      out.setdefault("delta_cdf_units", {}).update(r["delta_cdf_units"])
    out.setdefault("seeds_share_images", {}).update(r.get("seeds_share_images", {}))
  if set(out.get("delta_cdf_units", {})) != set(out["architectures"]):
    out.pop("delta_cdf_units", None)
  return out


STATISTICS = (("delta_cdf", "the paper's statistic (pooled)"),
              ("delta_cdf_units", "after per-unit scales"))


def draw(res: dict, title: str = ""):
  """The figure as (fig, axes): panels A and B for the paper's statistic (first row) and, when the
  results have it, for the statistic after per-unit scales (second row)."""
  archs = sorted(res["architectures"], key=lambda a: res["n_weights"][a])
  hyp = res["hypothesized_potentials"]
  trained = res["trained_potentials"]
  stats_ = [(k, what) for k, what in STATISTICS if k in res]
  ncols = len(archs) + 1
  fig, axes = plt.subplots(len(stats_), ncols, figsize=(3.6 * ncols, 3.6 * len(stats_)),
                           squeeze=False)
  for row, (key, what) in zip(axes, stats_):
    ax = row[0]
    for t in trained:
      d = [res["n_weights"][a] for a in archs if t in res[key][a]]
      vals = [values(res[key][a][t][t]) for a in archs if t in res[key][a]]
      mean = np.array([np.nanmean(v) for v in vals])
      lo = mean - np.array([np.nanmin(v) for v in vals])
      hi = np.array([np.nanmax(v) for v in vals]) - mean
      ax.errorbar(d, mean, yerr=[lo, hi], marker="o", lw=1.5, capsize=3, color=COLORS.get(t),
                  label=f"trained: {t.replace('_', ' ')}")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # (they overlap)
    ax.set_xlabel("analysed weights D")
    ax.set_ylabel(r"$\Delta$CDF under the trained potential" + f"\n({what})")
    ax.set_title("A" if key == "delta_cdf" else "A, per-unit scales")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    x = np.arange(len(hyp))
    for ax, a in zip(row[1:], archs):
      v = np.zeros((len(hyp), 0))
      for t in trained:
        if t not in res[key][a]:
          continue
        v = np.array([values(res[key][a][t][h]) for h in hyp])
        mean, std = np.nanmean(v, 1), np.nanstd(v, 1)
        ax.plot(x, mean, marker="o", lw=1.5, color=COLORS.get(t))
        ax.fill_between(x, mean - std, mean + std, alpha=0.25, color=COLORS.get(t))
      ax.set_xticks(x, [potentials.short_label(h) for h in hyp])
      ax.set_xlabel(r"hypothesised potential $\psi$")
      # (seeds on the whole pool share their images: the band is then no sampling spread)
      same = ("\nthe seeds share their N images"
              if res.get("seeds_share_images", {}).get(a) else "")
      ax.set_title(f"B: {a} (D={res['n_weights'][a]:,}, N={res['n_data'][a]}, {v.shape[1]} "
                   f"seeds){same}" if key == "delta_cdf" else f"B: {a}, per-unit scales",
                   fontsize=9)
      ax.set_ylim(bottom=0)
      ax.grid(alpha=0.3)
    row[1].set_ylabel(r"$\Delta$CDF of $\nabla\psi(w) - \nabla\psi(w_0)$")
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return fig, axes


def plot(res: dict, out: str, title: str = "") -> list[str]:
  """Draws `res` and writes it as PNG and PDF next to `out`."""
  fig, _ = draw(res, title)
  return _common.save(fig, out, dpi=150)


def annotate(axes, res: dict, heading: str, value) -> None:
  """Writes `heading` and one line per trained potential, `value(arch, trained) -> str or None`,
  into each B panel (e.g. sign-flip counts, final losses)."""
  archs = sorted(res["architectures"], key=lambda a: res["n_weights"][a])
  for ax, arch in zip(axes[0][1:], archs):
    lines = [f"{potentials.short_label(t)}: {v}" for t in res["trained_potentials"]
             if (v := value(arch, t)) is not None]
    if lines:
      ax.text(0.5, 0.97, heading + "\n" + "\n".join(lines), ha="center", va="top", fontsize=7,
              transform=ax.transAxes, bbox=dict(facecolor="white", alpha=0.8, lw=0))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("results", nargs="*", default=["runs/finetune/results.json"])
  parser.add_argument("--out", default="figures/fig4_finetune.png")
  args = parser.parse_args(argv)
  runs = []
  for path in args.results:
    if not os.path.exists(path):
      raise SystemExit(f"no results file at {path}: run `python -m experiments.finetune "
                       "--config=configs/resnet.py --workdir=runs/finetune` first.")
    runs.append(results.read_json(path))
  for path in plot(merge(runs), args.out):
    print(f"wrote {path}")


if __name__ == "__main__":
  main()
