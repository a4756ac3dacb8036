"""Finetuning SimSiam with its own loss (docs/theory.md, "Experiments"; Fig. 7B;
experiments/finetune_ssl.py).

    python -m experiments.finetune_ssl --config=configs/simsiam.py
    python -m experiments.finetune_ssl --config=configs/simsiam.py:imagenet \
        --config.data.data_dir=~/tensorflow_datasets --config.pretrain.checkpoint_dir=~/weights

Variants:
  ""          CPU run: a small SimSiam (8-16-32 ResNet, `simsiam_small`) pretrained with the
              SimSiam loss on the 4,000 MNIST-5k pretraining digits (labels unused), then
              finetuned for 50 epochs on N = D^0.5 digits of the disjoint pool, 10 seeds,
              the paper's learning-rate grid.
  "imagenet"  the paper's setting: facebookresearch/simsiam's 100-epoch ResNet50 checkpoint
              (checkpoint_0099.pth.tar, from https://github.com/facebookresearch/simsiam, read
              from pretrain.checkpoint_dir) finetuned for 50 epochs on N = D^0.5 ImageNet
              validation images, 10 seeds, the paper's learning-rate grid.

Views are JAX augmentations of the preprocessed images (random resized crop, horizontal flip,
Gaussian noise); the paper's ImageNet pipeline also jittered colours, which is not reproduced.
"""

import ml_collections

from configs import finetune_default


def get_config(variant: str = ""):
  config = finetune_default.get_config()
  config.architectures = ("simsiam_small",)
  with config.unlocked():  # the shared defaults are locked; SimSiam adds its augmentations
    config.augment = ml_collections.ConfigDict()
    config.augment.crop_scale = (0.5, 1.0)  # a digit keeps its identity in half its area
    config.augment.flip = True
    config.augment.noise_std = 0.2          # in units of the normalised pixels
  config.lock()
  # Self-supervised: no accuracy to check or to extend the search for; 50 epochs as the paper.
  config.pretrain.epochs = 10
  config.pretrain.learning_rate = 0.05
  config.pretrain.batch_size = 128
  config.search.epochs = 50
  config.search.max_extensions = 0
  config.train.batch_size = 256           # N = 138 here: one full-batch step per epoch
  config.analysis.exclude_unchanged = False  # every conv kernel entry gets a gradient
  if variant == "":
    # The paper's protocol on a 2-core CPU in about 8 minutes: its 5-value learning-rate grid,
    # 50 epochs, and 10 seeds (per-seed intervals: benchmarks/seed_intervals.py).
    config.seeds = tuple(range(10))
    return config
  if variant == "imagenet":
    config = finetune_default.imagenet(config, ("simsiam_resnet50",))
    config.pretrain.checkpoint_pattern = "checkpoint_0099.pth.tar"
    config.augment.crop_scale = (0.2, 1.0)  # SimSiam's ImageNet crops
    config.augment.noise_std = 0.0
    config.train.batch_size = 128           # the paper's SSL finetuning batch
    return config
  raise ValueError(f"unknown variant {variant!r} of configs/simsiam.py; known: '', 'imagenet'.")
