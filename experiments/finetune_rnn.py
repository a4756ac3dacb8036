"""Finetuning a recurrent network with mirror descent (docs/theory.md, "Experiments";
paper appendix B.3, Fig. 7A).

A tanh RNN reading row-wise sequential MNIST (28 steps of 28 pixels; `mdgeom.models.rnn`) is
pretrained on the training digits, then finetuned with each trained potential on N = D^0.5
held-out digits (D = hidden^2 recurrent weights) and its recurrent matrix analysed under each
hypothesised potential. This is `experiments.finetune.run` with cross-entropy: the same loop,
search, cells, analysis (with the model's `analysed` filter: the recurrent matrix only) and
results.json layout, architectures being the hidden sizes ("rnn100", "rnn1000"). The summary adds
the sign flips of each trained potential's recurrent weights: any flip rules negative entropy out,
which never changes a weight's sign.

    python -m experiments.finetune_rnn --config=configs/rnn.py --workdir=runs/finetune_rnn
    python -m experiments.finetune_rnn --config=configs/rnn.py:mnist \
        --config.data.data_dir=~/tensorflow_datasets
"""

from __future__ import annotations

import numpy as np

from configs import rnn as rnn_config
from experiments import _cli
from experiments import finetune
from mdgeom import potentials


def run(config, workdir: str) -> dict:
  """Runs every (hidden size, trained potential, seed) cell (finished ones are skipped)."""
  return finetune.run(config, workdir, task_fn=finetune.classification,
                      reference=rnn_config.get_config())


def sign_flip_lines(res: dict) -> list[str]:
  """Per architecture and trained potential: recurrent weights whose sign flipped between the
  pretrained and the finetuned network (mean over seeds, and the seeds with any flip)."""
  lines = []
  for arch in res["architectures"]:
    flips = res.get("n_sign_flips", {}).get(arch, {})
    parts = []
    for t in res["trained_potentials"]:
      counts = [c for c in flips.get(t, {}).get("negative_entropy", []) if c is not None]
      if not counts:
        continue
      parts.append(f"{potentials.short_label(t)} {np.mean(counts):.1f} "
                   f"({sum(c > 0 for c in counts)}/{len(counts)} seeds)")
    if parts:
      lines.append(f"{arch}: sign flips of the recurrent weights (mean, seeds with flips; any "
                   "flip rules NE out): " + ", ".join(parts))
  return lines


def summary(res: dict) -> str:
  """finetune's Delta-CDF tables, then the sign-flip counts that rule negative entropy out."""
  return "\n".join([finetune.summary(res), *sign_flip_lines(res)])


if __name__ == "__main__":
  _cli.main(run, summary, "configs/rnn.py", "runs/finetune_rnn")
