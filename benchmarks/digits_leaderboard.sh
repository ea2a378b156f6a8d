#!/usr/bin/env bash
# Regenerates results/digits.jsonl, leaderboard.md and docs/plots/digits.png: every method family
# at one to four operating points on the offline `digits` task, 3 seeds each, equal epochs (20).
# Configurations already completed in results/ are skipped, so an interrupted run resumes.
# About 30-40 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
adcbench sweep --task digits --epochs 20 --seeds 0-2 --quiet --out results \
  --method none \
  --method 'adc:xi={0.05,0.1,0.25,0.5}' \
  --method 'adc-batch:xi=0.1' --method 'adc-token:xi=0.25' --method 'tokenprune:ratio=0.25' \
  --method 'quant:bits={2,4}' --method 'quant:bits=4+zstd' \
  --method 'topk:ratio={0.05,0.25}' --method 'randtopk:ratio=0.1' \
  --method 'bottleneck:ratio={0.05,0.25}' \
  --method 'c3sl:R={2,8}' \
  --method 'adc:xi=0.1+quant:bits=8' \
  "$@"
adcbench leaderboard
