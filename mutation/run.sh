#!/usr/bin/env bash
# Mutation testing (not in CI): cosmic-ray over the wire, the pipeline/roles/methods core and the
# loop's step/evaluate/budget logic, 1 thread, a bounded seeded sample per module.
#   mutation/run.sh [MAX_PER_MODULE]   (default 8; about 40 s per mutant on a busy 2-core box)
# Writes mutation/<group>.sqlite and docs/benchmarks/mutation.md. Mutates files in place and
# restores them; do not edit the tree while it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
MAX=${1:-8}
export OMP_NUM_THREADS=1
for g in wire core loop; do
  # baseline: the unmutated tree must pass the session's tests, else every mutant counts as killed
  cmd=$(python -c "import sys,tomllib;print(tomllib.load(open(sys.argv[1],'rb'))['cosmic-ray']['test-command'])" "mutation/$g.toml")
  $cmd >/dev/null || { echo "mutation: baseline tests of $g fail on the unmutated tree" >&2; exit 1; }
  rm -f "mutation/$g.sqlite"
  cosmic-ray init "mutation/$g.toml" "mutation/$g.sqlite"
  python mutation/select_mutants.py "mutation/$g.sqlite" "$g" "$MAX"
  cosmic-ray exec "mutation/$g.toml" "mutation/$g.sqlite"
done
python mutation/report.py wire core loop > docs/benchmarks/mutation.md
if [ -d .git ] || [ -f .git ]; then
  git diff --quiet -- adcbench methods || { echo "mutation: the tree is not clean after the run" >&2; exit 1; }
fi
