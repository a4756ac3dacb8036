"""Which per-unit scale model keeps the Delta-CDF of the true geometry low AND the others high?

    python benchmarks/unit_scales_study.py runs/finetune runs/finetune_mlp [...]

Reads finetuning runs written by `experiments.finetune` (their results.json and saved initial and
final weights) and recomputes, for every trained potential and seed, the Delta-CDF of each
hypothesised potential's dual change under several scale models of the layers' changes:

  pooled      the paper's statistic: one scale for all analysed weights;
  units-rms   each layer's change divided by a rank-1 a_i b_j fitted by alternating row/column
              root-mean-square normalisation (rows = all input axes, columns = outputs);
  units-abs   the same with mean absolute values (less pulled by the heavy tails a wrong geometry
              produces): mdgeom.scales' default, used by rank_potentials(scales="units");
  rows        input units only (b_j = 1), mean absolute values;
  cols        output units only (a_i = 1), mean absolute values;
  layers      one scale per layer (removes only differences between layers).

For each model it prints the mean Delta-CDF [trained x hypothesised], and two summaries over
trained potentials and seeds: "level", the mean Delta-CDF under the trained potential, and
"margin", the mean of (runner-up's Delta-CDF - trained potential's) with the runner-up the best
other non-ruled-out hypothesis: positive = the trained geometry is recovered, larger = sharper.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments import finetune
from mdgeom import analysis, models, potentials, results, scales


def _layer_ids(shape, model: str):
  ids = scales.ids_for_shape(shape)
  if model == "rows":
    return scales.UnitIds(ids.rows, np.zeros_like(ids.cols))
  if model == "cols":
    return scales.UnitIds(np.zeros_like(ids.rows), ids.cols)
  if model == "layers":
    return scales.UnitIds(np.zeros_like(ids.rows), np.zeros_like(ids.cols))
  return ids


def normalised(pot, leaves0, leaves1, model: str, exclude_unchanged: bool) -> np.ndarray:
  parts = []
  for x0, x1 in zip(leaves0, leaves1):
    with jax.enable_x64(True):
      d = np.asarray(analysis.dual_change_raw(pot, jnp.asarray(x0, jnp.float64),
                                              jnp.asarray(x1, jnp.float64)), np.float64).ravel()
    valid = np.isfinite(d) & ((x0 != x1).ravel() if exclude_unchanged else True)
    if model == "pooled":
      parts.append(np.where(valid, d, np.nan))
    else:
      est = "rms" if model == "units-rms" else "abs"
      parts.append(scales.unit_scales(d, _layer_ids(x0.shape, model), valid, estimator=est).z)
  return np.concatenate(parts)


MODELS = ("pooled", "units-rms", "units-abs", "rows", "cols", "layers")


def study(workdir: str) -> dict:
  res = results.read_results(workdir)
  cfg = res["config"]
  hyp = res["hypothesized_potentials"]
  out = {}
  for arch in res["architectures"]:
    model = models.get(arch, num_classes=cfg["data"]["num_classes"],
                       **dict(cfg.get("model_kwargs") or {}))
    target = model.init(jax.random.key(0))
    v0 = finetune.load_variables(os.path.join(workdir, "weights", arch, "initial.msgpack"),
                                 target)
    names, shapes, a, _ = analysis.select_leaves(v0["params"], v0["params"], model.analysed)
    leaves0 = [np.asarray(x) for x in analysis.split_leaves(np.asarray(a), shapes)]
    table = {m: {} for m in MODELS}
    for t in res["trained_potentials"]:
      seeds = len(res["train_accuracy"][arch][t])
      for m in MODELS:
        table[m][t] = {h: [] for h in hyp}
      for s in range(seeds):
        v1 = finetune.load_variables(os.path.join(workdir, "weights", arch, t, f"seed{s}.msgpack"),
                                     target)
        _, _, _, b = analysis.select_leaves(v0["params"], v1["params"], model.analysed)
        leaves1 = [np.asarray(x) for x in analysis.split_leaves(np.asarray(b), shapes)]
        for h in hyp:
          pot = potentials.get(h)
          for m in MODELS:
            z = normalised(pot, leaves0, leaves1, m, cfg["analysis"]["exclude_unchanged"])
            z = z[np.isfinite(z)]
            table[m][t][h].append(analysis.delta_cdf(z) if z.size > 2 else np.nan)
    out[arch] = {"table": table, "ruled_out": res["ruled_out"][arch], "hyp": hyp,
                 "trained": res["trained_potentials"], "leaves": names}
  return out


def report(study_out: dict) -> None:
  for arch, s in study_out.items():
    hyp, trained = s["hyp"], s["trained"]
    print(f"== {arch} ({len(s['leaves'])} analysed layers)")
    print(f"{'model':<10} {'level':>7} {'margin':>7}   mean Delta-CDF [trained: " +
          " ".join(potentials.short_label(h) for h in hyp) + "]")
    for m, tab in s["table"].items():
      levels, margins, rows = [], [], []
      for t in trained:
        means = []
        for h in hyp:
          means.append(float(np.mean(tab[t][h])))
        for k in range(len(tab[t][t])):
          own = tab[t][t][k]
          others = [tab[t][h][k] for h in hyp if h != t and not s["ruled_out"][t][h][k]]
          levels.append(own)
          margins.append(min(others) - own)
        rows.append(f"{potentials.short_label(t)}: " + " ".join(f"{v:.3f}" for v in means))
      print(f"{m:<10} {np.mean(levels):7.3f} {np.mean(margins):7.3f}   " + " | ".join(rows))


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("workdirs", nargs="+")
  args = ap.parse_args()
  for w in args.workdirs:
    report(study(w))


if __name__ == "__main__":
  main()
