"""The committed leaderboard.md is what `adcbench leaderboard` writes from the committed results:
a commit that adds records without regenerating the page, or a change to the report that would
rewrite it, fails here. The text is compared byte for byte; the plots are drawn by matplotlib,
whose pixels may change with its version, so here they only have to exist (regenerating them
twice gives identical files: test_leaderboard_v2.py)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from adcbench.core.records import read_records
from adcbench.report.leaderboard import write_leaderboard
from adcbench.report.plots import family
from adcbench.report.studyinfo import STUDY_FAMILIES

ROOT = Path(__file__).parents[1]
IMAGE = re.compile(r"^!\[[^\]]*\]\(([^)]+)\)$")


def without_images(text: str) -> str:
    """The page as written without plots: each image line and the blank line after it dropped."""
    lines, out = text.split("\n"), []
    skip = False
    for line in lines:
        if skip and line == "":
            skip = False
            continue
        skip = bool(IMAGE.match(line))
        if not skip:
            out.append(line)
    return "\n".join(out)


def test_the_committed_leaderboard_regenerates_from_the_committed_results(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)  # the page names its sources as given: `results`
    committed = (ROOT / "leaderboard.md").read_text()
    write_leaderboard("results", tmp_path / "leaderboard.md", None)
    assert (tmp_path / "leaderboard.md").read_text() == without_images(committed)
    images = [m.group(1) for line in committed.splitlines() if (m := IMAGE.match(line))]
    assert images and all((ROOT / p).is_file() for p in images)


def test_the_committed_study_covers_every_family_at_four_points_and_three_seeds() -> None:
    """Issue 14's coverage, read off the committed records: on both real-image tasks, each family of
    STUDY_FAMILIES (but `none`, which has no operating point) and the two compositions at >= 4
    points with >= 3 completed warm-started seeds each, `none` from the other task's warm start and
    from scratch, and the warm start trained on the other dataset."""
    for task, source in (("cifar10", "imagenette"), ("imagenette", "cifar10")):
        seeds: dict[tuple[str, str], set[int]] = defaultdict(set)
        for r in read_records(ROOT / "results" / f"{task}.jsonl", warn=False):
            if r["status"] == "completed" and r["task"] == task:
                seeds[(r["method"], r["model"]["init"])].add(r["seed"])
        warm = {m for (m, init), s in seeds.items() if init.startswith(f"warmstart:{source}") and len(s) >= 3}
        assert ("none", "scratch") in seeds and len(seeds[("none", "scratch")]) >= 3, task
        assert "none" in warm, task
        for fam in [f for f in STUDY_FAMILIES if f != "none"] + ["adc+quant", "topk+quant"]:
            points = sorted(m for m in warm if family(m) == fam)
            assert len(points) >= 4, f"{task}: {fam} at {points}"


def test_every_committed_record_ran_at_a_clean_commit() -> None:
    """A record from a tree with uncommitted edits names no code that regenerates it (the sweep's
    own appends to results/ do not count: tests/test_results.py)."""
    files = sorted((ROOT / "results").glob("*.jsonl"))
    assert files
    for f in files:
        dirty = [(r["method"], r["seed"]) for r in read_records(f, warn=False) if r["provenance"]["git_dirty"]]
        assert not dirty, f"{f.name}: {len(dirty)} records ran on a dirty tree, e.g. {dirty[0]}"
