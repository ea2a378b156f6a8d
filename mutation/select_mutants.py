"""Keep a bounded, meaningful, reproducible set of cosmic-ray mutants; mark the rest SKIPPED.

cosmic-ray proposes every operator pair (`+` -> each of 10 other operators, ...): 628 mutants
for an 86-line module. Most pairs are redundant for a kill-or-survive verdict, so this keeps
one "natural" alternative per operator (+/-, *//, <</>>, |/&, < vs <=, == vs !=, and/or,
not, True/False, numbers, zero-iteration loops, `is` vs `is not`), restricted to the functions
named in SCOPE, and then a seeded random sample of at most MAX per module (the report says so).
The candidates are sorted by position before the seeded shuffle: cosmic-ray hands them out in
SQL random() order with random job ids, so shuffling that order would not be reproducible.

Usage: python mutation/select_mutants.py SESSION.sqlite GROUP MAX_PER_MODULE
"""

from __future__ import annotations

import random
import re
import sys

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import WorkerOutcome, WorkItem, WorkResult

KEEP = re.compile(
    r"core/("
    r"ReplaceBinaryOperator_(Add_Sub|Sub_Add|Mul_Div|Div_Mul|FloorDiv_Mul|Mod_FloorDiv|Pow_Mul|LShift_RShift"
    r"|RShift_LShift|BitOr_BitAnd|BitAnd_BitOr|BitXor_BitOr)"
    r"|ReplaceComparisonOperator_(Lt_LtE|LtE_Lt|Gt_GtE|GtE_Gt|Eq_NotEq|NotEq_Eq|Is_IsNot|IsNot_Is)"
    r"|ReplaceUnaryOperator_(USub_UAdd|Delete_Not)"
    r"|AddNot|ReplaceTrueWithFalse|ReplaceFalseWithTrue|ReplaceAndWithOr|ReplaceOrWithAnd"
    r"|NumberReplacer|ZeroIterationForLoop|ReplaceBreakWithContinue)$"
)

METHODS = [
    "adc", "adc_ablations", "bottleneck", "c3sl", "fedlite", "float", "lossless", "lowrank", "none",
    "quant", "randtopk", "tokenprune", "tome", "topk",
]  # fmt: skip

# group -> module -> function/method names to mutate (None: the whole module). Each group has its
# own fast test set (mutation/<group>.toml).
SCOPE: dict[str, dict[str, set[str] | None]] = {
    "wire": {f"adcbench/wire/{m}.py": None for m in ("bits", "containers", "format", "gaps", "limits")},
    "core": {"adcbench/core/method.py": None, "adcbench/core/pipeline.py": None, "adcbench/train/roles.py": None},
    "methods": {f"methods/{m}.py": None for m in METHODS},
    "methods2": {f"methods/{m}.py": None for m in ("splitfc", "entropy_bottleneck")},  # added later
    # the loop's step / evaluate / budget logic (StopRule, _History, train_step, evaluate)
    "loop": {"adcbench/train/loop.py": {"reason", "evaluate", "train_step", "total_steps", "__init__", "add"}},
}


# The loop is one module holding the step, evaluate and budget logic: twice the sample. The 14
# method plugins get 2/5 of it each (28 at the default 5), to keep a run within ~45 min on 2 busy cores.
WEIGHT = {"loop": 2.0, "methods": 0.4, "methods2": 0.4}


def _key(item: WorkItem) -> tuple:
    m = item.mutations[0]
    return (str(m.module_path), tuple(m.start_pos), tuple(m.end_pos), m.operator_name, m.occurrence)


def main(db_path: str, group: str, max_per_module: str) -> None:
    scope, limit = SCOPE[group], max(1, round(int(max_per_module) * WEIGHT.get(group, 1.0)))
    rng = random.Random(0)
    with use_db(db_path, WorkDB.Mode.open) as db:
        kept: dict[str, list[WorkItem]] = {}
        skip = []
        for item in sorted(db.pending_work_items, key=_key):
            m = item.mutations[0]
            path = str(m.module_path)
            names = scope.get(path, set())
            in_scope = names is None or (getattr(m, "definition_name", None) in names)
            if KEEP.match(m.operator_name) and in_scope:
                kept.setdefault(path, []).append(item)
            else:
                skip.append(item.job_id)
        for path, items in sorted(kept.items()):
            rng.shuffle(items)
            skip += [i.job_id for i in items[limit:]]
            print(f"{path}: {min(len(items), limit)} of {len(items)} selected mutants")
        db.set_multiple_results(skip, WorkResult(output="not selected", worker_outcome=WorkerOutcome.SKIPPED))


if __name__ == "__main__":
    main(*sys.argv[1:])
