"""The Delta-CDF method: candidates ranked by the Gaussianity of their dual change.

`infer_delta_cdf` computes each candidate potential's dual change
delta_psi = grad psi(w) - grad psi(w0) (Eq. 5), which Theorem 1 predicts to be Gaussian under the
true potential (docs/theory.md), and ranks candidates by the paper's Delta-CDF statistic with a
paired bootstrap, its Gaussian null and (with a known noise level) simulations of each
candidate (`mdgeom.inference.statistic`, `mdgeom.inference.noise`). `infer_geometry(...,
method="delta_cdf")` runs it; the default method is the measurement model
(`mdgeom.inference.model`), which benchmarks/inference_calibration.py compares with it.
Options built for measured data:

  center=True          the change is centred by its mean: a net drift (net potentiation) is not
                       counted as non-Gaussianity;
  unchanged="exclude"  weights with w == w0 (silent synapses, zero-gradient weights) are counted,
                       reported and left out, instead of a spike at 0 in every candidate's change;
  scales="auto"        for 2-D weights, parameter pytrees or synapse tables with unit ids, each
                       change is divided by its rank-1 per-unit scale a_i b_j (`mdgeom.scales`);
  noise=0              with a relative SD of multiplicative measurement noise, each candidate is
                       judged against simulations of its own generative model with that noise
                       (`mdgeom.inference.noise`) and candidates are ranked by that calibration.

`rank_potentials` in `mdgeom.analysis` keeps the paper's statistic (uncentred, pooled) as its
default; `infer_geometry(..., method="delta_cdf", center=False, unchanged="keep",
scales="pooled")` reproduces it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mdgeom import analysis
from mdgeom import potentials as potentials_lib
from mdgeom import scales as scales_lib
from mdgeom.inference import candidates as cands
from mdgeom.inference import noise as noise_lib
from mdgeom.inference import statistic, verdicts
from mdgeom.inference.io import MIN_WEIGHTS, InferenceError

UNCHANGED = ("exclude", "keep")
ANCHOR_STEP = 0.25  # p-norms are simulated at least this far apart in p (noise model)


@dataclasses.dataclass
class GeometryInference:
  """The result of `infer_geometry`: a ranking with verdicts and the sentence that sums it up."""

  best: str
  summary: str
  ranking: list[dict]
  p_estimate: float | None
  p_interval: list | None
  n_weights: int
  n_unchanged: int
  n_sign_flips: int
  n_zeros: int
  notes: list[str]
  settings: dict
  seconds: float
  change: np.ndarray | None = dataclasses.field(default=None, repr=False)

  def __getitem__(self, key):  # dict-style access, as the JSON reads
    return getattr(self, key)

  def row(self, name: str) -> dict:
    for r in self.ranking:
      if r["name"] == name:
        return r
    raise KeyError(f"no candidate {name!r} in this result")

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d.pop("change")
    return d

  def table(self, max_rows: int | None = None) -> str:
    s = self.settings
    stat = ("centred" if s["center"] else "uncentred") + (
        ", per-unit scales" if s["scales"] == "units" else ", pooled")
    score = ("calibration score |z| (noise model)" if s["noise"] else "Delta-CDF")
    lines = [f"{self.n_weights} synapses analysed ({self.n_unchanged} unchanged, "
             f"{'excluded' if s['unchanged'] == 'exclude' else 'kept'}); Delta-CDF of the dual "
             f"change ({stat}), {100 * s['ci_level']:g}% bootstrap interval ({s['n_boot']} "
             f"paired resamples); ranked by {score}",
             f"{'rank':>4}  {'potential':<22} {'Delta-CDF':>9}  {'interval':^17} "
             f"{'score':>7} {'p(no worse)':>11} {'fit p':>7}  status"]
    rows = self.ranking if max_rows is None else self.ranking[:max_rows]
    for k, r in enumerate(rows, 1):
      ci = ("" if r["ci"] is None or not np.all(np.isfinite(r["ci"])) else
            f"[{r['ci'][0]:.4f}, {r['ci'][1]:.4f}]")
      lines.append(
          f"{k:>4}  {r['name']:<22} {_num(r['delta_cdf'], '.4f'):>9}  {ci:^17} "
          f"{_num(r['score'], '.4g'):>7} {_num(r['p_worse'], '.3g'):>11} "
          f"{_num(r['p_value'], '.3g'):>7}  {r['status']}"
          + (f": {r['reason']}" if r["status"] in ("ruled out", "degenerate", "unusable") else ""))
    if max_rows is not None and len(self.ranking) > max_rows:
      lines.append(f"      ... {len(self.ranking) - max_rows} more (see --json or --all)")
    lines.append(f"best: {self.best}")
    if self.p_estimate is not None:
      lo, hi = self.p_interval
      lines.append(f"best p-norm: p = {self.p_estimate:g}; p-norms indistinguishable from it: "
                   f"[{lo:g}, {hi:g}]")
    lines.append(f"verdict: {self.summary}")
    lines += [f"note: {n}" for n in self.notes]
    return "\n".join(lines)


def _num(v, fmt):
  return "-" if v is None or not np.isfinite(v) else format(v, fmt)


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def validate_settings(center, unchanged, noise, level, ci_level, n_boot, n_null, n_sim,
                      min_weights):
  """The Delta-CDF method's settings, checked (InferenceError naming the bad one)."""
  if unchanged not in UNCHANGED:
    raise InferenceError(f"unchanged={unchanged!r}: use 'exclude' or 'keep'.")
  if isinstance(noise, str) and noise == "auto":
    raise InferenceError("noise='auto' needs the measurement model (method='model', the "
                         "default); the Delta-CDF method takes a known noise level, e.g. "
                         "noise=0.05.")
  if not isinstance(center, (bool, np.bool_)):
    raise InferenceError(f"center={center!r}: use True or False.")
  try:
    noise = float(noise)
  except (TypeError, ValueError):
    raise InferenceError(f"noise={noise!r}: give the relative SD of the measurement noise, e.g. "
                         "0.05 for 5%.") from None
  if not (np.isfinite(noise) and 0 <= noise < 2):
    raise InferenceError(f"noise = {noise!r}: the relative SD of the measurement noise must be "
                         "in [0, 2) (0.05 = 5%).")
  for name, v in (("level", level), ("ci_level", ci_level)):
    if not (isinstance(v, (int, float, np.floating)) and 0 < v < 1):
      raise InferenceError(f"{name} = {v!r} must be in (0, 1).")
  for name, v, lo in (("n_boot", n_boot, 20), ("n_null", n_null, 20), ("n_sim", n_sim, 20),
                      ("min_weights", min_weights, 3)):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
      raise InferenceError(f"{name} = {v!r} must be an integer >= {lo}.")
  return noise


# ----------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------


def infer_delta_cdf(
    a: np.ndarray,
    b: np.ndarray,
    use_ids: scales_lib.UnitIds | None,
    leaves: list[str],
    candidates: Iterable[str | potentials_lib.Potential] | None = None,
    *,
    center: bool = True,
    unchanged: str = "exclude",
    noise: float = 0.0,
    level: float = 0.05,
    ci_level: float = 0.95,
    n_boot: int = 200,
    n_null: int = 1000,
    n_sim: int = 200,
    seed: int = 0,
    p_min: float = 1.1,
    p_max: float = 4.0,
    p_step: float = 0.05,
    betas=None,
    grow_p: bool = True,
    min_weights: int = MIN_WEIGHTS,
) -> GeometryInference:
  """Ranks candidate geometries for flat float64 pairs a (before), b (after) by the Delta-CDF of
  their dual changes; `use_ids`: the unit of each synapse for per-unit scales, or None (pooled).
  `infer_geometry(..., method="delta_cdf")` validates and flattens its inputs and calls this;
  its docstring describes the arguments.

  Returns a GeometryInference (`.summary` in words, `.table()`, `.to_dict()`); its "ranking"
  lists every candidate with its statistic, interval, score, p-value of being no worse than the
  best, goodness-of-fit p-value, status and reason.
  """
  start = time.time()
  noise = validate_settings(center, unchanged, noise, level, ci_level, n_boot, n_null, n_sim,
                            min_weights)
  if a.size < min_weights:
    raise InferenceError(f"only {a.size} weights: the statistic, its bootstrap and its null need "
                         f"at least {min_weights}.")
  changed = a != b
  if not changed.any():
    raise InferenceError("no weight changed between BEFORE and AFTER: there is no change to test.")
  n_unchanged = int((~changed).sum())
  keep = changed if unchanged == "exclude" else np.ones(a.size, bool)
  if keep.sum() < min_weights:
    raise InferenceError(
        f"only {int(keep.sum())} of {a.size} weights changed ({n_unchanged} unchanged are "
        f"excluded): the statistic needs at least {min_weights} changed weights. Pass "
        "unchanged='keep' (--keep-unchanged) to analyse the unchanged ones as zero changes.")
  flips, zeros = analysis.sign_changes(a[keep], b[keep])
  if np.ptp(a[keep]) == 0 and np.ptp(b[keep]) == 0:
    raise InferenceError(
        f"every synapse has the same weight before ({a[keep][0]:.6g}) and the same after "
        f"({b[keep][0]:.6g}): every geometry maps equal weights to an equal dual change, so the "
        "data cannot tell geometries apart (there is no shape to test).")

  if candidates is None:
    pots = cands.default_candidates(a, p_min=p_min, p_max=p_max, p_step=p_step, betas=betas)
  else:
    pots = cands.resolve(candidates)
  rng = np.random.default_rng(seed)
  key = jax.random.PRNGKey(seed)
  boot = statistic.Bootstrap(a.size, n_boot, rng)
  ctx = _Context(a, b, keep, use_ids, bool(center), noise, n_sim, n_null, boot, rng, key,
                 flips, zeros, min_weights)
  rows = ctx.evaluate(pots)

  # grow the p scan while its best point sits at the upper end
  notes = []
  scanned = sorted(r["p"] for r in rows if r["family"] == "pnorm")
  while grow_p and candidates is None and scanned and scanned[-1] < cands.P_LIMIT:
    usable = [r for r in rows if r["family"] == "pnorm" and np.isfinite(r["score"])]
    if not usable or min(usable, key=lambda r: r["score"])["p"] != scanned[-1]:
      break
    top = scanned[-1]
    new_ps = [p for p in cands.pnorm_grid(top + p_step, min(top + 1.0, cands.P_LIMIT), p_step)
              if p > top]
    if not new_ps:
      break
    notes.append(f"the best p sat at the end of the scan ({top:g}); the scan grew to "
                 f"{new_ps[-1]:g}.")
    rows += ctx.evaluate([potentials_lib.pnorm(p) for p in new_ps])
    scanned = sorted(r["p"] for r in rows if r["family"] == "pnorm")

  ranking, best_row, p_est, p_int = _rank(rows, ctx, level, ci_level)
  n_kept = int(keep.sum())
  p_order = [r["p"] for r in rows if r["family"] == "pnorm"]
  summary = verdicts.sentence(ranking, level, p_order)
  notes += _notes(ranking, ctx, n_unchanged, unchanged, a.size, center, use_ids, noise, p_est,
                  p_order, best_row)
  gof = verdicts.goodness_of_fit_words(best_row, noise, n_kept) if best_row else ""
  if gof:
    notes.insert(0, gof)
  change = ctx.change_of(best_row) if best_row else None
  settings = {"center": bool(center), "unchanged": unchanged,
              "scales": "units" if use_ids is not None else "pooled", "noise": noise,
              "level": level, "ci_level": ci_level, "n_boot": n_boot, "n_null": n_null,
              "n_sim": n_sim, "seed": seed, "bootstrap": boot.mode, "leaves": leaves,
              "p_scan": [min(p_order), max(p_order)] if p_order else None}
  for r in ranking:
    r.pop("_index", None)
  return GeometryInference(
      best=best_row["name"] if best_row else ranking[0]["name"], summary=summary,
      ranking=ranking, p_estimate=p_est, p_interval=p_int, n_weights=n_kept,
      n_unchanged=n_unchanged, n_sign_flips=flips, n_zeros=zeros, notes=notes,
      settings=settings, seconds=time.time() - start, change=change)


class _Context:
  """Everything the per-candidate evaluation shares (data, bootstrap, nulls, settings)."""

  def __init__(self, a, b, keep, ids, center, noise, n_sim, n_null, boot, rng, key, flips,
               zeros, min_weights):
    self.a, self.b, self.keep, self.ids = a, b, keep, ids
    self.center, self.noise, self.n_sim, self.n_null = center, noise, n_sim, n_null
    self.boot, self.rng, self.key = boot, rng, key
    self.flips, self.zeros, self.min_weights = flips, zeros, min_weights
    self.nulls: dict = {}
    self.pots: list = []

  def _null(self, valid):
    tag = (int(valid.sum()), hash(valid.tobytes()) if self.ids is not None else 0)
    if tag not in self.nulls:
      ids = None
      if self.ids is not None:
        ids = scales_lib.UnitIds(self.ids.rows[valid], self.ids.cols[valid])
      self.nulls[tag] = statistic.null_statistics(int(valid.sum()), self.n_null, self.rng,
                                                  self.center, ids)
    return self.nulls[tag]

  def _x(self, pot, d, valid):
    """The change as the statistic sees it (unit-scaled; noise-standardised when noise > 0),
    the per-entry unit scale (or None), and the noise fit (mu, sigma) or None."""
    unit = None
    if self.ids is None:
      x = np.where(valid, d, np.nan)
    else:
      noise_var = None
      if self.noise:
        with jax.enable_x64(True):
          noise_var = noise_lib.lognormal_sigma2(self.noise) * np.asarray(
              noise_lib.noise_weight(pot, jnp.asarray(self.a), jnp.asarray(self.b)), np.float64)
      sc = scales_lib.unit_scales(d, self.ids, valid, noise_var=noise_var,
                                  estimator="rms" if self.noise else "abs")
      x, unit = sc.z, np.where(valid, sc.row_scale * sc.col_scale, 1.0)
    if not self.noise:
      return x, unit, None
    r, mu, sigma = noise_lib.observed_standardised(pot, self.a, self.b, valid, self.noise, unit,
                                                   self.center)
    return r, unit, (mu, sigma)

  def evaluate(self, pots) -> list[dict]:
    rows, pending = [], []
    for idx, changes in cands.dual_changes(pots, self.a, self.b):
      for j, i in enumerate(idx):
        pot = pots[i]
        d = changes[j]
        valid = self.keep & np.isfinite(d)
        row = _base_row(pot)
        row["_index"] = len(self.pots)
        self.pots.append(pot)
        row["n"] = int(valid.sum())
        y0 = np.asarray(pot.mirror_map(self.a[valid]), np.float64) if valid.any() else None
        with np.errstate(invalid="ignore", divide="ignore"):
          row["magnitude"] = (float(np.linalg.norm(d[valid]) / np.linalg.norm(y0[np.isfinite(
              y0)])) if y0 is not None and np.isfinite(y0).any() else float("nan"))
        rows.append(row)
        if pot.sign_preserving and (self.flips or self.zeros):
          row["status"] = "ruled out"
          row["reason_short"] = f"{self.flips} sign flips, {self.zeros} zeros"
          row["reason"] = (f"{self.flips} weights changed sign and {self.zeros} are zero or reach "
                           f"zero; {pot.name} keeps every weight on its half-line, so it cannot "
                           "have produced these data")
        if row["n"] < self.min_weights:
          row["status"] = row["status"] or "unusable"
          row["reason"] = row["reason"] or (f"only {row['n']} synapses have a dual coordinate "
                                            f"under {pot.name}")
          continue
        if statistic.is_degenerate(np.where(valid, d, np.nan), self.center):
          row["status"] = row["status"] or "degenerate"
          row["reason"] = row["reason"] or (
              "its dual change is the same at every synapse (zero spread): a uniform change in "
              "this geometry, i.e. a Gaussian of zero variance; there is no shape to test")
          continue
        x, unit, fit = self._x(pot, d, valid)
        scaled = not self.noise  # noise: x is standardised by the model, compared as it is
        row["delta_cdf"] = float(statistic.delta_cdf_rows(x[None], np.isfinite(x)[None],
                                                          self.center, scaled)[0])
        row["_boot"] = self.boot.statistics(x, self.center, scaled)
        if row["status"] is not None:
          continue  # ruled out: statistic reported, not ranked
        if self.noise:
          pending.append((row, pot, unit, valid, fit))
        else:
          row["p_value"] = statistic.upper_p_value(self._null(np.isfinite(x)), row["delta_cdf"])
          row["score"] = row["delta_cdf"]
          row["_boot_score"] = row["_boot"]
    if pending:
      self._calibrate_all(pending)
    return rows

  def _calibrate_all(self, pending):
    """Simulates each candidate's generative model with the noise. p-norms are simulated at
    anchors at least ANCHOR_STEP apart in p and interpolated between them (the simulations use
    the same random draws for every p, so the simulated statistics vary smoothly with p)."""
    groups: dict = {}
    for item in pending:
      fam = item[0]["family"]
      key = fam if fam in ("pnorm", "hypentropy") else f"other:{item[0]['_index']}"
      groups.setdefault(key, []).append(item)
    for key, items in groups.items():
      if key == "pnorm":
        items.sort(key=lambda it: it[0]["p"])
        ps = [it[0]["p"] for it in items]
        anchors = [0]
        for k in range(1, len(ps)):
          if ps[k] - ps[anchors[-1]] >= ANCHOR_STEP - 1e-9 or k == len(ps) - 1:
            anchors.append(k)
        cals = self._simulate([items[k] for k in anchors])
        by_anchor = dict(zip(anchors, cals))
        for k, it in enumerate(items):
          if k in by_anchor:
            cal = by_anchor[k]
          else:
            hi = next(a for a in anchors if a > k)
            lo = max(a for a in anchors if a < k)
            lam = (ps[k] - ps[lo]) / (ps[hi] - ps[lo])
            sims = (1 - lam) * by_anchor[lo].simulated + lam * by_anchor[hi].simulated
            cal = noise_lib.Calibration.from_simulations(it[4][0], it[4][1], sims,
                                                         interpolated=True)
          self._finish(it[0], cal)
      else:
        for it, cal in zip(items, self._simulate(items)):
          self._finish(it[0], cal)

  def _simulate(self, items):
    out = []
    for start in range(0, len(items), cands.CHUNK):
      part = items[start:start + cands.CHUNK]
      valid = np.logical_and.reduce([it[3] for it in part])
      unit = part[0][2]
      # the same key for every call: all candidates see the same draws (common random numbers)
      out += noise_lib.calibrate([it[1] for it in part], self.a, [it[4] for it in part], valid,
                                 self.noise, self.center, self.ids, self.n_sim, self.key,
                                 unit_scale=unit)
    return out

  def _finish(self, row, cal):
    row["score"] = float(cal.score(row["delta_cdf"]))
    row["_boot_score"] = cal.score(row["_boot"])
    row["p_value"] = cal.p_value(row["delta_cdf"])
    row["noise_fit"] = {"mu": cal.mu, "sigma": cal.sigma,
                        "simulated_delta_cdf_median": float(np.nanmedian(cal.simulated)),
                        "interpolated": cal.interpolated}

  def change_of(self, row) -> np.ndarray | None:
    pot = self.pots[row["_index"]] if "_index" in row else None
    if pot is None:
      return None
    for _, changes in cands.dual_changes([pot], self.a, self.b):
      d = changes[0]
      return self._x(pot, d, self.keep & np.isfinite(d))[0]
    return None


def _base_row(pot) -> dict:
  return {"name": pot.name, "label": cands.label(pot), "family": cands.family(pot),
          "p": cands.pnorm_p(pot), "beta": cands.hypentropy_beta(pot),
          "fingerprint": potentials_lib.fingerprint(pot), "delta_cdf": float("nan"),
          "ci": None, "score": float("nan"), "p_worse": None, "se_difference": None,
          "p_value": None, "status": None, "reason": "", "reason_short": "", "n": 0,
          "magnitude": float("nan"), "noise_fit": None}


def _rank(rows, ctx, level, ci_level):
  eligible = [r for r in rows if r["status"] is None and np.isfinite(r["score"])]
  best_row, p_est, p_int = None, None, None
  if eligible:
    score = np.array([r["score"] for r in eligible])
    bs = np.stack([r["_boot_score"] for r in eligible])
    best = int(np.argmin(score))
    best_row = eligible[best]
    _, se = statistic.paired_comparison(score, bs, best)
    p_worse = statistic.confidence_set_p_values(score, bs, ctx.boot.n)
    p_worse[best] = max(p_worse[best], level)  # the best is in its own confidence set
    for r, p, s in zip(eligible, p_worse, se):
      r["p_worse"] = float(p)
      r["se_difference"] = float(s)
      r["status"] = "best" if r is best_row else (
          "indistinguishable" if p >= level else "worse")
      r["reason"] = ("lowest score" if r is best_row else
                     f"no worse than the best (p = {p:.3g})" if p >= level else
                     f"worse than the best (p = {p:.3g})")
    # the p estimate and the p-norms indistinguishable from the best p-norm
    pidx = [k for k, r in enumerate(eligible) if r["family"] == "pnorm"]
    if pidx:
      bp = pidx[int(np.argmin(score[pidx]))]
      pw = statistic.confidence_set_p_values(score[pidx], bs[pidx], ctx.boot.n)
      ok = [eligible[k]["p"] for k, q in zip(pidx, pw) if q >= level] + [eligible[bp]["p"]]
      p_est = eligible[bp]["p"]
      p_int = [min(ok), max(ok)]
  for r in rows:
    if r["status"] not in ("ruled out", "degenerate", "unusable") and np.isfinite(r["delta_cdf"]) or r["status"] == "ruled out" and np.isfinite(r["delta_cdf"]):
      r["ci"] = statistic.centred_interval(r["delta_cdf"], r["_boot"], ci_level)
  order = {"degenerate": 0, "best": 1, "indistinguishable": 2, "worse": 3, None: 4,
           "ruled out": 5, "unusable": 6}
  ranking = sorted(rows, key=lambda r: (order[r["status"]], r["score"] if np.isfinite(
      r["score"]) else np.inf, r["delta_cdf"] if np.isfinite(r["delta_cdf"]) else np.inf))
  for r in ranking:
    for k in ("_boot", "_boot_score", "_cal"):
      r.pop(k, None)
    if r["status"] is None:
      r["status"] = "unusable"
  if best_row is None:
    degenerate = [r for r in ranking if r["status"] == "degenerate"]
    best_row = degenerate[0] if degenerate else None
  return ranking, best_row, p_est, p_int


def _notes(ranking, ctx, n_unchanged, unchanged, n_total, center, ids, noise, p_est, p_order,
           best_row) -> list[str]:
  notes = []
  if n_unchanged:
    frac = n_unchanged / n_total
    if unchanged == "exclude":
      notes.append(f"{n_unchanged} of {n_total} weights ({100 * frac:.1f}%) did not change "
                   "(silent synapses or zero gradients): excluded, so they do not put a spike at "
                   "0 into every candidate's change.")
    else:
      notes.append(f"{n_unchanged} of {n_total} weights ({100 * frac:.1f}%) did not change and "
                   "are kept as exact zeros of every change" + (
                       "; with this many, every candidate's change has a spike at 0 — exclude "
                       "them (unchanged='exclude', the default) to test the changes that "
                       "happened" if frac > 0.02 else "") + ".")
  if center:
    if best_row is not None and best_row.get("n"):
      notes.append("the change was centred by its mean (a net drift is not counted as "
                   "non-Gaussianity; center=False / --no-center gives the paper's statistic).")
  if ids is not None:
    notes.append(f"per-unit scales: each change divided by its rank-1 scale a_i b_j over "
                 f"{ids.n_rows} row and {ids.n_cols} column units (units with fewer than "
                 f"{scales_lib.MIN_COUNT} synapses share one scale; scales='pooled' / --scales "
                 "pooled gives the paper's single scale).")
  if noise and best_row is not None and best_row.get("noise_fit"):
    ref = best_row["noise_fit"]["simulated_delta_cdf_median"]
    weak = [r for r in ranking if r["status"] == "indistinguishable" and r.get("noise_fit")
            and r["noise_fit"]["simulated_delta_cdf_median"] > 3 * ref]
    if weak:
      notes.append("weakly tested: " + ", ".join(verdicts.group_words(weak, p_order)) + ": with "
                   "this noise their own simulated data are far from Gaussian (median Delta-CDF "
                   "more than 3x the best's), so a typical score says little for them.")
  if noise:
    notes.append(f"measurement noise {100 * noise:g}% (multiplicative, both measurements): each "
                 f"candidate's statistic is compared with {ctx.n_sim} simulations of that "
                 "candidate with this noise (the change standardised by its predicted per-synapse "
                 "noise), and candidates are ranked by the score |z| = |log Delta-CDF - mean| / sd "
                 "over the simulations.")
  if p_est is not None and p_order:
    lo, hi = min(p_order), max(p_order)
    if p_est == lo and lo <= 1.2:
      notes.append(f"the best p-norm is the smallest scanned (p = {lo:g}): as p -> 1 the p-norm "
                   "approaches negative entropy, which the ranking tests directly.")
    elif p_est in (lo, hi):
      notes.append(f"the best p ({p_est:g}) is at the edge of the scan [{lo:g}, {hi:g}]: the "
                   "optimum may lie outside it.")
  return notes
