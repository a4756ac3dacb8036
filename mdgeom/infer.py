"""`mdgeom infer`: which geometry of plasticity explains weights measured before and after learning?

For each candidate potential psi the dual change delta_psi = grad psi(w) - grad psi(w0) is
computed (SPEC section 3); under the true potential it is a zero-mean Gaussian (Theorem 1). The
statistic is the paper's Delta-CDF, int |F_n(x) - Phi(x)| dx with F_n the empirical CDF of
delta_psi / std(delta_psi) (scaled, not centred). For each candidate:

- ci: a bootstrap percentile interval of its Delta-CDF (weights resampled in pairs).
- p_value: a parametric bootstrap of the statistic under the candidate's own Gaussian null,
  delta_psi ~ N(0, s^2) i.i.d. with the candidate's n. Delta-CDF divides by the sample's standard
  deviation, so its null law does not depend on s: one set of N(0, 1) draws per n serves every
  candidate, and p = (1 + #{null >= observed}) / (1 + n_null), which is uniform under the null.
- ruled_out: the candidate cannot have produced the data (a sign-preserving potential with sign
  flips or zeros), or its Gaussian null is rejected at level alpha.

The best estimate of p (the p-norm family) is the p of the lowest Delta-CDF on the scan, with a
percentile interval over the bootstrap resamples. All random draws come from one seed.

    mdgeom infer before.npy after.npy --json out.json --figure out.png
    python -m mdgeom infer before.csv after.csv --column weight
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import os
import re
import sys
import time
from typing import Iterable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mdgeom import analysis
from mdgeom import potentials as potentials_lib
from mdgeom import results as results_lib

MIN_WEIGHTS = 20
_PNORM = re.compile(r"^([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)-norm$")


class InferenceError(ValueError):
  """Input that the inference cannot use (the message says what is wrong)."""


# ----------------------------------------------------------------------------------------------
# Reading weights
# ----------------------------------------------------------------------------------------------


def read_weights(path: str, column: Optional[str] = None) -> np.ndarray:
  """Weights from a CSV (one column, or `column` by name or 0-based index), NPY or NPZ (`column`
  names the array; optional when the file holds one). Returns a flat float64 array."""
  if not os.path.exists(path):
    raise InferenceError(f"{path}: no such file.")
  ext = os.path.splitext(path)[1].lower()
  try:
    if ext == ".npy":
      arr = np.load(path, allow_pickle=False)
    elif ext == ".npz":
      with np.load(path, allow_pickle=False) as z:
        keys = list(z.keys())
        if column is None:
          if len(keys) != 1:
            raise InferenceError(f"{path} holds arrays {keys}: choose one with --column.")
          column = keys[0]
        if column not in keys:
          raise InferenceError(f"{path} has no array {column!r} (arrays: {keys}).")
        arr = z[column]
    else:
      return _read_csv(path, column)
  except InferenceError:
    raise
  except Exception as e:  # numpy's errors for corrupt files vary (ValueError, OSError, ...)
    raise InferenceError(f"{path}: cannot read it as {ext or 'CSV'} ({type(e).__name__}: {e}).")
  if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
    raise InferenceError(f"{path}: expected real numbers, got an array of dtype {arr.dtype}.")
  return np.asarray(arr, np.float64).ravel()


def _read_csv(path: str, column: Optional[str]) -> np.ndarray:
  try:
    with open(path, newline="") as f:
      rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
  except (UnicodeDecodeError, OSError) as e:
    raise InferenceError(f"{path}: cannot read it as a text CSV ({e}).") from None
  if not rows:
    raise InferenceError(f"{path} is empty.")

  def is_number(text):
    try:
      float(text)
      return True
    except ValueError:
      return False

  header = None
  if not all(is_number(c) for c in rows[0]):
    header, rows = [c.strip() for c in rows[0]], rows[1:]
  width = len(header) if header else len(rows[0])
  if column is None:
    if width != 1:
      names = header if header else list(range(width))
      raise InferenceError(f"{path} has {width} columns {names}: choose one with --column.")
    j = 0
  elif header and column in header:
    j = header.index(column)
  elif column.lstrip("-").isdigit() and int(column) < width:
    j = int(column)
  else:
    raise InferenceError(f"{path} has no column {column!r} (columns: "
                         f"{header if header else list(range(width))}).")
  out = np.empty(len(rows))
  first = 2 if header else 1
  for k, r in enumerate(rows):
    text = r[j].strip() if j < len(r) else ""
    try:
      out[k] = float(text)
    except ValueError:
      raise InferenceError(f"{path}, line {k + first}: {text!r} is not a number.") from None
  return out


def check_pair(w0, w, min_weights: int = MIN_WEIGHTS, names=("BEFORE", "AFTER")) -> None:
  """Raises InferenceError for unequal lengths, NaN/Inf, too few or unchanged weights."""
  w0, w = np.asarray(w0), np.asarray(w)
  if w0.shape != w.shape:
    raise InferenceError(f"{names[0]} has {w0.size} weights and {names[1]} {w.size}: they must be "
                         "the same synapses, paired one to one.")
  for arr, name in zip((w0, w), names):
    bad = ~np.isfinite(arr)
    if bad.any():
      raise InferenceError(f"{name} has {int(bad.sum())} NaN/Inf values (first at index "
                           f"{int(np.argmax(bad))}); remove those synapses from both files.")
  if w0.size < min_weights:
    raise InferenceError(f"only {w0.size} weights: the Delta-CDF statistic, its bootstrap and the "
                         f"Gaussian null need at least {min_weights}.")
  if np.all(w0 == w):
    raise InferenceError("no weight changed between BEFORE and AFTER: there is no change to test.")


# ----------------------------------------------------------------------------------------------
# Candidates and their dual changes
# ----------------------------------------------------------------------------------------------


def default_candidates(w0=None, *, p_min: float = 1.1, p_max: float = 3.0, p_step: float = 0.05,
                       betas: Optional[Sequence[float]] = None) -> list[str]:
  """Negative entropy, p-norms from p_min to p_max in steps of p_step, hypentropy over a range of
  beta, and every other registered potential.

  Hypentropy's beta is in weight units, so the default betas are the median |w0| times
  10^-2 ... 10^1 (small beta: close to negative entropy; large: close to the 2-norm).
  """
  names = ["negative_entropy"]
  n_p = int(round((p_max - p_min) / p_step)) + 1
  names += [f"{round(p_min + i * p_step, 6):g}-norm" for i in range(n_p)]
  if betas is None:
    scale = float(np.median(np.abs(w0))) if w0 is not None else 1.0
    scale = scale if scale > 0 else 1.0
    betas = scale * np.logspace(-2, 1, 7)
  names += [f"hypentropy:{b:.3g}" for b in betas]
  for reg in potentials_lib.registered_names():
    names.append(reg)
  out, seen = [], set()
  for name in names:
    canonical = potentials_lib.get(name).name
    if canonical not in seen:
      seen.add(canonical)
      out.append(name)
  return out


def _p_of(name: str) -> Optional[float]:
  m = _PNORM.match(name)
  return float(m.group(1)) if m else None


@functools.partial(jax.jit, static_argnums=0)
def _batched_change(make, params, a, b):
  """Dual changes of a one-parameter family of potentials, vmapped over the parameter."""
  return jax.vmap(lambda t: analysis.dual_change_raw(make(t), a, b))(params)


def dual_changes(names: Sequence[str], w0: np.ndarray, w: np.ndarray) -> np.ndarray:
  """[candidate, weight] float64 dual changes; p-norms and hypentropies batched with vmap."""
  pots = [potentials_lib.get(n) for n in names]
  out = np.empty((len(pots), w0.size))
  with jax.enable_x64(True):
    a, b = jnp.asarray(w0, jnp.float64), jnp.asarray(w, jnp.float64)
    groups = {"p": [], "h": [], "other": []}
    for i, pot in enumerate(pots):
      if _p_of(pot.name) is not None:
        groups["p"].append((i, _p_of(pot.name)))
      elif pot.name.startswith("hypentropy:"):
        groups["h"].append((i, float(pot.name.split(":", 1)[1])))
      else:
        groups["other"].append((i, None))
    for key, make in (("p", potentials_lib.pnorm), ("h", potentials_lib.hypentropy)):
      if groups[key]:
        idx, params = zip(*groups[key])
        out[list(idx)] = np.asarray(_batched_change(make, jnp.asarray(params, jnp.float64), a, b))
    for i, _ in groups["other"]:
      out[i] = np.asarray(analysis.dual_change_raw(pots[i], a, b))
  return out


# ----------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------


_BLOCK = 1024  # rows per batched Delta-CDF call: one fixed shape, so one compilation per n


def _delta_cdf_rows(rows_fn, n_rows: int, n: int) -> np.ndarray:
  """Grid Delta-CDF (the paper's statistic) of n_rows rows of length n, in fixed-size blocks.

  rows_fn(r) returns (x, valid) for the row indices r; the last block is padded with copies of
  its first row so that every call has the shape [_BLOCK, n].
  """
  out = np.empty(n_rows)
  for start in range(0, n_rows, _BLOCK):
    r = np.arange(start, min(start + _BLOCK, n_rows))
    x, v = rows_fn(np.concatenate([r, np.full(_BLOCK - r.size, r[0])]))
    x = np.where(v, x, 0.0).astype(np.float32)
    out[r] = analysis.delta_cdf_batch(jnp.asarray(x), jnp.asarray(v))[: r.size]
  return out


def null_distribution(n: int, n_null: int, rng: np.random.Generator) -> np.ndarray:
  """Delta-CDF of n_null samples of n i.i.d. N(0, 1): the law of the statistic under any
  candidate's Gaussian null (it is scale-free, so N(0, s^2) gives the same law)."""
  z = rng.standard_normal((n_null, n)).astype(np.float32)
  return _delta_cdf_rows(lambda r: (z[r], np.ones((r.size, n), bool)), n_null, n)


def observed_and_bootstrap(changes: np.ndarray, valid: np.ndarray, n_boot: int,
                           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Observed Delta-CDF [candidate] and pair-bootstrap Delta-CDFs [candidate, n_boot].

  Every candidate sees the same resamples (weights resampled with replacement, in pairs), so the
  argmin over candidates of one resample is a bootstrap draw of the best candidate.
  """
  n_c, n = changes.shape
  idx = np.concatenate([np.arange(n)[None], rng.integers(0, n, size=(n_boot, n))])

  def rows(r):
    c, b = r // (n_boot + 1), r % (n_boot + 1)
    cols = idx[b]
    return changes[c[:, None], cols], valid[c[:, None], cols]

  stats_ = _delta_cdf_rows(rows, n_c * (n_boot + 1), n).reshape(n_c, n_boot + 1)
  return stats_[:, 0], stats_[:, 1:]


@dataclasses.dataclass
class CandidateVerdict:
  name: str
  delta_cdf: float
  ci: list
  p_value: float
  ruled_out: bool
  reason: str
  n: int


def infer(w0, w, candidates: Optional[Iterable[str]] = None, *, n_boot: int = 200,
          n_null: int = 1000, seed: int = 0, alpha: float = 0.05, ci_level: float = 0.95,
          exclude_unchanged: bool = False, min_weights: int = MIN_WEIGHTS) -> dict:
  """Ranks candidate geometries for paired weights (w0 before, w after learning).

  Returns {"best", "p_estimate", "p_interval", "ranking": [{"name", "delta_cdf", "ci",
  "p_value", "ruled_out", "reason", "n"}], "n_weights", "n_unchanged", "notes", "settings"}, the
  ranking sorted best first: candidates that cannot have produced the data (sign flips under a
  sign-preserving potential) last, the rest by Delta-CDF. "changes" holds the best candidate's
  dual change (for the figure; dropped from the JSON).
  """
  w0 = np.asarray(w0, np.float64).ravel()
  w = np.asarray(w, np.float64).ravel()
  check_pair(w0, w, min_weights)
  names = list(default_candidates(w0) if candidates is None else candidates)
  if not names:
    raise InferenceError("no candidate potentials.")
  pots = [potentials_lib.get(n) for n in names]
  names = [p.name for p in pots]
  rng = np.random.default_rng(seed)
  changed = w0 != w
  n_unchanged = int(np.sum(~changed))
  flips, zeros = analysis.sign_changes(w0, w)
  notes = []
  if n_unchanged:
    notes.append(f"{n_unchanged} weights did not change ("
                 f"{'excluded' if exclude_unchanged else 'kept as exact zeros of the change'}).")
  changes = dual_changes(names, w0, w)
  keep = changed if exclude_unchanged else np.ones_like(changed)
  valid = keep[None] & np.isfinite(changes)
  observed, boot = observed_and_bootstrap(changes, valid, n_boot, rng)
  nulls = {}
  verdicts = []
  lo_q, hi_q = 100 * (1 - ci_level) / 2, 100 * (1 + ci_level) / 2
  for i, pot in enumerate(pots):
    n_i = int(valid[i].sum())
    hard = ""
    if pot.sign_preserving and (flips or zeros):
      hard = (f"{flips} weights changed sign and {zeros} are zero or reach zero; "
              f"{pot.name} keeps every weight on its half-line, so it cannot produce these data")
    if n_i < min_weights or not np.isfinite(observed[i]):
      verdicts.append(CandidateVerdict(pot.name, float("nan"), [float("nan")] * 2, float("nan"),
                                       True, hard or "no usable dual change", n_i))
      continue
    if n_i not in nulls:
      nulls[n_i] = null_distribution(n_i, n_null, rng)
    p_value = float((1 + np.sum(nulls[n_i] >= observed[i])) / (1 + n_null))
    ci = [float(np.nanpercentile(boot[i], lo_q)), float(np.nanpercentile(boot[i], hi_q))]
    if hard:
      reason, out = hard, True
    elif p_value < alpha:
      reason, out = f"dual change not Gaussian: p = {p_value:.3g} < alpha = {alpha:g}", True
    else:
      reason, out = f"consistent with a Gaussian dual change (p = {p_value:.3g})", False
    verdicts.append(CandidateVerdict(pot.name, float(observed[i]), ci, p_value, out, reason, n_i))
  if flips or zeros:
    ne = [v.name for v, p in zip(verdicts, pots) if p.sign_preserving]
    if ne:
      notes.append(f"{flips} sign flips and {zeros} zeros rule out {', '.join(ne)}; "
                   "continuing with the other candidates.")

  # best p of the p-norm scan, and its bootstrap interval
  p_rows = [(i, _p_of(n)) for i, n in enumerate(names) if _p_of(n) is not None]
  p_estimate, p_interval = None, None
  if p_rows:
    idx, ps = map(np.asarray, zip(*p_rows))
    obs_p = observed[idx]
    if np.any(np.isfinite(obs_p)):
      p_estimate = float(ps[np.nanargmin(obs_p)])
      b = boot[idx]
      b = np.where(np.isfinite(b), b, np.inf)
      boot_p = ps[np.argmin(b, axis=0)]
      p_interval = [float(np.percentile(boot_p, lo_q)), float(np.percentile(boot_p, hi_q))]
      if p_estimate in (ps.min(), ps.max()):
        notes.append(f"the best p ({p_estimate:g}) is at the edge of the scan "
                     f"[{ps.min():g}, {ps.max():g}]: the optimum may lie outside it.")

  def key(v):
    cannot = v.ruled_out and not v.reason.startswith(("dual change not", "consistent"))
    return (cannot, np.isnan(v.delta_cdf), v.delta_cdf)

  order = sorted(range(len(verdicts)), key=lambda k: key(verdicts[k]))
  ranking = [dataclasses.asdict(verdicts[k]) for k in order]
  best = order[0]
  if all(v.ruled_out for v in verdicts):
    notes.append("every candidate is ruled out at this alpha; 'best' is the least non-Gaussian.")
  return {"best": names[best], "p_estimate": p_estimate, "p_interval": p_interval,
          "ranking": ranking, "n_weights": int(keep.sum()), "n_unchanged": n_unchanged,
          "notes": notes,
          "settings": {"n_boot": n_boot, "n_null": n_null, "seed": seed, "alpha": alpha,
                       "ci_level": ci_level, "exclude_unchanged": exclude_unchanged},
          "changes": np.where(valid[best], changes[best], np.nan)}


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------


def format_table(res: dict, max_rows: Optional[int] = None) -> str:
  s = res["settings"]
  lines = [f"{res['n_weights']} weights; Delta-CDF of the dual change, "
           f"{100 * s['ci_level']:g}% bootstrap CI ({s['n_boot']} resamples), p-value from "
           f"{s['n_null']} Gaussian-null draws (seed {s['seed']})",
           f"{'rank':>4}  {'potential':<22} {'Delta-CDF':>9}  {'CI':^17} {'p-value':>8}  verdict"]
  rows = res["ranking"] if max_rows is None else res["ranking"][:max_rows]
  for k, r in enumerate(rows, 1):
    ci = f"[{r['ci'][0]:.4f}, {r['ci'][1]:.4f}]"
    verdict = ("RULED OUT: " if r["ruled_out"] else "ok: ") + r["reason"]
    lines.append(f"{k:>4}  {r['name']:<22} {r['delta_cdf']:>9.4f}  {ci:^17} {r['p_value']:>8.3g}"
                 f"  {verdict}")
  if max_rows is not None and len(res["ranking"]) > max_rows:
    lines.append(f"      ... {len(res['ranking']) - max_rows} more (see --json or --all)")
  lines.append(f"best: {res['best']}")
  if res["p_estimate"] is not None:
    lo, hi = res["p_interval"]
    lines.append(f"best p-norm: p = {res['p_estimate']:g}, {100 * s['ci_level']:g}% bootstrap "
                 f"interval [{lo:g}, {hi:g}]")
  lines += [f"note: {n}" for n in res["notes"]]
  return "\n".join(lines)


def to_json(res: dict) -> dict:
  return results_lib.to_jsonable({k: v for k, v in res.items() if k != "changes"})


def plot(res: dict, path: str) -> str:
  """Delta-CDF (with CI) against candidate, and the best candidate's dual change against the
  Gaussian. Writes a PNG."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from scipy import stats

  by_name = {r["name"]: r for r in res["ranking"]}
  pn = sorted((_p_of(n), r) for n, r in by_name.items() if _p_of(n) is not None)
  others = [r for n, r in by_name.items() if _p_of(n) is None]
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5),
                               gridspec_kw={"width_ratios": [1.6, 1]})
  if pn:
    ps = np.array([p for p, _ in pn])
    dc = np.array([r["delta_cdf"] for _, r in pn])
    lo = np.array([r["ci"][0] for _, r in pn])
    hi = np.array([r["ci"][1] for _, r in pn])
    ax.plot(ps, dc, "-o", ms=3, color="#D55E00", label="p-norm")
    ax.fill_between(ps, lo, hi, color="#D55E00", alpha=0.25, lw=0)
    if res["p_estimate"] is not None:
      ax.axvspan(*res["p_interval"], color="0.85", zorder=0, label="p interval")
  # non-p-norm candidates: negative entropy at p = 1 (the p -> 1 limit); others on the right
  x_other = 1.0
  right = (max(p for p, _ in pn) if pn else 1.0) + 0.15
  for k, r in enumerate(others):
    xpos = x_other if r["name"] == "negative_entropy" else right + 0.1 * k
    err = np.array([[r["delta_cdf"] - r["ci"][0]], [r["ci"][1] - r["delta_cdf"]]])
    ax.errorbar([xpos], [r["delta_cdf"]], yerr=np.maximum(err, 0), fmt="s", ms=5,
                color="#0072B2" if not r["ruled_out"] else "0.5", capsize=2)
    ax.annotate(potentials_lib.short_label(r["name"]).replace("hypentropy:", "h:"),
                (xpos, r["delta_cdf"]), textcoords="offset points", xytext=(3, 3), fontsize=7,
                rotation=45)
  ax.set_xlabel("p of the p-norm (NE at p = 1; hypentropy h:beta on the right)")
  ax.set_ylabel(r"$\Delta$CDF of $\nabla\psi(w) - \nabla\psi(w_0)$")
  ax.set_title(f"candidates (best: {res['best']})")
  ax.set_ylim(bottom=0)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  d = np.asarray(res["changes"], np.float64)
  d = d[np.isfinite(d)]
  z = d / np.std(d, ddof=1)
  bx.hist(z, bins=50, density=True, color="#CC79A7", alpha=0.7, label="dual change / std")
  t = np.linspace(-5, 5, 400)
  bx.plot(t, stats.norm.pdf(t), "k", lw=1.5, label="N(0, 1)")
  bx.set_xlim(-5, 5)
  bx.set_title(f"best candidate {res['best']}: dual change")
  bx.legend(fontsize=8)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
  ap = argparse.ArgumentParser(
      prog="mdgeom infer",
      description="Rank candidate geometries of plasticity by the Gaussianity of the dual change "
                  "between weights BEFORE and AFTER learning (paired, same order).")
  ap.add_argument("before", metavar="BEFORE", help="weights before learning (.csv, .npy, .npz)")
  ap.add_argument("after", metavar="AFTER", help="weights after learning (same synapses)")
  ap.add_argument("--column", help="CSV column (name or 0-based index) or NPZ array, for both")
  ap.add_argument("--before-column", help="column/array for BEFORE (overrides --column)")
  ap.add_argument("--after-column", help="column/array for AFTER (overrides --column)")
  ap.add_argument("--candidates", help="comma-separated potentials (default: negative entropy, "
                  "p-norms p-min..p-max, hypentropy over beta, registered potentials)")
  ap.add_argument("--p-min", type=float, default=1.1)
  ap.add_argument("--p-max", type=float, default=3.0)
  ap.add_argument("--p-step", type=float, default=0.05)
  ap.add_argument("--betas", help="comma-separated hypentropy betas (default: median |w0| x "
                  "10^-2 .. 10^1)")
  ap.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples for the CIs")
  ap.add_argument("--n-null", type=int, default=1000, help="Gaussian-null draws for p-values")
  ap.add_argument("--alpha", type=float, default=0.05, help="level at which a candidate's "
                  "Gaussian null is rejected")
  ap.add_argument("--seed", type=int, default=0, help="seed of every random draw")
  ap.add_argument("--exclude-unchanged", action="store_true",
                  help="drop weights with AFTER == BEFORE")
  ap.add_argument("--json", metavar="PATH", help="write the result as JSON")
  ap.add_argument("--figure", metavar="PATH", default="mdgeom_infer.png",
                  help="PNG figure (default: %(default)s)")
  ap.add_argument("--no-figure", action="store_true")
  ap.add_argument("--all", action="store_true", help="print every candidate (default: top 15)")
  return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
  """`mdgeom infer BEFORE AFTER ...`; returns the exit status (0 ok, 2 bad input)."""
  args = build_parser().parse_args(argv)
  start = time.time()
  try:
    if args.n_boot < 10 or args.n_null < 10:
      raise InferenceError("--n-boot and --n-null must be at least 10.")
    if not 0 < args.alpha < 1:
      raise InferenceError("--alpha must be in (0, 1).")
    w0 = read_weights(args.before, args.before_column or args.column)
    w = read_weights(args.after, args.after_column or args.column)
    check_pair(w0, w)
    if args.candidates:
      cands = [c.strip() for c in args.candidates.split(",") if c.strip()]
    else:
      betas = [float(b) for b in args.betas.split(",")] if args.betas else None
      cands = default_candidates(w0, p_min=args.p_min, p_max=args.p_max, p_step=args.p_step,
                                 betas=betas)
    for c in cands:
      try:
        potentials_lib.get(c)
      except ValueError as e:
        raise InferenceError(str(e)) from None
    res = infer(w0, w, cands, n_boot=args.n_boot, n_null=args.n_null, seed=args.seed,
                alpha=args.alpha, exclude_unchanged=args.exclude_unchanged)
  except InferenceError as e:
    print(f"mdgeom infer: error: {e}", file=sys.stderr)
    return 2
  print(format_table(res, None if args.all else 15))
  if args.json:
    results_lib.write_json_atomic(args.json, to_json(res))
    print(f"wrote {args.json}")
  if not args.no_figure:
    print(f"wrote {plot(res, args.figure)}")
  print(f"({time.time() - start:.1f} s)")
  return 0
