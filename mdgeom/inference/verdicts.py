"""Verdicts in words: what the data support, grouped the way a scientist reads a scan.

Each candidate carries a status:
  best               the lowest score (Delta-CDF; with measurement noise, the calibration score)
  indistinguishable  in the confidence set of the best at the stated level: the data cannot
                     tell it apart from the best (a paired bootstrap over the same resampled
                     synapses, with the selection of the best accounted for; see
                     `statistic.confidence_set_p_values`)
  worse              outside that set (its p-value says how clearly; the smallest reportable
                     value is 1 / (resamples + 1))
  ruled out          hard evidence only: sign flips or zeros under a sign-preserving potential
  degenerate         its dual change is the same for every synapse (no spread to test)
  unusable           too few synapses with a dual coordinate (e.g. zeros under negative entropy)

A goodness-of-fit p-value (the statistic against its law under a Gaussian change, or against
simulations of the candidate with measurement noise) is reported beside, as a number: at large n
a significant but tiny departure from Gaussianity is the rule, and its size is the Delta-CDF.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STATUSES = ("best", "indistinguishable", "worse", "ruled out", "degenerate", "unusable")


def describe(row: dict) -> str:
  """A candidate in words: "negative entropy", "the 2.5-norm", "hypentropy (beta = 0.01)"."""
  if row["family"] == "negative_entropy":
    return "negative entropy"
  if row["family"] == "pnorm":
    return f"the {row['p']:g}-norm"
  if row["family"] == "hypentropy":
    return f"hypentropy (beta = {row['beta']:.3g})"
  return row["name"]


def group_words(rows: Sequence[dict], p_order: Sequence[float]) -> list[str]:
  """Rows as short phrases, p-norms merged into runs of consecutive scan points
  ("1.1-1.3-norms"), hypentropies into a beta range."""
  words = []
  if any(r["family"] == "negative_entropy" for r in rows):
    words.append("negative entropy")
  ps = sorted(r["p"] for r in rows if r["family"] == "pnorm")
  if ps:
    pos = {p: i for i, p in enumerate(sorted(p_order))}
    runs, start, prev = [], ps[0], ps[0]
    for p in ps[1:]:
      if pos.get(p, -10) == pos.get(prev, -20) + 1:
        prev = p
        continue
      runs.append((start, prev))
      start = prev = p
    runs.append((start, prev))
    for a, b in runs:
      words.append(f"the {a:g}-norm" if a == b else f"{a:g}-{b:g}-norms")
  betas = sorted(r["beta"] for r in rows if r["family"] == "hypentropy")
  if betas:
    words.append(f"hypentropy (beta = {betas[0]:.3g})" if len(betas) == 1 else
                 f"hypentropy (beta {betas[0]:.3g}-{betas[-1]:.3g})")
  words += [r["name"] for r in rows if r["family"] == "other"]
  return words


def _p_text(p: float) -> str:
  return f"p <= {p:.2g}"


def sentence(ranking: Sequence[dict], level: float, p_order: Sequence[float]) -> str:
  """What the data support, e.g. "negative entropy; not distinguishable from it at the 5% level:
  1.1-1.2-norms; worse: 1.25-4-norms, hypentropy (beta 0.1-10) (p <= 0.005)"."""
  by = {s: [r for r in ranking if r["status"] == s] for s in STATUSES}
  parts = []
  if by["degenerate"]:
    parts.append(", ".join(group_words(by["degenerate"], p_order)) +
                 ": a uniform change (the same dual change at every synapse)")
  if by["best"]:
    parts.append(describe(by["best"][0]))
  if by["indistinguishable"]:
    # runs of p include the best, so that "2.75-3.25-norms" is not split around it
    words = group_words(by["indistinguishable"] + by["best"][:1], p_order)
    if by["best"]:
      words = [w for w in words if w != describe(by["best"][0])]
    parts.append(f"not distinguishable from it at the {100 * level:g}% level: " +
                 ", ".join(words))
  if by["worse"]:
    worst_p = max(r["p_worse"] for r in by["worse"])
    parts.append("worse: " + ", ".join(group_words(by["worse"], p_order)) +
                 f" ({_p_text(worst_p)})")
  if by["ruled out"]:
    parts.append("ruled out: " + ", ".join(group_words(by["ruled out"], p_order)) +
                 f" ({by['ruled out'][0]['reason_short']})")
  if by["unusable"]:
    parts.append("not testable: " + ", ".join(group_words(by["unusable"], p_order)))
  return "; ".join(parts) if parts else "no candidate could be evaluated"


def goodness_of_fit_words(row: dict, noise: float, n: int) -> str:
  """The best candidate's absolute fit, reported as a number with what it means."""
  if row["p_value"] is None or not np.isfinite(row["p_value"]):
    return ""
  p = row["p_value"]
  null = ("simulations of this candidate with the measurement noise" if noise else
          "a Gaussian dual change of the same size")
  what = ("consistent with" if p >= 0.05 else
          "a detectable departure from" if row["delta_cdf"] < 0.05 else "clearly unlike")
  tail = ""
  if p < 0.05 and n >= 5000 and row["delta_cdf"] < 0.05:
    tail = (f" (with {n} synapses even small departures are detected; the size of this one is "
            f"the Delta-CDF, {row['delta_cdf']:.3g})")
  return (f"goodness of fit of {describe(row)}: p = {p:.3g} against {null}: {what} it{tail}")
