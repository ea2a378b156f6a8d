#!/usr/bin/env bash
# Regenerates results/digits.jsonl, leaderboard.md and docs/plots/digits.png: every method family
# at one to four operating points on the offline `digits` task, 3 seeds each, equal epochs (20).
# The grid is sweeps/digits.yaml. Runs already completed in results/ are skipped and a killed run
# resumes from its checkpoint, so an interrupted regeneration picks up where it stopped.
# About 30-40 minutes on 2 CPU cores (`--jobs 2` splits them between two runs at a time).
set -euo pipefail
cd "$(dirname "$0")/.."
adcbench sweep sweeps/digits.yaml --out results --quiet "$@"
adcbench leaderboard
