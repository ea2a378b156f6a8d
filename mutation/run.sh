#!/usr/bin/env bash
# Mutation testing (not in CI): cosmic-ray 8.7.0 (`pip install cosmic-ray==8.7.0`; not a project
# dependency) over the wire, the method contract / pipeline / roles, every method plugin and the
# loop's step/evaluate/budget logic; 1 thread, a seeded sample of at most MAX mutants per module,
# each judged by its group's fast test set (mutation/<group>.toml).
#   mutation/run.sh [MAX_PER_MODULE] [--survivors]     (default 5; ~20-60 s per mutant on 2 cores)
# --survivors keeps the sessions and judges again only the mutants that survived (after adding
# tests: the test sets only grow, so a mutant they killed stays killed).
# Writes mutation/<group>.sqlite and docs/benchmarks/mutation.md. Mutates files in place and
# restores them; do not edit the tree while it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
MAX=${1:-5}
MODE=${2:-}
ALL_GROUPS=(methods methods2 core wire loop)
# MUTATION_GROUPS="methods2" runs only those; the report covers every group with a session.
read -r -a GROUPS_ <<< "${MUTATION_GROUPS:-${ALL_GROUPS[*]}}"
export OMP_NUM_THREADS=1
python mutation/forkserver.py serve &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
until [ -S mutation/.forkserver.sock ]; do kill -0 $SERVER; sleep 1; done
for g in "${GROUPS_[@]}"; do
  # baseline: the unmutated tree must pass the session's tests, else every mutant counts as killed
  cmd=$(python -c "import sys,tomllib;print(tomllib.load(open(sys.argv[1],'rb'))['cosmic-ray']['test-command'])" "mutation/$g.toml")
  bash -c "$cmd" >/dev/null || { echo "mutation: baseline tests of $g fail on the unmutated tree" >&2; exit 1; }
  if [ "$MODE" = "--survivors" ]; then
    python -c "import sqlite3,sys;c=sqlite3.connect(sys.argv[1]);c.execute(\"DELETE FROM work_results WHERE test_outcome='SURVIVED'\");c.commit()" "mutation/$g.sqlite"
  else
    rm -f "mutation/$g.sqlite"
    cosmic-ray init "mutation/$g.toml" "mutation/$g.sqlite"
    python mutation/select_mutants.py "mutation/$g.sqlite" "$g" "$MAX"
  fi
  cosmic-ray exec "mutation/$g.toml" "mutation/$g.sqlite"
done
python mutation/report.py "$MAX" "${ALL_GROUPS[@]}" > docs/benchmarks/mutation.md
if [ -d .git ] || [ -f .git ]; then
  git diff --quiet -- adcbench methods || { echo "mutation: the tree is not clean after the run" >&2; exit 1; }
fi
