"""Finetuning ResNets (Fig. 4A/B): the project's main job.

Bare: the CPU run on the embedded MNIST digits with `resnet_tiny` (an 8-16-32 CIFAR-style ResNet
for 28x28 inputs, D = 19,144, N = 138, pretrained in the same command) and the paper's protocol
with its 10 seeds: under 4 minutes on 2 CPU cores.

    python -m experiments.finetune --config=configs/resnet.py
    python -m experiments.finetune --config=configs/resnet.py:resnet18 \
        --config.data.data_dir=~/tensorflow_datasets --config.pretrain.checkpoint_dir=~/weights
Variants: "" (CPU, MNIST, resnet_tiny), "small" (CPU, MNIST, the 16-32-64 `resnet_small`:
D = 76,432, N = 276, about 8.5 minutes), "mlp" (CPU, MNIST, the 784-256-256 MLP of
finetune_default, about 1 minute), "resnet18", "resnet34", "imagenet" (both, the paper's
setting).
"""

from configs import finetune_default

PAPER = {"resnet18": ("resnet18",), "resnet34": ("resnet34",),
         "imagenet": ("resnet18", "resnet34")}


def get_config(variant: str = ""):
  config = finetune_default.get_config()
  if variant == "":
    config.architectures = ("resnet_tiny",)
    config.seeds = tuple(range(10))  # the paper's 10
    return config
  if variant == "small":
    config.architectures = ("resnet_small",)
    return config
  if variant == "mlp":
    return config
  return finetune_default.variant(variant, PAPER, __file__, extra=("small", "mlp"))
