"""Finetuning ResNets (Fig. 4A/B). Bare: the CPU run on embedded MNIST (see finetune_default).

    python -m experiments.finetune --config=configs/resnet.py
    python -m experiments.finetune --config=configs/resnet.py:resnet18 \
        --config.data.data_dir=~/tensorflow_datasets --config.pretrain.checkpoint_dir=~/weights
Variants: "" (CPU, MNIST), "resnet_small" (CPU, MNIST, small ResNet), "resnet18", "resnet34",
"imagenet" (both, the paper's setting).
"""

from configs import finetune_default


def get_config(variant: str = ""):
  config = finetune_default.get_config()
  if variant == "":
    return config
  if variant == "resnet_small":
    config.architectures = ("resnet_small",)
    return config
  paper = {"resnet18": ("resnet18",), "resnet34": ("resnet34",),
           "imagenet": ("resnet18", "resnet34")}
  if variant not in paper:
    raise ValueError(f"unknown variant {variant!r} of configs/resnet.py; known: '', "
                     "'resnet_small', " + ", ".join(map(repr, paper)) + ".")
  return finetune_default.imagenet(config, paper[variant])
