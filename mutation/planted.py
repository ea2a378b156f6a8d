"""Issue 16's planted bugs, one at a time: each must make at least one test fail.

    python mutation/planted.py [--only N ...] [--tests PATH ...]   # in a clean checkout: it edits
                                                                  # files, then restores them

Each entry replaces one exact piece of source (the script refuses to run if the piece is not
there, so a refactor cannot turn a plant into a no-op), runs the fast tests (`-m "not slow"`,
stopping at the first failure), names the test that failed, and restores the file from git.
A bug that no test catches is a failure of this script (exit 1). One torch thread per process.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (what the issue names, file, the original, the planted bug)
PLANTS = [
    (
        "the client applies half the decoded gradient",
        "adcbench/train/roles.py",
        "carrier.backward(self.amp.scaler.scale(grad.to(carrier.dtype)))",
        "carrier.backward(self.amp.scaler.scale(grad.to(carrier.dtype)) * 0.5)",
    ),
    (
        "evaluation runs on the training split",
        "adcbench/data/task.py",
        'return Splits(train, test, test, "test")',
        'return Splits(train, train, test, "test")',
    ),
    (
        "the config hash ignores the training settings (lr, epochs, batch size)",
        "adcbench/train/identity.py",
        '"train": settings,',
        '"train": {k: v for k, v in settings.items() if k not in ("lr", "epochs", "batch_size")},',
    ),
    (
        "the leaderboard's confidence interval uses the wrong t quantile",
        "adcbench/report/tables.py",
        "stats.t.ppf(0.975, len(v) - 1)",
        "stats.t.ppf(0.95, len(v) - 1)",
    ),
    (
        "the byte budget allows one step past the budget",
        "adcbench/train/loop.py",
        "spent + step_bytes > self.budget",
        "spent > self.budget",
    ),
    (
        "the top-k decoder accepts unsorted or duplicated indices",
        "methods/topk.py",
        "if k > 1 and bool((idx.diff(dim=1) <= 0).any()):",
        "if False:",
    ),
    (
        "an ADC gradient divided by the wrong cluster size (x1/2 on its way to the members)",
        "methods/adc.py",
        "gathered = x.gather(1, rows.unsqueeze(-1).expand(-1, -1, d))  # B×k×d",
        "gathered = x.gather(1, rows.unsqueeze(-1).expand(-1, -1, d))  # B×k×d\n"
        "        gathered.register_hook(lambda g: g * 0.5) if gathered.requires_grad else None",
    ),
]

FAILED = re.compile(r"^FAILED (\S+)", re.M)


def plant(path: Path, original: str, bug: str) -> None:
    text = path.read_text()
    if text.count(original) != 1:
        sys.exit(f"planted: {path.relative_to(ROOT)} no longer holds exactly one {original!r}; update PLANTS")
    path.write_text(text.replace(original, bug))


def run_tests(paths: list[str]) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-m", "not slow", "-p", "no:cacheprovider", *paths]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    return out.returncode, out.stdout + out.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", type=int, nargs="*", help="plant numbers (1-based)")
    ap.add_argument("--tests", nargs="*", default=["tests"], help="test paths (default: all of tests/)")
    args = ap.parse_args()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True)
    if dirty.stdout.strip():
        sys.exit("planted: the checkout has uncommitted changes; run it in a clean one (it restores files from git)")
    missed = []
    for n, (what, file, original, bug) in enumerate(PLANTS, 1):
        if args.only and n not in args.only:
            continue
        path = ROOT / file
        plant(path, original, bug)
        try:
            code, out = run_tests(args.tests)
        finally:
            subprocess.run(["git", "checkout", "--", file], cwd=ROOT, check=True)
        caught = FAILED.findall(out)
        verdict = f"caught by {caught[0]}" if code != 0 and caught else f"NOT caught (pytest exit {code})"
        print(f"{n}. {what} [{file}]: {verdict}", flush=True)
        if not (code != 0 and caught):
            missed.append(n)
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
