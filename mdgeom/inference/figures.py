"""Figures of an inference (`plot_inference`) and of an experiment design (`plot_design`).

Matplotlib, written as PNG (and PDF when the path asks for it). Candidates are drawn where they
live: the p-norm scan against p, hypentropy against beta on its own (log) axis, negative entropy
as a reference line across both (it is the p -> 1 and beta -> 0 limit, not a point on either
axis), other potentials by name.
"""

from __future__ import annotations

import os

import numpy as np

COLORS = {"best": "#D55E00", "indistinguishable": "#E69F00", "worse": "#0072B2",
          "ruled out": "0.55", "degenerate": "#009E73", "unusable": "0.75"}


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
  fig.savefig(path, dpi=130)
  return path


def _family_panel(ax, rows, key, xlabel, log_x, ne, value):
  rows = sorted(rows, key=lambda r: r[key])
  x = np.array([r[key] for r in rows])
  y = np.array([r[value] for r in rows], np.float64)
  ax.plot(x, y, "-", color="0.6", lw=1, zorder=1)
  if value == "delta_cdf":
    lo = np.array([np.nan if r["ci"] is None else r["ci"][0] for r in rows], np.float64)
    hi = np.array([np.nan if r["ci"] is None else r["ci"][1] for r in rows], np.float64)
    ax.fill_between(x, lo, hi, color="0.85", lw=0, zorder=0, label="95% interval")
  for status, color in COLORS.items():
    sel = [i for i, r in enumerate(rows) if r["status"] == status]
    if sel:
      ax.scatter(x[sel], y[sel], s=22 if status != "best" else 60, color=color, zorder=3,
                 label=status, marker="*" if status == "best" else "o")
  if ne is not None and np.isfinite(ne[value]):
    ax.axhline(ne[value], color=COLORS.get(ne["status"], "k"), ls="--", lw=1.2,
               label=f"negative entropy ({ne['status']})")
  if log_x:
    ax.set_xscale("log")
  ax.set_xlabel(xlabel)
  ax.grid(alpha=0.3)


def plot_inference(res, path: str) -> str:
  """The figure of an inference: `plot_model` for the measurement model, else the Delta-CDF
  method's candidates with intervals and statuses, and the best candidate's change."""
  if getattr(res, "method", "") == "model":
    return plot_model(res, path)
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from scipy import stats

  rows = res.ranking
  noisy = bool(res.settings["noise"])
  value = "score" if noisy else "delta_cdf"
  ylabel = ("calibration score |z| (0 = typical)" if noisy else
            r"$\Delta$CDF of the dual change")
  pn = [r for r in rows if r["family"] == "pnorm" and np.isfinite(r[value])]
  hy = [r for r in rows if r["family"] == "hypentropy" and np.isfinite(r[value])]
  other = [r for r in rows if r["family"] == "other" and np.isfinite(r[value])]
  ne = next((r for r in rows if r["family"] == "negative_entropy"), None)
  panels = ["p"] * bool(pn) + ["h"] * bool(hy) + ["o"] * bool(other) + ["change"]
  widths = {"p": 1.6, "h": 1.0, "o": 0.8, "change": 1.0}
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * sum(widths[p] for p in panels) / 1.1,
                                                    4.2),
                           gridspec_kw={"width_ratios": [widths[p] for p in panels]})
  axes = np.atleast_1d(axes)
  for ax, kind in zip(axes, panels):
    if kind == "p":
      _family_panel(ax, pn, "p", "p of the p-norm", False, ne, value)
      ax.set_ylabel(ylabel)
      if res.p_interval is not None:
        ax.axvspan(*res.p_interval, color=COLORS["indistinguishable"], alpha=0.12, lw=0)
      ax.set_title(f"p-norms (best p = {res.p_estimate:g})" if res.p_estimate else "p-norms")
      ax.legend(fontsize=7, loc="upper center")
    elif kind == "h":
      _family_panel(ax, hy, "beta", r"hypentropy $\beta$ (weight units)", True, ne, value)
      ax.set_title("hypentropy")
    elif kind == "o":
      names = [r["name"] for r in other]
      ax.barh(range(len(other)), [r[value] for r in other],
              color=[COLORS.get(r["status"], "k") for r in other])
      ax.set_yticks(range(len(other)), names, fontsize=8)
      ax.set_xlabel(ylabel)
      ax.set_title("other candidates")
    else:
      d = np.asarray(res.change, np.float64) if res.change is not None else np.array([])
      d = d[np.isfinite(d)]
      if d.size > 1:
        z = d if noisy else ((d - d.mean()) if res.settings["center"] else d) / np.std(d, ddof=1)
        ax.hist(z, bins=60, range=(-5, 5), density=True, color="#CC79A7", alpha=0.75,
                label="standardised change")
        t = np.linspace(-5, 5, 400)
        ax.plot(t, stats.norm.pdf(t), "k", lw=1.4, label="N(0, 1)")
        ax.legend(fontsize=7)
      ax.set_xlim(-5, 5)
      ax.set_title(f"best: {res.best}", fontsize=10)
  import textwrap

  fig.suptitle(textwrap.fill(res.summary, 200), fontsize=8)
  fig.tight_layout()
  out = _save(fig, path)
  plt.close(fig)
  return out


def plot_model(res, path: str) -> str:
  """The measurement model: the profile likelihood-ratio of p (the interval where it is below
  the chi-square quantile; negative entropy, the 2- and 3-norm marked with their statuses), of
  hypentropy's beta when fitted, and the best model's standardised change against N(0, 1)."""
  import matplotlib

  matplotlib.use("Agg")
  import textwrap

  import matplotlib.pyplot as plt
  from scipy import stats

  fams = [k for k in ("pnorm", "hypentropy") if k in res.profile]
  panels = fams + ["change"]
  fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.0))
  axes = np.atleast_1d(axes)
  for ax, kind in zip(axes, panels):
    if kind == "change":
      r = np.asarray(res.change, np.float64) if res.change is not None else np.array([])
      r = r[np.isfinite(r)]
      if r.size > 1:
        ax.hist(r, bins=60, range=(-5, 5), density=True, color="#CC79A7", alpha=0.75,
                label="standardised change")
        t = np.linspace(-5, 5, 400)
        ax.plot(t, stats.norm.pdf(t), "k", lw=1.4, label="N(0, 1)")
        ax.legend(fontsize=7)
      ax.set_xlim(-5, 5)
      ax.set_xlabel("(change - drift) / predicted SD")
      ax.set_title(f"best: {res.best}", fontsize=10)
      continue
    prof = res.profile[kind]
    theta = np.asarray(prof["theta"])
    lr = 2.0 * (prof["loglik_hat"] - np.asarray(prof["loglik"])) / prof["kappa"]
    exact = np.asarray(prof["exact"], bool)
    x = theta + 1.0 if kind == "pnorm" else np.exp(theta)
    keep = np.isfinite(lr)
    ax.plot(x[keep], np.maximum(lr[keep], 0), "-", color="0.6", lw=1)
    ax.scatter(x[keep & exact], np.maximum(lr[keep & exact], 0), s=14, color="0.2", zorder=3,
               label="exact fits")
    ax.axhline(prof["critical"], color="k", ls=":", lw=1,
               label=f"{100 * (1 - res.level):g}% threshold")
    if kind == "pnorm" and res.p_interval is not None:
      ax.axvspan(*res.p_interval, color=COLORS["indistinguishable"], alpha=0.15, lw=0,
                 label="p interval")
      for r in res.rows:
        if r.family == "pnorm" and not r.estimate and r.p in (1.0, 2.0, 3.0):
          ax.axvline(r.p, color=COLORS.get(r.status, "k"), ls="--", lw=1.2,
                     label=f"{r.label}: {r.status}")
      ax.set_xlabel("p (1: negative entropy)")
    else:
      ax.set_xscale("log")
      ax.set_xlabel(r"hypentropy $\beta$ (weight units)")
    top = np.nanmax(np.maximum(lr[keep], 0)) if keep.any() else 1.0
    ax.set_ylim(-0.02 * min(top, 50), min(top, 50) * 1.05 + 1)
    ax.set_ylabel("likelihood ratio / kappa")
    ax.set_title("p-norms" if kind == "pnorm" else "hypentropy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.suptitle(textwrap.fill(res.summary, 180), fontsize=8)
  fig.tight_layout()
  out = _save(fig, path)
  plt.close(fig)
  return out


def plot_design(des, path: str) -> str:
  """Power against the number of synapses, one panel per true geometry, a line per noise level."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from mdgeom import potentials
  from mdgeom.inference import candidates as cands

  power = np.asarray(des.power)  # [noise, n, true]
  fig, axes = plt.subplots(1, len(des.true_potentials), figsize=(3.6 * len(
      des.true_potentials), 3.4), sharey=True)
  axes = np.atleast_1d(axes)
  cmap = plt.get_cmap("viridis")
  for k, (ax, t) in enumerate(zip(axes, des.true_potentials)):
    for i, s in enumerate(des.noise):
      ax.plot(des.n_synapses, power[i, :, k], "-o", ms=4,
              color=cmap(i / max(1, len(des.noise) - 1)), label=f"noise {100 * s:g}%")
    ax.axhline(des.settings["target"], color="0.4", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("synapses measured")
    ax.set_title(f"true: {cands.label(potentials.get(t))}")
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("P(true geometry identified)")
  axes[-1].legend(fontsize=8)
  fig.tight_layout()
  out = _save(fig, path)
  plt.close(fig)
  return out
