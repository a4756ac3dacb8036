"""Finetuning ResNets (Fig. 4A/B): the project's main job.

Bare: the CPU run on the embedded MNIST digits with `resnet_small` (a 16-32-64 ResNet for 28x28
inputs, pretrained in the same command; 5 seeds, about 8.5 minutes on 2 CPU cores).

    python -m experiments.finetune --config=configs/resnet.py
    python -m experiments.finetune --config=configs/resnet.py:resnet18 \
        --config.data.data_dir=~/tensorflow_datasets --config.pretrain.checkpoint_dir=~/weights
Variants: "" (CPU, MNIST, resnet_small), "mlp" (CPU, MNIST, the 784-256-256 MLP of
finetune_default, about 1 minute), "resnet18", "resnet34", "imagenet" (both, the paper's
setting).
"""

from configs import finetune_default

PAPER = {"resnet18": ("resnet18",), "resnet34": ("resnet34",),
         "imagenet": ("resnet18", "resnet34")}


def get_config(variant: str = ""):
  config = finetune_default.get_config()
  if variant == "":
    config.architectures = ("resnet_small",)
    return config
  if variant == "mlp":
    return config
  return finetune_default.variant(variant, PAPER, __file__, extra=("mlp",))
