"""Finetuning ResNets (Fig. 4A/B): the project's main job. Bare: the CPU run on the embedded
MNIST digits (finetune_default: a 784-256-256 MLP pretrained in the same command).

    python -m experiments.finetune --config=configs/resnet.py
    python -m experiments.finetune --config=configs/resnet.py:resnet18 \
        --config.data.data_dir=~/tensorflow_datasets --config.pretrain.checkpoint_dir=~/weights
Variants: "" (CPU, MNIST), "resnet_small" (MNIST with the 16-32-64 ResNet: slow on a 2-core
CPU), "resnet18", "resnet34", "imagenet" (both, the paper's setting).
"""

from configs import finetune_default

PAPER = {"resnet18": ("resnet18",), "resnet34": ("resnet34",),
         "imagenet": ("resnet18", "resnet34")}


def get_config(variant: str = ""):
  if variant == "resnet_small":
    config = finetune_default.get_config()
    config.architectures = ("resnet_small",)
    return config
  return finetune_default.variant(variant, PAPER, __name__, extra=("resnet_small",))
