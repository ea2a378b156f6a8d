#!/usr/bin/env bash
# One SLURM job array over a sweep file: task i of n runs shard i/n of the grid.
#   sbatch --array=0-7 examples/slurm-array.sh sweeps/digits.yaml
# Each shard appends to its own folder (no file lock shared between nodes is needed); gather with
#   cat results/shards/*/digits.jsonl >> results/digits.jsonl      (whole lines: a plain concat)
# or point the leaderboard at the folder: adcbench leaderboard --results results/shards
# Resubmitting the same array skips completed runs and resumes killed ones from their checkpoints.
#SBATCH --job-name=adcbench-sweep
#SBATCH --cpus-per-task=4
#SBATCH --time=04:00:00
#SBATCH --output=results/slurm/%A_%a.out
set -euo pipefail
SWEEP=${1:?usage: sbatch --array=0-N examples/slurm-array.sh sweeps/NAME.yaml}
i=${SLURM_ARRAY_TASK_ID:?run this with sbatch --array}
n=${SLURM_ARRAY_TASK_COUNT:?run this with sbatch --array}
adcbench sweep "$SWEEP" --shard "$i/$n" --out "results/shards/$i" --threads "${SLURM_CPUS_PER_TASK:-1}" --quiet
