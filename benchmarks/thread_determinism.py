"""Do one training step's bytes depend on the torch thread count? Tiny split ViT of the tests
(tests/_harness.py), seed 3, one step per method at 1 and at 2 intra-op threads.
Usage: python benchmarks/thread_determinism.py (from the repository root)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _harness import make  # noqa: E402

SPECS = ["none", "quant:bits=4", "adc", "topk", "randtopk", "bottleneck", "c3sl", "tokenprune"]


def main() -> None:
    out = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        out[threads] = {s: make(s, seed=3).step()[:2] for s in SPECS}
    for s in SPECS:
        print(s, "same bytes at 1 and 2 threads" if out[1][s] == out[2][s] else "DIFFERENT bytes at 1 vs 2 threads")


if __name__ == "__main__":
    main()
