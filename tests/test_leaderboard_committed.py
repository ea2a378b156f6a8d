"""The committed leaderboard.md is what `adcbench leaderboard` writes from the committed results:
a commit that adds records without regenerating the page, or a change to the report that would
rewrite it, fails here. The text is compared byte for byte; the plots are drawn by matplotlib,
whose pixels may change with its version, so here they only have to exist (regenerating them
twice gives identical files: test_leaderboard_v2.py)."""

from __future__ import annotations

import re
from pathlib import Path

from adcbench.report.leaderboard import write_leaderboard

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
