"""Robustness to the hypothesised potential (paper section 4.2, Fig. 3B).

For each initialisation (Gaussian N(0, 1/D) or signed log-normal) and true potential phi, draw
w0 and set grad phi(w) = grad phi(w0) + c f'(1/sqrt(D)) xi with xi ~ N(0, 1); then measure the
Delta-CDF and change magnitude of the dual change under every hypothesised potential psi.
Vectorised over seeds (vmap) and over the hypothesised p-norms (vmap over p).

    python -m experiments.robustness --config=configs/robustness.py --workdir=runs/robustness

Writes workdir/results.json:
    {"config": {...}, "true_potentials": [...], "hypothesized_potentials": [...],
     "<init>": {"delta_cdf_mean": [[...]], "delta_cdf_std": [[...]], "magnitude_mean": [[...]],
                "delta_cdf_centered_mean": [[...]], "delta_cdf_centered": [[[per seed]]],
                "delta_cdf": [[[per seed]]], "magnitude": [[[per seed]]],
                "sign_flip_fraction": [[per seed]]}}
arrays indexed [true][hypothesised](seed); std over seeds with ddof=1. Each (init, true potential)
cell is stored as it finishes and skipped on rerun; workers started with the same command on the
same workdir share the cells (mdgeom.results).
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from configs import robustness as robustness_config
from experiments import _cli
from mdgeom import analysis, potentials, results, synthetic


def _split_pnorms(names):
  """Indices and p values of the hypothesised p-norms (batched by vmap over p), and the rest."""
  pn_idx, ps, other_idx = [], [], []
  for i, name in enumerate(names):
    m = potentials._PNORM_RE.match(name.strip().lower())
    if m:
      pn_idx.append(i)
      ps.append(float(m.group(1)))
    else:
      other_idx.append(i)
  return pn_idx, ps, other_idx


def draw_weights(config, init: str, true_name: str, init_index: int, true_index: int):
  """(w0, w), each [num_seeds, num_weights], for one cell; seed s uses fold_in(key, s)."""
  true = potentials.get(true_name)
  base = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(config.seed), init_index),
                            true_index)
  keys = jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.arange(config.num_seeds))
  std = 1.0 / np.sqrt(config.width if init == "gaussian" else config.num_weights)
  scale = config.change_scale * true.mirror_map(jnp.asarray(1.0 / np.sqrt(config.width)))

  def one(key):
    k0, k1 = jax.random.split(key)
    w0 = synthetic.initial_weights(k0, init, (config.num_weights,), std=std)
    xi = jax.random.normal(k1, (config.num_weights,))
    return w0, synthetic.gaussian_dual_change(true, w0, xi, scale)

  return jax.jit(jax.vmap(one))(keys)


def hypothesis_stats(w0, w, names, method: str):
  """Delta-CDF (the paper's and centred) and magnitude [hypothesised, seed] of the dual change of
  every hypothesised psi."""
  n_h, n_s = len(names), w0.shape[0]
  delta = np.zeros((n_h, n_s))
  centred = np.zeros((n_h, n_s))
  mag = np.zeros((n_h, n_s))
  pn_idx, ps, other_idx = _split_pnorms(names)

  def batch(pot):
    return (analysis.dual_change_raw(pot, w0, w), analysis.change_magnitude_raw(pot, w0, w))

  groups = []
  if pn_idx:
    d, m = jax.jit(jax.vmap(lambda p: batch(potentials.pnorm(p))))(jnp.asarray(ps))
    groups.append((pn_idx, d, m))
  for i in other_idx:
    d, m = jax.jit(lambda a, b, pot=potentials.get(names[i]): (
        analysis.dual_change_raw(pot, a, b), analysis.change_magnitude_raw(pot, a, b)))(w0, w)
    groups.append(([i], d[None], m[None]))
  for idx, d, m in groups:
    if method == "grid":
      dc = analysis.delta_cdf_batch(d)
      dcc = analysis.delta_cdf_batch(d, center=True)
    else:
      dn = np.asarray(d)
      dc = np.array([[analysis.delta_cdf(row, "exact") for row in rows] for rows in dn])
      dcc = np.array([[analysis.delta_cdf(row, "exact", center=True) for row in rows]
                      for rows in dn])
    delta[idx] = dc
    centred[idx] = dcc
    mag[idx] = np.asarray(m)
  return delta, centred, mag


def run_cell(config, init, true_name, init_index, true_index) -> dict:
  w0, w = draw_weights(config, init, true_name, init_index, true_index)
  delta, centred, mag = hypothesis_stats(w0, w, list(config.hypothesized_potentials),
                                         config.delta_cdf_method)
  flips = np.mean(np.sign(np.asarray(w0)) != np.sign(np.asarray(w)), axis=-1)
  return {"delta_cdf": delta, "delta_cdf_centered": centred, "magnitude": mag,
          "sign_flip_fraction": flips}


def _validate(config) -> None:
  """Everything the run needs, before any cell: keys, types, finite values, non-empty lists."""
  _cli.check_config(config, robustness_config.get_config(), where=" of configs/robustness.py")
  for init in config.initializations:
    if init not in synthetic.INITIALIZATIONS:
      raise _cli.ConfigError(f"unknown initialization {init!r} in config.initializations; "
                             f"known: {synthetic.INITIALIZATIONS}.")
  _cli.check_potentials(config, "true_potentials", "hypothesized_potentials")
  if config.delta_cdf_method not in ("grid", "exact"):
    raise _cli.ConfigError(f"config.delta_cdf_method must be 'grid' or 'exact', got "
                           f"{config.delta_cdf_method!r}.")
  for key in ("num_seeds", "num_weights"):
    if config[key] < 2:
      raise _cli.ConfigError(f"config.{key} must be at least 2, got {config[key]!r}.")
  if config.width < 1:
    raise _cli.ConfigError(f"config.width must be a positive integer, got {config.width!r}.")
  # (a zero scale gives no change at all: every Delta-CDF would be undefined)
  _cli.finite_positive(config, "change_scale")


def run(config, workdir: str) -> dict:
  """Runs every (initialisation, true potential) cell, skipping finished ones; writes results."""
  _validate(config)
  results.prepare_workdir(workdir)
  cfg = results.config_dict(config)
  # (a cell from before the centred statistic is recomputed)
  store = results.CellStore(workdir, {
      **cfg, "potential_code": results.potential_fingerprints(
          list(config.true_potentials) + list(config.hypothesized_potentials))},
      valid=lambda value: "delta_cdf_centered" in value)
  true_names = [potentials.get(n).name for n in config.true_potentials]
  hyp_names = [potentials.get(n).name for n in config.hypothesized_potentials]
  out = {"config": cfg, "true_potentials": true_names, "hypothesized_potentials": hyp_names}
  keys = {(init, j): f"{init}__{name}" for init in config.initializations
          for j, name in enumerate(true_names)}
  start = time.time()
  # Each cell is computed once by whichever worker claims it (results.run_cells).
  done = store.run([store.cell(keys[init, j], lambda i=i, init=init, j=j, t=t:
                               run_cell(config, init, t, i, j))
                    for i, init in enumerate(config.initializations)
                    for j, t in enumerate(config.true_potentials)])
  logging.info("%d cells, %d computed here", len(done), len(store.computed))
  per_init = {init: [done[keys[init, j]] for j in range(len(true_names))]
              for init in config.initializations}
  for init, cells_ in per_init.items():
    dc = np.array([c["delta_cdf"] for c in cells_])  # [true, hyp, seed]
    dcc = np.array([c["delta_cdf_centered"] for c in cells_])
    mg = np.array([c["magnitude"] for c in cells_])
    out[init] = {
        "delta_cdf_mean": dc.mean(-1), "delta_cdf_std": dc.std(-1, ddof=1),
        "delta_cdf_centered_mean": dcc.mean(-1), "delta_cdf_centered": dcc,
        "magnitude_mean": mg.mean(-1), "delta_cdf": dc, "magnitude": mg,
        "sign_flip_fraction": [c["sign_flip_fraction"] for c in cells_]}
  out["wall_time_s"] = time.time() - start
  results.write_json_atomic(os.path.join(workdir, "results.json"), out)
  return results.to_jsonable(out)



def summary(res: dict) -> str:
  """The mean Delta-CDF tables, [true potential x hypothesised], one per initialisation."""
  lines = []
  hyp = res["hypothesized_potentials"]
  for init in res["config"]["initializations"]:
    lines.append(f"{init} initialisation: mean Delta-CDF over {res['config']['num_seeds']} seeds "
                 "[true potential x hypothesised]")
    lines.append(f"{'true':<8}" + "".join(f"{potentials.short_label(h):>7}" for h in hyp))
    for t, row in zip(res["true_potentials"], res[init]["delta_cdf_mean"]):
      lines.append(f"{potentials.short_label(t):<8}" + "".join(f"{v:7.3f}" for v in row))
  return "\n".join(lines)


if __name__ == "__main__":
  _cli.main(run, summary, "configs/robustness.py", "runs/robustness")
