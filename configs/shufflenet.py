"""Finetuning ShuffleNet v2 (Fig. 4A/B). Bare: the shared CPU run on embedded MNIST (the MLP of
finetune_default; ImageNet networks do not train on a 2-core CPU in minutes).

    python -m experiments.finetune --config=configs/shufflenet.py:imagenet \
        --config.data.data_dir=~/tensorflow_datasets --config.pretrain.checkpoint_dir=~/weights
Variants: "" (CPU, MNIST), "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "imagenet" (both).
"""

from configs import finetune_default

PAPER = {"shufflenet_v2_x0_5": ("shufflenet_v2_x0_5",),
         "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0",),
         "imagenet": ("shufflenet_v2_x0_5", "shufflenet_v2_x1_0")}


def get_config(variant: str = ""):
  return finetune_default.variant(variant, PAPER, __file__)
