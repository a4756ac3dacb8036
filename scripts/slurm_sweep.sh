#!/bin/bash
# The paper's Fig. 4 grid (10 ImageNet networks x 3 trained potentials x 10 seeds, each with its
# learning-rate search) on a SLURM array: every array task is one worker with one GPU, running
# the experiments' usual commands on shared workdirs. Workers claim cells through lock files in
# the workdirs (mdgeom.results), so they need no index: submit as many as you like, add more
# later, or resubmit after a failure; finished cells are never recomputed, and the cells of a
# worker that dies are taken over by another.
#
#   sbatch --array=0-15 scripts/slurm_sweep.sh          # 16 GPUs
#   DATA_DIR=/data/tfds WEIGHTS=/data/weights WORKROOT=/shared/runs/fig4 sbatch ... (see below)
#
# Needs: the ImageNet validation set as TFDS (DATA_DIR), the torchvision / timm weights of every
# network as <arch>.pth in WEIGHTS (the experiment names any missing file before any work), and
# WORKROOT on a file system all nodes share. Then:
#   python -m figures.finetune $WORKROOT/*/results.json --out=figures/fig4_finetune.png
#
#SBATCH --job-name=mdgeom-fig4
#SBATCH --array=0-7
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=24:00:00
#SBATCH --output=slurm-%x-%A_%a.out

set -euo pipefail

WORKROOT=${WORKROOT:-runs/fig4}
DATA_DIR=${DATA_DIR:-$HOME/tensorflow_datasets}
WEIGHTS=${WEIGHTS:-$HOME/mdgeom_weights}
CLAIM_TIMEOUT=${CLAIM_TIMEOUT:-900}   # s without a heartbeat before a claim counts as abandoned
PYTHON=${PYTHON:-python}
FAMILIES=(resnet shufflenet efficientnet cornet)   # configs/<family>.py:imagenet, 10 networks
N=${#FAMILIES[@]}
TASK=${SLURM_ARRAY_TASK_ID:-0}

finetune() {  # finetune <family> [flags...]
  local family=$1
  shift
  "$PYTHON" -m experiments.finetune --config="configs/${family}.py:imagenet" \
    --workdir="${WORKROOT}/${family}" --config.data.data_dir="${DATA_DIR}" \
    --config.pretrain.checkpoint_dir="${WEIGHTS}" --config.progress=False \
    --claim_timeout="${CLAIM_TIMEOUT}" "$@"
}

# Pass 1: each task starts with another family and moves on (--nowait) as soon as every cell
# left in it is held by another worker, so no GPU idles while cells remain anywhere.
for k in $(seq 0 $((N - 1))); do
  finetune "${FAMILIES[$(((TASK + k) % N))]}" --nowait
done
# Pass 2: wait for the cells held by others (taking over those of workers that died) and write
# each family's results.json; a family already complete is only merged.
for k in $(seq 0 $((N - 1))); do
  finetune "${FAMILIES[$(((TASK + k) % N))]}"
done
