"""CI: the README's main job (`adcbench run`) appended exactly one completed record that learned.

Usage: python .ci/check_record.py RECORDS_JSONL LINES_BEFORE [MIN_ACC]. One line on stderr and exit
2 otherwise."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    path, before = Path(argv[0]), int(argv[1])
    min_acc = float(argv[2]) if len(argv) > 2 else 0.9
    lines = path.read_text().splitlines() if path.is_file() else []
    if len(lines) != before + 1:
        print(f"ci: expected one new record in {path}, found {len(lines) - before}", file=sys.stderr)
        return 2
    rec = json.loads(lines[-1])
    acc = rec.get("final", {}).get("acc")
    if rec.get("status") != "completed" or acc is None or acc < min_acc:
        print(
            f"ci: {rec.get('method')} on {path.stem}: status {rec.get('status')}, acc {acc} < {min_acc}",
            file=sys.stderr,
        )
        return 2
    print(f"ci: {rec['method']} on {path.stem}: {rec['steps']} steps, final acc {acc:.3f} >= {min_acc}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
