"""Geometry inference by the measurement model: `infer_model`, the default of `infer_geometry`.

Every candidate geometry is a likelihood for the AFTER measurements given the BEFORE ones
(`mdgeom.inference.likelihood`), with the nuisances of real recordings estimated rather than
assumed: drift, change size, per-unit scales, a gain between the sessions, multiplicative
measurement noise and a fraction of silent synapses. The p-norms form one continuous family
(p = 1 is negative entropy), so the answer is one interval for p, contiguous by construction,
and the statuses of negative entropy, the 2-norm and the 3-norm are read off it. Intervals are
widened where the model is only approximately right: by the sandwich variance (kappa) and by the
p-estimate's resolution (`resolution`, 0.05 by default: the bias of the estimate on trained
networks, where the Gaussian model holds only approximately; docs/inference.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import numpy as np
from scipy import stats

from mdgeom import potentials as potentials_lib
from mdgeom import scales as scales_lib
from mdgeom.inference import candidates as cands
from mdgeom.inference import fit_check, measured, mle, profile
from mdgeom.inference.io import InferenceError
from mdgeom.inference.report import ModelInference, Row

RESOLUTION = 0.05
MAX_SYNAPSES = 20_000  # the likelihood's synapses at most (drawn at random): beyond, the interval is
#                        dominated by the resolution, which more synapses cannot narrow


def _classify(candidates) -> tuple[list[float], list[float], list]:
  """Candidate potentials -> (p values, hypentropy betas, other potentials); negative entropy is
  p = 1."""
  ps, betas, others = [], [], []
  for pot in candidates:
    fam = cands.family(pot)
    if fam == "negative_entropy":
      ps.append(1.0)
    elif fam == "pnorm":
      ps.append(cands.pnorm_p(pot))
    elif fam == "hypentropy":
      betas.append(cands.hypentropy_beta(pot))
    else:
      others.append(pot)
  return ps, betas, others


def _check_noise(noise):
  if isinstance(noise, str):
    if noise != "auto":
      raise InferenceError(f"noise={noise!r}: give 'auto' (estimated), or the relative SD of the "
                           "measurement noise, e.g. 0.05 for 5%.")
    return noise
  try:
    v = float(noise)
  except (TypeError, ValueError):
    raise InferenceError(f"noise={noise!r}: give 'auto' or the relative SD of the measurement "
                         "noise, e.g. 0.05 for 5%.") from None
  if not (np.isfinite(v) and 0 <= v < 2):
    raise InferenceError(f"noise = {noise!r}: the relative SD of the measurement noise must be in "
                         "[0, 2) (0.05 = 5%), or 'auto'.")
  return v


def _check_gain(gain):
  if isinstance(gain, str):
    if gain != "auto":
      raise InferenceError(f"gain={gain!r}: give 'auto' (estimated) or a fixed gain, e.g. 1.0.")
    return gain
  try:
    v = float(gain)
  except (TypeError, ValueError):
    raise InferenceError(f"gain={gain!r}: give 'auto' or a positive number.") from None
  if not (np.isfinite(v) and v > 0):
    raise InferenceError(f"gain = {gain!r}: a gain between the sessions must be positive.")
  return v


def infer_model(
    w0: np.ndarray,
    w: np.ndarray,
    candidates: Iterable | None = None,
    *,
    ids: scales_lib.UnitIds | None = None,
    repeat: np.ndarray | None = None,
    noise: Any = "auto",
    gain: Any = "auto",
    silent: bool = True,
    level: float = 0.05,
    resolution: float = RESOLUTION,
    p_max: float = 4.0,
    max_synapses: int | None = MAX_SYNAPSES,
    seed: int = 0,
    quadrature: int = measured.QUADRATURE,
    leaves: Sequence[str] = ("<array>",),
    fit_check_sims: int = fit_check.N_SIM,
) -> ModelInference:
  """The measurement-model inference on flat float64 pairs (see `infer_geometry` for the
  arguments, which it validates and flattens)."""
  start = time.time()
  noise = _check_noise(noise)
  gain = _check_gain(gain)
  if not 0 <= resolution < 1:
    raise InferenceError(f"resolution = {resolution!r}: give the p-estimate's resolution in "
                         "[0, 1), e.g. 0.05 (0: the statistical interval alone).")
  default = candidates is None
  pots = ([potentials_lib.get(n) for n in potentials_lib.registered_names()] if default else
          cands.resolve(candidates))
  ps, betas, others = _classify(pots)
  if default:
    ps, betas = [1.0, 2.0, 3.0], []
  with jax.enable_x64(True):
    prep = measured.prepare(w0, w, ids, repeat, max_synapses, seed)
    if prep.n_used < 20:
      raise InferenceError(
          f"only {prep.n_used} synapses can enter the likelihood ({prep.n_unchanged} unchanged, "
          f"{prep.n_zero} exactly zero before or after): at least 20 are needed.")
    settings = measured.Settings(noise, gain, bool(silent), level, quadrature)
    fams: dict[str, measured.FamilyFit] = {}
    if ps:
      top = max(p_max, max(ps))
      fams["pnorm"] = measured.fit_pnorm(prep, settings, (1.0, top), named=ps)
    if default or betas:
      fams["hypentropy"] = measured.fit_hypentropy(prep, settings)
    for pot in others:
      fams[pot.name] = measured.fit_fixed(prep, settings, pot)
    return _assemble(prep, settings, fams, pots, ps, betas, others, default, resolution, leaves,
                     start, fit_check_sims, seed)


def _assemble(prep, settings, fams, pots, ps, betas, others, default, resolution, leaves, start,
              fit_check_sims, seed) -> ModelInference:
  level = settings.level
  crit = float(stats.chi2.ppf(1 - level, 1))
  # the best family (AIC: one log-likelihood unit per shape parameter)
  aic = {k: f.loglik - f.n_shape for k, f in fams.items()}
  best_fam = max(aic, key=aic.get)
  fam_p: dict[str, tuple[float, float]] = {}
  for k, f in fams.items():
    if k == best_fam:
      fam_p[k] = (1.0, 0.0)
    else:
      fam_p[k] = profile.vuong(fams[best_fam].per_synapse, f.per_synapse,
                               fams[best_fam].n_shape, f.n_shape, prep.rows, prep.cols)
  rows: list[Row] = []
  p_est = p_int = p_stat = None
  ruled_ne = prep.n_flips > 0 or prep.n_zero > 0
  if "pnorm" in fams:
    fp = fams["pnorm"]
    prof = fp.profile
    p_est = fp.shape
    p_stat = list(fp.interval)
    lo = max(1.0 if not ruled_ne else 1.0 + 1e-3, p_stat[0] - resolution)
    open_end = prof.at_edge == "upper"
    hi = p_stat[1] if open_end else p_stat[1] + resolution
    p_int = [lo, hi]
    family_ok = fam_p["pnorm"][0] >= level
    named = sorted(set(ps) | ({1.0, 2.0, 3.0} if default else set()))
    for p in named:
      rows.append(_pnorm_row(p, fp, prof, p_int, resolution, family_ok, fam_p["pnorm"], prep,
                             level, crit))
    if default and not any(abs(p_est - p) < 1e-6 for p in named):
      rows.append(Row(name=f"{p_est:.3g}-norm" if p_est > 1 else "negative_entropy",
                      label="best p", family="pnorm", p=p_est, beta=None, loglik=fp.loglik,
                      lr=0.0, p_value=1.0, status="estimate", reason="the maximum of the profile",
                      estimate=True))
  if "hypentropy" in fams:
    fh = fams["hypentropy"]
    beta_rows = betas if betas else [fh.shape]
    for b in beta_rows:
      rows.append(_hyp_row(b, fh, fam_p["hypentropy"], level, estimate=not betas))
  for pot in others:
    f = fams[pot.name]
    pv, diff = fam_p[pot.name]
    status = "best" if pot.name == best_fam else ("indistinguishable" if pv >= level else "worse")
    if pot.sign_preserving and (prep.n_flips or prep.n_zero):
      status = "ruled out"
    rows.append(Row(name=pot.name, label=cands.label(pot), family="other", p=None, beta=None,
                    loglik=f.loglik, lr=2 * max(diff, 0.0), p_value=pv, status=status,
                    reason=_reason(status, pv, prep)))
  # the best row: the candidate with the highest log-likelihood that is in the set
  best = _choose_best(rows, default, best_fam)
  top_ll = max(r.loglik for r in rows if np.isfinite(r.loglik))
  for r in rows:
    r.delta = r.loglik - top_ll
  rows.sort(key=lambda r: -r.loglik if np.isfinite(r.loglik) else np.inf)
  fb = fams[best_fam]
  nuis = _nuisances(fb, prep, settings, fams)
  ll0, g0, s0 = measured.no_change(prep, settings)
  lr0 = 2.0 * max(fb.loglik - ll0, 0.0)
  nuis["no_change"] = {"loglik": ll0, "lr": lr0, "p_value": float(stats.chi2.sf(lr0, 2)),
                       "gain": g0, "noise": measured.relative_noise(s0) if np.isfinite(s0)
                       else float("nan")}
  check = fit_check.check(fb, prep, settings, n_sim=fit_check_sims, seed=seed)
  return ModelInference(
      best=best.name if best else "", rows=rows, p_estimate=p_est, p_interval=p_int,
      p_interval_statistical=p_stat, resolution=resolution, best_family=best_fam,
      p_open=bool("pnorm" in fams and fams["pnorm"].profile.at_edge == "upper"),
      family_p_values={k: v[0] for k, v in fam_p.items()},
      kappa=fams["pnorm"].profile.kappa if "pnorm" in fams else float("nan"),
      nuisances=nuis, fit=check, prep=prep, level=level, default_candidates=default,
      leaves=list(leaves), settings=settings._asdict(), seconds=time.time() - start,
      profile={k: {"theta": f.profile.thetas.tolist(), "loglik": f.profile.loglik.tolist(),
                   "exact": f.profile.exact.tolist(), "loglik_hat": f.profile.loglik_hat,
                   "kappa": f.profile.kappa, "critical": f.profile.critical}
               for k, f in fams.items() if f.profile is not None},
      change=check.pop("residuals", None))


def _pnorm_row(p, fp, prof, p_int, resolution, family_ok, fam_test, prep, level, crit) -> Row:
  """A p-norm (or negative entropy at p = 1) read off the profile: its p-value tests that the
  pseudo-true p lies within `resolution` of it."""
  name = "negative_entropy" if p == 1.0 else potentials_lib.pnorm(p).name
  label = "NE" if p == 1.0 else f"{p:g}"
  if p == 1.0 and (prep.n_flips or prep.n_zero):
    return Row(name=name, label=label, family="pnorm", p=p, beta=None, loglik=-np.inf,
               lr=np.inf, p_value=0.0, status="ruled out",
               reason=f"{prep.n_flips} weights changed sign and {prep.n_zero} are zero or reach "
                      "zero; negative entropy keeps every weight on its half-line")
  near = p - resolution * np.sign(p - fp.shape)
  if abs(p - fp.shape) <= resolution:
    near = fp.shape
  lr = _lr_at(prof, near - 1.0, crit)
  pv = float(stats.chi2.sf(lr, 1))
  inside = p_int[0] - 1e-9 <= p <= p_int[1] + 1e-9 or (
      prof.at_edge == "upper" and p >= p_int[1])
  ll_at = _value_at(prof, p - 1.0, crit)
  if not family_ok:
    status, reason = "worse", (f"the p-norm family as a whole fits worse than the best family "
                               f"(p = {fam_test[0]:.2g})")
  elif inside:
    status, reason = "indistinguishable", f"inside the p interval (p = {pv:.2g})"
  else:
    status, reason = "worse", f"outside the p interval (p = {pv:.2g})"
  return Row(name=name, label=label, family="pnorm", p=p, beta=None, loglik=ll_at, lr=lr,
             p_value=pv if family_ok else min(pv, fam_test[0]), status=status, reason=reason)


def _value_at(prof, theta, crit) -> float:
  """The profile at theta: an exact fit unless the rough scan already puts theta far outside
  (more than 10 critical values), where the scaled rough value is reported."""
  k = np.flatnonzero(np.isclose(prof.thetas, theta, rtol=0, atol=1e-9))
  if k.size and (prof.exact[k[0]] or 2.0 * (prof.loglik_hat - prof.loglik[k[0]]) / prof.kappa
                 > 10.0 * crit):
    return float(prof.loglik[k[0]])
  with jax.enable_x64(True):
    return prof.exact_value(theta)


def _lr_at(prof, theta, crit) -> float:
  return 2.0 * max(prof.loglik_hat - _value_at(prof, theta, crit), 0.0) / prof.kappa


def _hyp_row(beta, fh, fam_test, level, estimate) -> Row:
  theta = float(np.log(beta))
  prof = fh.profile
  crit = float(stats.chi2.ppf(1 - level, 1))
  ll = fh.loglik if estimate else _value_at(prof, theta, crit)
  lr = 2.0 * max(prof.loglik_hat - ll, 0.0) / prof.kappa
  pv = min(float(stats.chi2.sf(lr, 1)), fam_test[0])
  status = "indistinguishable" if pv >= level else "worse"
  return Row(name=potentials_lib.hypentropy(float(f"{beta:.3g}")).name, label=f"h:{beta:.3g}",
             family="hypentropy", p=None, beta=float(beta), loglik=ll, lr=lr, p_value=pv,
             status=status, reason=("the best beta" if estimate else "") , estimate=estimate)


def _reason(status, pv, prep) -> str:
  if status == "ruled out":
    return (f"{prep.n_flips} sign flips and {prep.n_zero} zeros: it keeps every weight on its "
            "half-line")
  return f"p = {pv:.2g} that it fits no worse than the best"


def _choose_best(rows, default, best_fam) -> Row | None:
  """The best row: with the default candidates, the maximum of the best family (AIC); with a
  list, the listed candidate of highest log-likelihood."""
  ok = [r for r in rows if r.status != "ruled out" and np.isfinite(r.loglik)]
  if not ok:
    return None
  if default:
    fam = best_fam if best_fam in ("pnorm", "hypentropy") else "other"
    pool = [r for r in ok if r.family == fam and (r.estimate or fam == "other")]
    if not pool and fam == "pnorm":  # the estimate is one of the named points
      pool = [r for r in ok if r.family == "pnorm"]
    if fam == "other":
      pool = [r for r in ok if r.name == best_fam]
    if pool:
      best = max(pool, key=lambda r: r.loglik)
      best.status = "best"
      return best
  best = max(ok, key=lambda r: r.loglik)
  if best.status == "indistinguishable":
    best.status = "best"
  return best


def _nuisances(fam, prep, settings, fams) -> dict:
  out = dict(fam.nuisances())
  if settings.gain == "auto":
    lg, se = measured.nuisance_wald(fam, prep, mle.LOGG)
    z = stats.norm.ppf(1 - settings.level / 2)
    out["gain_interval"] = [float(np.exp(lg - z * se)), float(np.exp(lg + z * se))]
    out["gain_p_value"] = float(2 * stats.norm.sf(abs(lg) / se)) if se > 0 else float("nan")
  if fam.spec.noisy:
    out["noise"] = measured.relative_noise(out["noise_log_sd"])
    if settings.noise != "auto":
      # the noise freed in every family with a shape (the best at the given noise may not be
      # the best once the noise is free), against the best fit at the given noise; and within
      # each family (a family may fit the given level only by bending its shape)
      given = 100 * float(settings.noise)
      checks = {n: measured.check_noise(f, prep, settings.level) for n, f in fams.items()
                if f.n_shape or f is fam}
      ok = {n: c for n, c in checks.items() if np.isfinite(c["loglik"])} or checks
      top = max(ok.values(), key=lambda c: c["loglik"])
      lr = 2.0 * max(top["loglik"] - fam.loglik, 0.0)
      kappa = max(fam.profile.kappa if fam.profile is not None else 1.0, 1.0)
      out["noise_check"] = {"noise": top["noise"], "lr": lr,
                            "p_value": float(stats.chi2.sf(lr / kappa, 1)),
                            "families": {n: {k: c[k] for k in ("noise", "lr", "p_value")}
                                         for n, c in checks.items()}}
      if out["noise_check"]["p_value"] < 0.01:
        out["noise_warning"] = (
            f"the data contradict the given noise level {given:.3g}% (likelihood ratio p = "
            f"{out['noise_check']['p_value']:.2g}): estimated {100 * top['noise']:.2g}%. Rerun "
            "with noise='auto' (--noise auto) or a repeated baseline.")
      else:
        bad = [(n, c) for n, c in checks.items() if c["p_value"] < 0.01]
        if bad:
          n, c = min(bad, key=lambda nc: nc[1]["p_value"])
          what = "p-norms" if n == "pnorm" else n
          out["noise_warning"] = (
              f"under the {what} the data contradict the given noise level {given:.3g}% "
              f"(p = {c['p_value']:.2g}; estimated {100 * c['noise']:.2g}%): the verdict depends "
              "on the noise level given. Rerun with noise='auto' (--noise auto) or a repeated "
              "baseline.")
    if settings.noise == "auto":
      prof = measured.noise_profile(fam, prep, settings.level)
      out["noise_interval"] = [measured.relative_noise(prof["lower"][0]),
                               measured.relative_noise(prof["upper"][0])]
      if fam.n_shape and fam.family == "pnorm" and prof["lower"][1] is not None:
        out["p_at_noise_ends"] = [prof["lower"][1] + 1.0, prof["upper"][1] + 1.0]
  return out
