"""Finetuning a self-supervised network with its own loss (docs/theory.md, "Experiments";
Fig. 7B).

A SimSiam network (`mdgeom.models.simsiam`: ResNet encoder, projector, predictor) is finetuned
with the SimSiam loss (symmetrised negative cosine with stop-gradient, two augmented views per
image) under each trained potential on N = D^0.5 images (D = the encoder's conv weights), and the
dual change of the encoder's conv kernels is analysed under each hypothesised potential. This is
`experiments.finetune.run` with `simsiam_task` for both stages: the same loop, learning-rate
search (lowest final loss; no accuracy, so no epoch extension), cells and results.json layout.
`train_accuracy` is null throughout; `final_loss` holds the SimSiam loss.

    python -m experiments.finetune_ssl --config=configs/simsiam.py --workdir=runs/finetune_ssl
    python -m experiments.finetune_ssl --config=configs/simsiam.py:imagenet \
        --config.data.data_dir=~/tensorflow_datasets --config.pretrain.checkpoint_dir=~/weights

The bare config pretrains a small SimSiam on the embedded MNIST digits in the same command; the
ImageNet setting imports facebookresearch/simsiam's ResNet50 checkpoint from a local file.
"""

from __future__ import annotations

import numpy as np

from configs import simsiam as simsiam_config
from experiments import _cli
from experiments import finetune
from mdgeom import potentials, train
from mdgeom.models import simsiam


def simsiam_task(model, config, stage: str) -> train.Task:
  """The SimSiam loss with the config's augmentations, for pretraining and finetuning alike."""
  a = config.augment
  return simsiam.simsiam_task(model, tuple(a.crop_scale), bool(a.flip), float(a.noise_std))


def run(config, workdir: str) -> dict:
  """Runs every (architecture, trained potential, seed) cell (finished ones are skipped)."""
  return finetune.run(config, workdir, task_fn=simsiam_task,
                      reference=simsiam_config.get_config())


def _mean(xs):
  v = np.array([np.nan if x is None else x for x in xs], float)
  return float(np.nanmean(v)) if np.any(np.isfinite(v)) else float("nan")


def summary(res: dict) -> str:
  """finetune's Delta-CDF tables (the accuracy column is n/a), then the final SimSiam losses."""
  lines = [finetune.summary(res)]
  for arch in res["architectures"]:
    pre = res.get("pretrain", {}).get(arch, {})
    parts = [f"{potentials.short_label(t)} {_mean(res['final_loss'][arch][t]):.4f}"
             for t in res["trained_potentials"]]
    start = (f"pretrained {pre['pool_loss']:.4f} (held-out pool, eval mode); "
             if pre.get("pool_loss") is not None else "")
    lines.append(f"{arch}: SimSiam loss (-1 = perfect agreement): {start}final training loss "
                 "(mean over seeds) " + ", ".join(parts))
  return "\n".join(lines)


if __name__ == "__main__":
  _cli.main(run, summary, "configs/simsiam.py", "runs/finetune_ssl")
