"""benchmarks/authors_step.py: bad input is one line and exit 2 before torch is imported; with a
checkout of the authors' code (ADCBENCH_AUTHORS_REPO, never part of this project) one tiny step
of each side runs and the two compute the same loss and partition."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCH / "authors_step.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


@pytest.fixture
def fake_checkout(tmp_path: Path) -> Path:
    """The three files the script looks for, empty: enough to get past the checkout test."""
    for rel in ("methods/base.py", "methods/proposal.py", "comm/communication.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "--authors PATH is required"),
        (("--authors", "/nonexistent/Split-Learning_ADC"), "not a checkout of Federico-Alvetreti/Split-Learning_ADC"),
        (("--authors", "CHECKOUT", "--batch", "1"), "--batch must be at least 2"),
        (("--authors", "CHECKOUT", "--batch", "x"), "invalid int value"),
        (("--authors", "CHECKOUT", "--xi", "0"), "--xi values must lie in (0, 1]"),
        (("--authors", "CHECKOUT", "--steps", "0"), "--steps must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], says: str, fake_checkout: Path) -> None:
    res = _run(*(str(fake_checkout) if a == "CHECKOUT" else a for a in args))
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], res.stderr


def test_missing_kmeans_pytorch_is_one_line(fake_checkout: Path, tmp_path: Path) -> None:
    """With kmeans_pytorch hidden (a shadowing package without iter_limit, as the PyPI 0.3
    release), the script says so instead of failing inside the authors' import."""
    shadow = tmp_path / "shadow" / "kmeans_pytorch"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("def kmeans(X, num_clusters, distance='euclidean', tol=1e-4): pass\n")
    env = dict(os.environ, PYTHONPATH=str(shadow.parent))
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--authors", str(fake_checkout)], capture_output=True, text=True, env=env
    )
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "PyPI 0.3" in res.stderr, res.stderr


@pytest.mark.skipif(not os.environ.get("ADCBENCH_AUTHORS_REPO"), reason="set ADCBENCH_AUTHORS_REPO to a checkout")
def test_one_tiny_step_agrees_with_the_authors() -> None:
    import torch

    sys.path.insert(0, str(BENCH))
    import _authors_impl as impl

    torch.set_num_threads(1)
    authors = impl.load_authors(Path(os.environ["ADCBENCH_AUTHORS_REPO"]))
    row = impl.agreement(authors, "adc:xi=0.1", 0.1, 4).strip("| ").split(" | ")
    ours, theirs = float(row[1]), float(row[2])
    assert abs(ours - theirs) < 1e-5, row  # the same first-step loss
    assert row[7] == "2 / 2" and row[8] == "62 / 62" and row[10] == "yes", row  # T, k, partition
