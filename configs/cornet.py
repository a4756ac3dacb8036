"""Finetuning CORnets (Fig. 4A/B). Bare: the shared CPU run on embedded MNIST (the MLP of
finetune_default).

    python -m experiments.finetune --config=configs/cornet.py:imagenet \
        --config.data.data_dir=~/tensorflow_datasets --config.pretrain.checkpoint_dir=~/weights
Variants: "" (CPU, MNIST), "cornet_s", "cornet_rt", "imagenet" (both). CORnet checkpoints
(dicarlolab) are DataParallel state dicts; the "module." prefix is stripped on import.
"""

from configs import finetune_default

PAPER = {"cornet_s": ("cornet_s",), "cornet_rt": ("cornet_rt",),
         "imagenet": ("cornet_s", "cornet_rt")}


def get_config(variant: str = ""):
  return finetune_default.variant(variant, PAPER, __file__)
