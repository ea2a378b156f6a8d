"""Keep a bounded, meaningful set of cosmic-ray mutants; mark the rest SKIPPED.

cosmic-ray proposes every operator pair (`+` -> each of 10 other operators, ...): 628 mutants
for an 86-line module. Most pairs are redundant for a kill-or-survive verdict, so this keeps
one "natural" alternative per operator (+/-, *//, <</>>, |/&, < vs <=, == vs !=, and/or,
not, True/False, numbers, zero-iteration loops, `is` vs `is not`), restricted to the functions
named in SCOPE, and then a seeded random sample of at most MAX per module (the report says so).

Usage: python mutation/select_mutants.py SESSION.sqlite GROUP MAX_PER_MODULE
"""

from __future__ import annotations

import random
import re
import sys

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import WorkerOutcome, WorkResult

KEEP = re.compile(
    r"core/("
    r"ReplaceBinaryOperator_(Add_Sub|Sub_Add|Mul_Div|Div_Mul|FloorDiv_Mul|Mod_FloorDiv|Pow_Mul|LShift_RShift"
    r"|RShift_LShift|BitOr_BitAnd|BitAnd_BitOr|BitXor_BitOr)"
    r"|ReplaceComparisonOperator_(Lt_LtE|LtE_Lt|Gt_GtE|GtE_Gt|Eq_NotEq|NotEq_Eq|Is_IsNot|IsNot_Is)"
    r"|ReplaceUnaryOperator_(USub_UAdd|Delete_Not)"
    r"|AddNot|ReplaceTrueWithFalse|ReplaceFalseWithTrue|ReplaceAndWithOr|ReplaceOrWithAnd"
    r"|NumberReplacer|ZeroIterationForLoop|ReplaceBreakWithContinue)$"
)

# module -> function/method names to mutate (None: the whole module)
SCOPE: dict[str, dict[str, set[str] | None]] = {
    "wire": {
        "adcbench/wire/bits.py": None,
        "adcbench/wire/containers.py": None,
        "adcbench/wire/format.py": None,
    },
    "core": {
        "adcbench/core/pipeline.py": None,
        "adcbench/core/method.py": None,
        "adcbench/train/roles.py": None,
        "methods/quant.py": None,
        "methods/float.py": None,
        "methods/none.py": None,
        "methods/adc.py": None,
    },
    "loop": {
        "adcbench/train/loop.py": {"reason", "evaluate", "train_step", "total_steps"},
    },
}


# The core group's tests cost ~60 s per mutant on a busy 2-core box: half the sample there.
CAPS = {"core": 0.5}


def main(db_path: str, group: str, max_per_module: str) -> None:
    scope = SCOPE[group]
    MAX = max(1, int(int(max_per_module) * CAPS.get(group, 1.0)))
    rng = random.Random(0)
    with use_db(db_path, WorkDB.Mode.open) as db:
        kept: dict[str, list[str]] = {}
        skip = []
        for item in db.pending_work_items:
            m = item.mutations[0]
            path = str(m.module_path)
            names = scope.get(path, set())
            in_scope = names is None or (getattr(m, "definition_name", None) in names)
            if KEEP.match(m.operator_name) and in_scope:
                kept.setdefault(path, []).append(item.job_id)
            else:
                skip.append(item.job_id)
        for path, jobs in kept.items():
            rng.shuffle(jobs)
            skip += jobs[MAX:]
            print(f"{path}: {min(len(jobs), MAX)} of {len(jobs)} selected mutants")
        db.set_multiple_results(skip, WorkResult(output="not selected", worker_outcome=WorkerOutcome.SKIPPED))


if __name__ == "__main__":
    main(*sys.argv[1:])
