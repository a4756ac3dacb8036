"""Lazy and rich regimes (paper appendix A.1; docs/theory.md): one initialisation, two geometries.

Theorem 1 needs the dual change X^T lambda of Eq. 13 to be small against the initial dual weights
grad phi(w0) (lazy learning). This experiment measures the change magnitude (docs/theory.md)

  M = ||grad phi(w*) - grad phi(w0)|| / ||grad phi(w0)|| = ||X^T lambda|| / ||grad phi(w0)||

of the exact minimum-Bregman interpolant w* (Eq. 8/13, `solve.min_bregman_solution`) as the
initial scale c shrinks, for p-norms and negative entropy, and compares it with the closed-form
prediction derived below.

Setting. X: N x D with i.i.d. N(0, 1) entries (jax.random.normal; not the paper's correlated
inputs, because the derivation uses the isotropy X X^T ~ D I). y: +-1 with equal probability,
independent of X (the paper's regression labels; Theorem 2 allows such generic labels), so
s_y^2 = mean(y^2) = 1. A teacher y = X w_T would only change s_y^2 (to ~ D var(w_T)); the
predictions below take s_y^2 from the data.

Derivation (constant initialisation w0 = c 1, c > 0; local potential phi = sum_i f(w_i)).
Write g = f'(c) (the dual weight) and k = f''(c). Eq. 14-15 with H^{-1} = I / k give

  lambda = k (X X^T)^{-1} r,   r = y - X w0 = y - c X 1,
  ||X^T lambda||^2 = k^2 r^T (X X^T)^{-1} X X^T (X X^T)^{-1} r = k^2 r^T (X X^T)^{-1} r.

For Gaussian X and y independent of X: E[y^T (X X^T)^{-1} y] = s_y^2 N / (D - N - 1) (the mean of
an inverse Wishart; ~ N / D when N << D, i.e. X X^T ~ D I); c^2 1^T X^T (X X^T)^{-1} X 1 =
c^2 ||P 1||^2 with P the projection on the row space of X, a uniformly random N-dimensional
subspace, so its mean is c^2 N; the cross term has mean zero. With ||grad phi(w0)|| = sqrt(D) |g|:

  M^2 ~ (k / g)^2 (N / D) (c^2 + s_y^2 / (D - N - 1))                                       (L)

The first term is the dual change needed to cancel the initial output c X 1, the second the one
needed to fit the labels.

  p-norms, f'(c) = c^(p-1), f''(c) = (p-1) c^(p-2), so k / g = (p-1) / c:
    M_p ~ (p-1) sqrt(N / D) sqrt(1 + s_y^2 / (c^2 D))                     (Eq. 77 in spirit)
    lazy (M_p << 1) iff  N << D / (p-1)^2  and  N << c^2 D^2 / ((p-1)^2 s_y^2).
  The dual weight c^(p-1) cancels against k c = (p-1) c^(p-1): while lazy, every p-norm grows as
  1/c below c ~ 1/sqrt(D), and leaves the lazy regime at c*_p ~ (p-1) s_y sqrt(N) / D.

  negative entropy, f'(c) = log c + 1, f''(c) = 1/c, so k / g = 1 / (c (log c + 1)):
    M_NE ~ sqrt(N / D) sqrt(1 + s_y^2 / (c^2 D)) / |log c + 1|               (Eq. 78 in spirit)
    lazy iff  N << D (log c + 1)^2  and  N << c^2 D^2 (log c + 1)^2 / s_y^2,
  looser than any p-norm's by (log c + 1)^2 / (p-1)^2, a factor that grows without bound as
  c -> 0: M_NE / M_p = 1 / ((p-1) |log c + 1|). (At c = 1/e the dual weights log c + 1 vanish and
  M_NE diverges: the dual origin of f(w) = w log w, not a property of learning.)

Random initialisation, w0 = c v. The same steps with H^{-1} = diag(1 / f''(w0)), approximating
X H^{-1} X^T ~ mean(1/f''(w0)) X X^T (N << D; exact for constant w0) and ||P w0||^2 ~ (N/D)||w0||^2:

  M^2 ~ (N / D) (mean(w0^2) + s_y^2 / (D - N - 1)) / (mean(1/f''(w0))^2 mean(f'(w0)^2))     (B)

which is (L) for w0 = c 1. `lazy_bound` evaluates (B) on the drawn w0; it is the prediction drawn
(dashed) in the figure and stored as "bound".

Beyond the linearisation (rich side). For p-norms D_phi(w, c v) -> phi(w) as c -> 0, so w* tends
to the minimum-p-norm interpolant w_0*, whose dual weights f'(w_0*) = X^T mu do not depend on c;
hence M_p -> ||f'(w_0*)|| / ||f'(w0)||, growing as c^-(p-1) rather than 1/c (this is where c^(p-1)
enters the rich side). By Stein's lemma X (f')^{-1}(X^T mu) ~ D E[((f')^{-1})'(u)] mu,
u ~ N(0, ||mu||^2), which gives ||X^T mu|| / sqrt(D) ~ f'(a_p) with

  a_p = s_y sqrt(N) / (D q m_{q-1}),  q = 1/(p-1),  m_s = E|z|^s = 2^(s/2) Gamma((s+1)/2) / sqrt(pi)
  M_p,rich ~ |f'(a_p)| / rms(f'(w0))   (= (a_p / c)^(p-1) for w0 = c 1)                    (R)

(`rich_asymptote`, dotted in the figure). For p = 2 it equals (L) at small c. Negative entropy
keeps every weight's sign; as c -> 0 its objective is dominated by -log(c) sum_i |w_i|, w* tends to
the sign-constrained minimum-L1 interpolant, and lambda / |log c| to that linear programme's dual
nu (with sign(w0) X^T nu <= 1), so M_NE tends to rms(X^T nu) = O(1) (0.2-0.5 at c = 1e-4 in the
default run): it saturates instead of growing as c -> 0, and (L) overestimates it there. So at
small c the same data and initialisation are rich under every p-norm (M >> 1) and stay at M < 1
under negative entropy.

Initialisations. "constant": w0 = c 1 (A.1's setting). "lognormal": w0 = c v, |v| log-normal with
mean 1 and standard deviation 1 (`synthetic.initial_weights("lognormal", std=1)`), each sign + or
- with probability 1/2; v is drawn once per seed and rescaled, so c is a pure scale. Not Gaussian:
N(0, c^2) puts weights arbitrarily close to 0, where 1/f''(w) = 1/(2|w|) of the 3-norm is infinite
(the linearisation, Eq. 14, is undefined, and E[1/f''(w0)] in (B) diverges) and where negative
entropy's dual weights log|w| diverge. Random signs are handled, not excluded: mdgeom's negative
entropy is |w| log|w| on each half-line and its exact solution keeps the sign of every w0_i, and the
sign-constrained problem is as feasible as the all-positive one (flipping columns of an i.i.d.
Gaussian X leaves its distribution unchanged): with high probability when N < D/2, where the D
columns positively span R^N (Wendel's theorem). Every solve's converged flag, Newton steps and
residual are stored; a solve that does not converge (no interpolant with the signs of w0, e.g.
N > D/2, or too few Newton steps) is kept and flagged in "failures".

    python -m experiments.regimes --config=configs/regimes.py --workdir=runs/regimes

Writes workdir/results.json:
    {"config": {...}, "init_kinds": [...], "potentials": [...], "init_scales": [c...],
     "num_data": [N...], "dim": D, "curve_scales": [dense c...],
     "<init>": {"<potential>": {
         "magnitude": [N][c][seed]             exact (Eq. 8/13), analysis.change_magnitude
         "magnitude_linearized": [N][c][seed]  ||X^T lambda|| / ||f'(w0)||, lambda from Eq. 15
         "converged", "iterations", "residual": [N][c][seed]
         "bound": [N][c], "bound_per_seed": [N][c][seed]   prediction (B)
         "rich_asymptote": [N][c] or null                  (R), p-norms only
         "bound_curve", "rich_curve": [N][curve]           (B), (R) on curve_scales (seed mean)
         "magnitude_median": [N][c]                        median over converged seeds}},
     "failures": [{"init", "potential", "num_data", "scale", "seed", "residual", "iterations",
                   "error"}], "wall_time_s": ...}
Magnitudes that could not be computed are null. Each (init, potential, N) cell is stored as it
finishes and skipped on rerun.
"""

from __future__ import annotations

import contextlib
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from configs import regimes as regimes_config
from experiments import _cli
from mdgeom import analysis, potentials, results, solve, synthetic


INIT_KINDS = ("constant", "lognormal")
PER_SEED = ("magnitude", "magnitude_linearized", "converged", "iterations", "residual",
            "bound_per_seed")


# ----------------------------------------------------------------------------------------------
# Data and initial weights (every draw derives from config.seed)
# ----------------------------------------------------------------------------------------------


def num_data(config) -> list[int]:
  """N = round(D^a) for every data exponent a."""
  return [int(round(config.dim ** a)) for a in config.data_exponents]


def draw_problem(config, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(X, y) for N = n and one seed: X (n, D) i.i.d. N(0, 1), y (n,) +-1 with equal probability."""
  key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(config.seed), seed), 1)
  kx, ky = jax.random.split(jax.random.fold_in(key, n))
  X = jax.random.normal(kx, (n, config.dim))
  y = jnp.where(jax.random.bernoulli(ky, 0.5, (n,)), 1.0, -1.0)
  return np.asarray(X, np.float64), np.asarray(y, np.float64)


def init_shape(config, kind: str, seed: int) -> np.ndarray:
  """v with w0 = c v: ones, or a log-normal |v| (mean 1, std 1) with random signs."""
  if kind == "constant":
    return np.ones(config.dim)
  if kind == "lognormal":
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(config.seed), seed), 0)
    return np.asarray(synthetic.initial_weights(key, "lognormal", (config.dim,), std=1.0),
                      np.float64)
  raise ValueError(f"unknown init kind {kind!r}; known: {INIT_KINDS}.")


def initial_weights(config, kind: str, scale: float, seed: int) -> np.ndarray:
  """w0 = c v (float64), shape (D,)."""
  return float(scale) * init_shape(config, kind, seed)


def curve_scales(config) -> np.ndarray:
  """The dense, log-spaced c values on which the predictions are drawn."""
  lo, hi = min(config.init_scales), max(config.init_scales)
  return np.logspace(np.log10(lo), np.log10(hi), config.curve_points)


# ----------------------------------------------------------------------------------------------
# The closed-form predictions (module docstring, (B) and (R))
# ----------------------------------------------------------------------------------------------


def lazy_bound(potential, w0, n: int, label_ms: float = 1.0) -> np.ndarray:
  """Prediction (B) of the change magnitude from Eq. 14-15, over the last axis of w0.

  M ~ sqrt((N / D) (mean(w0^2) + s_y^2 / (D - N - 1))) / (mean(1/f''(w0)) rms(f'(w0))),
  label_ms = s_y^2 = mean(y^2). For w0 = c 1 this is (L): (f''(c) / |f'(c)|) sqrt(N/D) sqrt(c^2 +
  s_y^2 / (D - N - 1)). Leading axes of w0 are batch axes.
  """
  pot = potentials.get(potential)
  with jax.enable_x64(True):
    w0 = jnp.asarray(w0, jnp.float64)
    d = w0.shape[-1]
    inv_hess = jnp.mean(pot.inverse_hessian_diag(w0), axis=-1)
    dual_rms = jnp.sqrt(jnp.mean(pot.mirror_map(w0) ** 2, axis=-1))
    spread = jnp.mean(w0 ** 2, axis=-1) + label_ms / (d - n - 1)
    return np.asarray(jnp.sqrt(n / d * spread) / (inv_hess * dual_rms))


def _pnorm_p(pot) -> float | None:
  m = potentials._PNORM_RE.match(pot.name)
  return float(m.group(1)) if m else None


def rich_asymptote(potential, w0, n: int, label_ms: float = 1.0) -> np.ndarray | None:
  """Asymptote (R) of a p-norm's change magnitude as c -> 0: |f'(a_p)| / rms(f'(w0)).

  a_p = s_y sqrt(N) / (D q m_{q-1}), q = 1/(p-1), m_s = E|z|^s, is the scale of the minimum-p-norm
  interpolant's weights (Stein's lemma, module docstring). None for other potentials.
  """
  pot = potentials.get(potential)
  p = _pnorm_p(pot)
  if p is None:
    return None
  q = 1.0 / (p - 1.0)
  abs_moment = 2 ** ((q - 1) / 2) * math.gamma(q / 2) / math.sqrt(math.pi)  # E|z|^(q-1)
  with jax.enable_x64(True):
    w0 = jnp.asarray(w0, jnp.float64)
    a_p = math.sqrt(label_ms * n) / (w0.shape[-1] * q * abs_moment)
    dual_rms = jnp.sqrt(jnp.mean(pot.mirror_map(w0) ** 2, axis=-1))
    return np.asarray(jnp.abs(pot.mirror_map(jnp.asarray(a_p))) / dual_rms)


# ----------------------------------------------------------------------------------------------
# One cell: (init kind, potential, N) over every c and seed
# ----------------------------------------------------------------------------------------------


def solve_point(config, pot, X, y, w0) -> dict:
  """Exact (Eq. 8/13) and linearised (Eq. 14-15) solutions at one point, and their magnitudes."""
  n = X.shape[0]
  eager = (jax.disable_jit() if n * n * X.shape[1] < config.eager_below_cost
           else contextlib.nullcontext())
  with eager:
    sol = solve.min_bregman_solution(pot, X, y, w0, max_iter=config.max_iter,
                                     raise_on_failure=False)
  with jax.disable_jit():  # one Cholesky solve, no loop: op by op beats compiling it
    lin = solve.linearized_solution(pot, X, y, w0, raise_on_failure=False)
  error = None
  try:
    magnitude = analysis.change_magnitude(pot, w0, sol.w)
  except ValueError as e:  # sign flips or non-finite weights: only from a failed solve
    magnitude, error = float("nan"), str(e).split(". ")[0]
  with jax.enable_x64(True):
    dual0 = np.asarray(pot.mirror_map(jnp.asarray(w0)))
  # the linearised dual change is X^T lambda itself (Eq. 14), not f'(w_lin) - f'(w0)
  magnitude_lin = float(np.linalg.norm(X.T @ lin.lam) / np.linalg.norm(dual0))
  return {"magnitude": magnitude, "magnitude_linearized": magnitude_lin,
          "converged": bool(sol.converged), "iterations": int(sol.iterations),
          "residual": float(sol.residual), "error": error}


def run_cell(config, init: str, potential: str, n: int) -> dict:
  """Every (c, seed) point of one (init kind, potential, N) cell; lists indexed [c][seed]."""
  pot = potentials.get(potential)
  scales = np.asarray(config.init_scales, np.float64)
  curve = curve_scales(config)
  start = time.time()
  out = {k: [[None] * config.num_seeds for _ in scales] for k in PER_SEED}
  errors = []
  bound_curve, rich_points, rich_curve = [], [], []
  for s in range(config.num_seeds):
    X, y = draw_problem(config, n, s)
    v = init_shape(config, init, s)
    label_ms = float(np.mean(y ** 2))
    bounds = lazy_bound(pot, scales[:, None] * v, n, label_ms)
    bound_curve.append(lazy_bound(pot, curve[:, None] * v, n, label_ms))
    rich = rich_asymptote(pot, curve[:, None] * v, n, label_ms)
    if rich is not None:
      rich_curve.append(rich)
      rich_points.append(rich_asymptote(pot, scales[:, None] * v, n, label_ms))
    for i, c in enumerate(scales):
      point = solve_point(config, pot, X, y, c * v)
      for k in PER_SEED[:-1]:
        out[k][i][s] = point[k]
      out["bound_per_seed"][i][s] = float(bounds[i])
      if not point["converged"] or point["error"]:
        errors.append({"scale": float(c), "seed": s, "residual": point["residual"],
                       "iterations": point["iterations"], "error": point["error"]})
  out["bound"] = np.mean(np.asarray(out["bound_per_seed"]), axis=-1)
  out["rich_asymptote"] = np.mean(rich_points, axis=0) if rich_points else None
  out["bound_curve"] = np.mean(bound_curve, axis=0)
  out["rich_curve"] = np.mean(rich_curve, axis=0) if rich_curve else None
  out["failures"] = errors
  out["seconds"] = time.time() - start
  return out


# ----------------------------------------------------------------------------------------------
# The sweep
# ----------------------------------------------------------------------------------------------


def _validate(config) -> None:
  """Everything the run needs, before any cell: keys, types, finite values, non-empty lists."""
  _cli.check_config(config, regimes_config.get_config(), where=" of configs/regimes.py")
  for kind in config.init_kinds:
    if kind not in INIT_KINDS:
      raise _cli.ConfigError(f"unknown init kind {kind!r} in config.init_kinds; known: "
                             f"{INIT_KINDS}.")
  if not config.init_kinds or not config.potentials:
    raise _cli.ConfigError("config.init_kinds and config.potentials must not be empty.")
  _cli.check_potentials(config, "potentials")
  scales = np.asarray(config.init_scales, np.float64)
  if scales.ndim != 1 or scales.size == 0 or not np.all(np.isfinite(scales) & (scales > 0)):
    raise _cli.ConfigError(f"config.init_scales must be a non-empty list of finite c > 0, got "
                           f"{tuple(config.init_scales)}.")
  if int(config.dim) != config.dim or config.dim < 4:
    raise _cli.ConfigError(f"config.dim must be an integer >= 4, got {config.dim!r}.")
  for a in config.data_exponents:
    if not 0 < a < 1:
      raise _cli.ConfigError(f"config.data_exponents must lie in (0, 1) (N = D^a < D), got {a}.")
  for a, n in zip(config.data_exponents, num_data(config)):
    if not 1 <= n <= config.dim - 2:
      raise _cli.ConfigError(
          f"config.data_exponents: {a} gives N = {n} data points for D = {config.dim}: need "
          f"1 <= N <= D - 2 (the prediction uses 1 / (D - N - 1)).")
  for key, low in (("num_seeds", 1), ("max_iter", 1), ("curve_points", 2)):
    if int(config[key]) != config[key] or config[key] < low:
      raise _cli.ConfigError(f"config.{key} must be an integer >= {low}, got {config[key]!r}.")
  if not config.eager_below_cost >= 0:
    raise _cli.ConfigError(f"config.eager_below_cost must be >= 0, got "
                           f"{config.eager_below_cost!r}.")


def _nan(x) -> np.ndarray:
  """Stored values (null for missing) as a float array with NaN."""
  return np.array(x, dtype=np.float64)


def _median_converged(mag, converged) -> np.ndarray:
  """Median over seeds (last axis) of the finite magnitudes of converged solves; NaN if none."""
  m = np.where(np.asarray(converged, bool), _nan(mag), np.nan)
  out = np.full(m.shape[:-1], np.nan)
  for idx in np.ndindex(out.shape):
    row = m[idx][np.isfinite(m[idx])]
    if row.size:
      out[idx] = np.median(row)
  return out


def run(config, workdir: str) -> dict:
  """Runs every (init kind, potential, N) cell, skipping finished ones; writes results.json."""
  _validate(config)
  results.prepare_workdir(workdir)
  cfg = results.config_dict(config)
  store = results.CellStore(workdir, cfg)
  names = [potentials.get(n).name for n in config.potentials]
  ns = num_data(config)
  out = {"config": cfg, "init_kinds": list(config.init_kinds), "potentials": names,
         "init_scales": list(config.init_scales), "num_data": ns, "dim": config.dim,
         "curve_scales": curve_scales(config)}
  cells = [(init, name, n) for init in config.init_kinds for name in names for n in ns]
  start = time.time()
  # Each cell is computed once by whichever worker claims it (results.run_cells).
  values = store.run([store.cell(f"{init}__{name}__N={n}", lambda init=init, name=name, n=n:
                                 run_cell(config, init, name, n)) for init, name, n in cells])
  logging.info("%d cells, %d computed here", len(values), len(store.computed))
  done = {(init, name, n): values[f"{init}__{name}__N={n}"] for init, name, n in cells}
  failures = []
  for init in config.init_kinds:
    out[init] = {}
    for name in names:
      cs = [done[init, name, n] for n in ns]
      entry = {k: [c[k] for c in cs] for k in PER_SEED}
      for k in ("bound", "rich_asymptote", "bound_curve", "rich_curve"):
        entry[k] = None if cs[0][k] is None else [c[k] for c in cs]
      entry["magnitude_median"] = _median_converged(entry["magnitude"], entry["converged"])
      out[init][name] = entry
      for n, c in zip(ns, cs):
        failures += [dict(f, init=init, potential=name, num_data=n) for f in c["failures"]]
  for f in failures:
    logging.warning("not converged / not computed: %s", f)
  out["failures"] = failures
  out["wall_time_s"] = time.time() - start
  results.write_json_atomic(os.path.join(workdir, "results.json"), out)
  return results.to_jsonable(out)



def summary(res: dict) -> str:
  """Median exact magnitude (and prediction (B)) per potential and c, one table per init and N."""
  lines = []
  scales = res["init_scales"]
  for init in res["init_kinds"]:
    for j, n in enumerate(res["num_data"]):
      lines.append(f"{init} init, N = {n}, D = {res['dim']}: median change magnitude over "
                   f"{res['config']['num_seeds']} seeds (prediction (B)) by c")
      lines.append(f"{'':<6}" + "".join(f"{c:>17.3g}" for c in scales))
      for name in res["potentials"]:
        r = res[init][name]
        cells = [f"{_fmt(m)} ({_fmt(b)})" for m, b in zip(r["magnitude_median"][j], r["bound"][j])]
        lines.append(f"{potentials.short_label(name):<6}" + "".join(f"{c:>17}" for c in cells))
  lines.append(f"{len(res['failures'])} solve(s) did not converge or could not be measured.")
  return "\n".join(lines)


def _fmt(x) -> str:
  return "nan" if x is None or not np.isfinite(x) else f"{x:.3g}"


if __name__ == "__main__":
  _cli.main(run, summary, "configs/regimes.py", "runs/regimes")
