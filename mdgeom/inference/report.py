"""The result of the measurement-model inference, and how it reads.

`ModelInference.table()` prints, ranked by log-likelihood (highest first), one row per geometry:

  log-lik   the maximised log-likelihood of the AFTER measurements given the BEFORE ones, every
            nuisance fitted (a p-norm's value is the profile at that p)
  vs best   its difference from the highest log-likelihood of the table (0 for the best)
  LR        the likelihood-ratio statistic against the best fit of its family, divided by kappa
            (for p-norms: taken at the point within the resolution that is nearest the estimate)
  p-value   the probability of an LR at least this large if this geometry were the one that
            produced the data (chi-square with 1 degree of freedom; across families, Vuong's test)
  status    best / indistinguishable (in the confidence set at the stated level) / worse /
            ruled out (hard evidence: sign flips or zeros under negative entropy) / estimate

and under it the p interval, the nuisances (gain, noise, silent fraction, drift), the goodness of
fit of the best model, a one-sentence verdict that names negative entropy, the 2-norm and the
3-norm with their statuses, and notes. docs/inference.md defines every field.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

STATUSES = ("best", "indistinguishable", "worse", "ruled out", "estimate")


@dataclasses.dataclass
class Row:
  name: str
  label: str
  family: str                # "pnorm" (negative entropy is p = 1), "hypentropy" or "other"
  p: float | None
  beta: float | None
  loglik: float
  lr: float
  p_value: float
  status: str
  reason: str = ""
  estimate: bool = False     # the family's maximum, not a named candidate
  delta: float = 0.0         # loglik - the table's highest

  def __getitem__(self, key):
    return getattr(self, key)


def describe(row: Row) -> str:
  """A candidate in words."""
  if row.family == "pnorm":
    if row.p == 1.0:
      return "negative entropy (p = 1)"
    return f"the {_p(row.p)}-norm" + (" (best p)" if row.estimate else "")
  if row.family == "hypentropy":
    return f"hypentropy (beta = {row.beta:.3g})"
  return row.name


def _p(p: float) -> str:
  return f"{p:.3g}" if abs(p - round(p, 2)) < 5e-4 else f"{p:.3f}"


def interval_text(lo: float, hi: float, open_end: bool = False) -> str:
  """[lo, hi] with enough decimals that the two ends differ ("hi or more" when open)."""
  for digits in (2, 3, 4):
    a, b = f"{lo:.{digits}f}", f"{hi:.{digits}f}"
    if a != b or digits == 4:
      return f"[{a}, {b}" + (" or more]" if open_end else "]")
  return f"[{lo}, {hi}]"


def _pv(p: float) -> str:
  if p is None or not np.isfinite(p):
    return "-"
  if p < 1e-10:
    return "<1e-10"
  return f"{p:.2g}"


def _p_is(p: float) -> str:
  """'p = 0.03' or 'p < 1e-10'."""
  text = _pv(p)
  return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def range_text(lo: float, hi: float, scale: float = 1.0, unit: str = "") -> str:
  """[lo, hi] with enough significant digits that the two ends differ."""
  for digits in (2, 3, 4, 5):
    a, b = f"{scale * lo:.{digits}g}", f"{scale * hi:.{digits}g}"
    if a != b or digits == 5:
      return f"[{a}{unit}, {b}{unit}]"
  return f"[{lo}, {hi}]"


@dataclasses.dataclass
class ModelInference:
  """What `infer_geometry` (method="model") found; `.table()`, `.summary`, `.to_dict()`."""

  best: str
  rows: list
  p_estimate: float | None
  p_interval: list | None            # the reported interval (statistical +- resolution)
  p_interval_statistical: list | None
  resolution: float
  best_family: str
  family_p_values: dict
  kappa: float
  nuisances: dict
  fit: dict
  prep: Any
  level: float
  default_candidates: bool
  leaves: list
  settings: dict
  seconds: float
  profile: dict
  p_open: bool = False               # the interval reaches the end of the p scan (p or more)
  change: Any = dataclasses.field(default=None, repr=False)  # the best model's standardised
  #                                   change per synapse (for the figure)
  method: str = "model"
  summary: str = ""
  notes: list = dataclasses.field(default_factory=list)

  def __post_init__(self):
    self.summary = self._summary()
    self.notes = self._notes()

  # -- compatibility with the Delta-CDF result --------------------------------------------------

  def __getitem__(self, key):
    return getattr(self, key)

  @property
  def ranking(self) -> list[dict]:
    return [dataclasses.asdict(r) for r in self.rows]

  @property
  def n_weights(self) -> int:
    return self.prep.n_used

  @property
  def n_unchanged(self) -> int:
    return self.prep.n_unchanged

  @property
  def n_sign_flips(self) -> int:
    return self.prep.n_flips

  @property
  def n_zeros(self) -> int:
    return self.prep.n_zero

  def row(self, name: str) -> Row:
    for r in self.rows:
      if r.name == name and not r.estimate:
        return r
    for r in self.rows:
      if r.name == name:
        return r
    raise KeyError(f"no candidate {name!r} in this result")

  def status(self, name: str) -> str:
    return self.row(name).status

  # -- text --------------------------------------------------------------------------------------

  def _named(self, p: float) -> Row | None:
    for r in self.rows:
      if r.family == "pnorm" and r.p == p and not r.estimate:
        return r
    return None

  @property
  def change_detected(self) -> bool:
    """Whether the data show a change beyond the gain and the measurement noise."""
    nc = self.nuisances.get("no_change")
    return nc is None or not nc["p_value"] >= self.level

  def _summary(self) -> str:
    parts = []
    if not self.change_detected:
      nc = self.nuisances["no_change"]
      parts.append(f"no change beyond the measurement noise and the gain is detectable "
                   f"({_p_is(nc['p_value'])}; noise {100 * nc['noise']:.2g}%, gain "
                   f"{nc['gain']:.3g}): every geometry fits such data")
    if self.p_estimate is not None and self.p_interval is not None:
      lo, hi = self.p_interval
      parts.append(f"p = {_p(self.p_estimate)}, {100 * (1 - self.level):g}% interval "
                   f"{interval_text(lo, hi, self.p_open)}")
    best = next((r for r in self.rows if r.status == "best"), None)
    if best is not None and not best.estimate:
      parts.append(f"best of the candidates: {describe(best)}")
    for p in (1.0, 2.0, 3.0):
      r = self._named(p)
      if r is None:
        continue
      what = describe(r) if p != 1.0 else "negative entropy"
      if r.status == "ruled out":
        parts.append(f"{what} ruled out ({self.prep.n_flips} sign flips, {self.prep.n_zero} "
                     "zeros)")
      elif r.status in ("best", "indistinguishable"):
        parts.append(f"{what} consistent ({_p_is(r.p_value)})")
      else:
        parts.append(f"{what} worse ({_p_is(r.p_value)})")
    for r in self.rows:
      if r.family == "hypentropy":
        verb = "consistent" if r.status in ("best", "indistinguishable") else "worse"
        parts.append(f"hypentropy (beta = {r.beta:.3g}) {verb} ({_p_is(r.p_value)})")
      elif r.family == "other":
        parts.append(f"{r.name} {r.status} ({_p_is(r.p_value)})")
    if self.fit.get("p_value", 1.0) < 0.01:
      parts.append("no candidate describes these data well (goodness of fit "
                   f"{_p_is(self.fit['p_value'])}): read the interval as approximate")
    return "; ".join(parts) if parts else "no candidate could be evaluated"

  def _notes(self) -> list[str]:
    prep, notes = self.prep, []
    if prep.n_unchanged:
      notes.append(f"{prep.n_unchanged} of {prep.n_total} synapses did not change at all (equal "
                   "before and after): left out; with noise, silent synapses are a fraction of "
                   "the model instead.")
    if prep.n_zero:
      notes.append(f"{prep.n_zero} synapses are exactly zero before or after: left out of the "
                   "likelihood; a weight that reaches or leaves zero rules out negative entropy.")
    if prep.subsampled:
      notes.append(f"the likelihood uses a random {prep.n_used:,} of the synapses "
                   "(max_synapses): the intervals are those of that many synapses.")
    if prep.unit_note:
      notes.append(prep.unit_note)
    if any(r.family == "hypentropy" for r in self.rows):
      notes.append("hypentropy, f(w) = w arcsinh(w/beta) - sqrt(w^2 + beta^2), is the 2-norm "
                   "for |w| much below beta and negative entropy for |w| much above, and lets "
                   "weights change sign: a geometry between the two.")
    if self.kappa > 1.5:
      notes.append(f"the sandwich variance of p is {self.kappa:.2g} times the model's own: the "
                   "Gaussian model holds only approximately (correlated synapses, a trained "
                   "network), and the interval is widened by that factor.")
    if self.p_interval_statistical is not None and self.resolution > 0:
      lo, hi = self.p_interval_statistical
      notes.append(f"p interval: statistical {interval_text(lo, hi)}, widened by the "
                   f"resolution {self.resolution:g} on each side (the bias of the estimate on "
                   "trained networks; resolution=0 gives the statistical interval).")
    nz = self.nuisances
    if "p_at_noise_ends" in nz:
      a, b = nz["p_at_noise_ends"]
      notes.append(f"over the plausible noise range the best p moves from {_p(a)} (noise "
                   f"{100 * nz['noise_interval'][0]:.2g}%) to {_p(b)} "
                   f"({100 * nz['noise_interval'][1]:.2g}%).")
    if self.settings.get("noise") == "auto" and not self.change_detected:
      notes.append("a change under negative entropy, w = w0 exp(+-d), is multiplicative like the "
                   "measurement noise: with the noise level unknown the two cannot be told apart, "
                   "and 'no change, more noise' fits as well, under every geometry. A repeated "
                   "BEFORE measurement (--repeat) or a known noise level (--noise) separates them.")
    if nz.get("noise_warning"):
      notes.append(nz["noise_warning"])
    return notes

  def table(self, max_rows: int | None = None) -> str:
    prep = self.prep
    nz = self.nuisances
    what = []
    if prep.unit_note.startswith("per-unit"):
      what.append(f"per-unit scales ({prep.n_rows} x {prep.n_cols} units)")
    s = self.settings
    what.append("noise estimated" if s["noise"] == "auto" else f"noise {100 * float(s['noise']):g}%"
                " (given)")
    what.append("gain estimated" if s["gain"] == "auto" else f"gain {float(s['gain']):g} (given)")
    lines = [f"{prep.n_used:,} synapses in the likelihood ({prep.n_total:,} given; "
             f"{prep.n_unchanged:,} unchanged, {prep.n_zero:,} zero); measurement model with "
             + ", ".join(what),
             "geometries ranked by log-likelihood:",
             f"  {'geometry':<30} {'log-lik':>11} {'vs best':>9} {'LR':>8} {'p-value':>8}  "
             "status"]
    rows = self.rows if max_rows is None else self.rows[:max_rows]
    for r in rows:
      ll = f"{r.loglik:.1f}" if np.isfinite(r.loglik) else "-"
      dl = f"{r.delta:.1f}" if np.isfinite(r.delta) else "-"
      lr = f"{r.lr:.2f}" if np.isfinite(r.lr) and not r.estimate else "-"
      pv = _pv(r.p_value) if not r.estimate or r.status != "best" else "-"
      st = r.status + (f": {r.reason}" if r.status == "ruled out" else "")
      lines.append(f"  {describe(r):<30} {ll:>11} {dl:>9} {lr:>8} {pv:>8}  {st}")
    if self.p_estimate is not None:
      lo, hi = self.p_interval
      lines.append(f"p = {_p(self.p_estimate)}, {100 * (1 - self.level):g}% interval "
                   f"{interval_text(lo, hi, self.p_open)}")
    parts = []
    if "gain_interval" in nz:
      a, b = nz["gain_interval"]
      parts.append(f"gain {nz['gain']:.4g} {range_text(a, b)} (g = 1: "
                   f"{_p_is(nz['gain_p_value'])})")
    if "noise" in nz:
      if "noise_interval" in nz:
        a, b = nz["noise_interval"]
        parts.append(f"noise {100 * nz['noise']:.2g}% {range_text(a, b, 100, '%')}")
      else:
        parts.append(f"noise {100 * nz['noise']:.2g}% (given)")
    if nz.get("silent"):
      parts.append(f"silent {100 * nz['silent']:.2g}%")
    if self.change_detected:
      parts.append(f"drift {nz['drift'] / nz['change_sd']:+.2g} change SDs")
    lines.append("nuisances: " + "; ".join(parts))
    f = self.fit
    lines.append(f"fit of the best model: Delta-CDF of its standardised change "
                 f"{f['delta_cdf']:.3g} (its own simulations: {f['simulated_median']:.3g}; "
                 f"{_p_is(f['p_value'])})")
    lines.append(f"verdict: {self.summary}")
    lines += [f"note: {n}" for n in self.notes]
    return "\n".join(lines)

  def to_dict(self) -> dict:
    prep = self.prep
    return {
        "method": self.method, "best": self.best, "summary": self.summary,
        "p_estimate": self.p_estimate, "p_interval": self.p_interval,
        "p_interval_statistical": self.p_interval_statistical, "resolution": self.resolution,
        "p_interval_open": self.p_open,
        "ranking": self.ranking, "best_family": self.best_family,
        "family_p_values": self.family_p_values, "kappa": self.kappa,
        "nuisances": self.nuisances, "fit": self.fit, "level": self.level,
        "n_weights": prep.n_used, "n_total": prep.n_total, "n_unchanged": prep.n_unchanged,
        "n_zeros": prep.n_zero, "n_sign_flips": prep.n_flips, "subsampled": prep.subsampled,
        "units": [prep.n_rows, prep.n_cols], "notes": self.notes, "leaves": self.leaves,
        "settings": self.settings, "seconds": self.seconds, "profile": self.profile}
