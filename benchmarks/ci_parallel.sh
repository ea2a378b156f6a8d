#!/usr/bin/env bash
# Wall time of a test subset run serially vs on 2 xdist workers, side by side, alternating
# (serial, -n 2, serial, -n 2) so that load changes hit both. Usage: benchmarks/ci_parallel.sh [TESTS...]
set -euo pipefail
cd "$(dirname "$0")/.."
tests=("${@:-tests/test_contract.py tests/test_gradients.py tests/test_decode.py}")
for mode in serial n2 serial n2; do
  args=(); [ "$mode" = n2 ] && args=(-n 2)
  start=$(date +%s.%N)
  python -m pytest -q -p no:cacheprovider "${args[@]}" ${tests[*]} | tail -1
  echo "$mode $(echo "$(date +%s.%N) - $start" | bc) s"
done
