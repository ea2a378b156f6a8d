"""Step time of adcbench vs the authors' own ADC code, on the same weights and batch (issue 11).

    python benchmarks/authors_step.py --authors PATH [--batch 64] [--steps 5] [--xi 0.01 0.1 0.3]
        [--no-base] [--out docs/benchmarks/authors.md]

PATH is a checkout of Federico-Alvetreti/Split-Learning_ADC. Nothing of it is part of this project:
its `methods/base.py`, `methods/proposal.py` and `comm/communication.py` are loaded from PATH at
run time (under private module names, so they cannot clash with adcbench's `methods`). Their
`methods/proposal.py` needs `kmeans_pytorch` from its git HEAD (the PyPI 0.3 wheel has no
`iter_limit`/`tqdm_flag`), which needs numba; hydra is not needed, their model classes are built
directly. docs/benchmarks/authors.md says what had to be adapted.

Both sides start from `speed.deit()` (DeiT-Tiny, random init, seed 0; the script checks that the
weights are identical) and train on `speed.fixed_batch(B)` with Adam (lr 1e-4), split after block 3,
CPU, one torch thread. adcbench runs its real Client/Server roles with a metered Loopback (bytes
both ways), with row skipping (the default) and without (`--no-row-skip`); the authors' step is
their model's forward, their label compression, cross-entropy, backward, Adam step, zero_grad.
Timing is `speed.interleave`: one warm-up step each, then A and B alternate (who goes first
alternates too); the ratio is the median of the per-pair ratios t_authors / t_adcbench (> 1:
adcbench is faster), with their range.

"At the same numbers": from fresh models, two steps each side. The authors' K-means is then given
adcbench's initial centroids (their library's `cluster_centers` argument; it otherwise draws them
from NumPy's unseeded global RNG), so the two sides cluster from the same start; the table gives
both losses, T, k, the largest cluster, and whether adcbench's K-means (`adcbench.methods.adc.kmeans`)
returns the authors' partition on the authors' own attention vectors. A last column runs their code
as is (NumPy init, `np.random.seed(0)`).

Bad arguments, a missing checkout or a missing kmeans_pytorch/numba are one line on stderr and
exit 2, answered before torch is imported; the work itself is in benchmarks/_authors_impl.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import NoReturn

NEEDED = ("methods/base.py", "methods/proposal.py", "comm/communication.py")
REPO = "Federico-Alvetreti/Split-Learning_ADC"


class UsageError(Exception):
    """Bad input: one line on stderr, exit 2, before torch is imported or any model built."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own: one line, not usage + message
        raise UsageError(message)


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = _Parser(description=__doc__.split("\n")[0])
    ap.add_argument("--authors", type=Path, default=None, help=f"a checkout of {REPO}")
    ap.add_argument("--batch", type=int, default=64, help="batch size B (the issue's 64; smaller for quick runs)")
    ap.add_argument("--steps", type=int, default=5, help="timed interleaved pairs after one warm-up step each")
    ap.add_argument("--xi", type=float, nargs="+", default=[0.01, 0.1, 0.3], help="ADC ratios to compare")
    ap.add_argument("--no-base", action="store_true", help="skip `none` vs their Base (the slowest rows)")
    ap.add_argument("--out", type=Path, default=None, help="markdown file; the text above its table marker is kept")
    args = ap.parse_args(argv)
    if args.authors is None:
        raise UsageError(f"--authors PATH is required: a checkout of {REPO} (not part of this project)")
    missing = [f for f in NEEDED if not (args.authors / f).is_file()]
    if missing:
        raise UsageError(f"--authors {args.authors}: not a checkout of {REPO} (no {', '.join(missing)})")
    if args.batch < 2:
        raise UsageError(f"--batch must be at least 2 (ADC merges into at least 2 clusters), got {args.batch}")
    if args.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {args.steps}")
    bad = [x for x in args.xi if not 0 < x <= 1]
    if bad:
        raise UsageError(f"--xi values must lie in (0, 1], got {bad[0]:g}")
    check_dependencies()
    return args


def check_dependencies() -> None:
    """Their ADC code imports kmeans_pytorch, as of its git HEAD (the PyPI 0.3 release has no
    `iter_limit`), and that imports numba: look for both without importing them (or torch)."""
    spec = importlib.util.find_spec("kmeans_pytorch")
    if spec is None or spec.origin is None:
        raise UsageError(
            "the authors' ADC code needs kmeans_pytorch from its git HEAD (and numba); it is not installed"
        )
    if "iter_limit" not in Path(spec.origin).read_text(errors="replace"):
        raise UsageError(
            "kmeans_pytorch is the PyPI 0.3 release, which the authors' code cannot call (no iter_limit): "
            "install it from its git HEAD"
        )
    if importlib.util.find_spec("numba") is None:
        raise UsageError("kmeans_pytorch (needed by the authors' ADC code) imports numba, which is not installed")


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(argv)
        sys.path.insert(0, str(Path(__file__).resolve().parent))  # speed.py and _authors_impl.py
        import _authors_impl as impl  # heavy (torch, timm, adcbench): only once the input is checked

        authors = impl.load_authors(args.authors)
    except (UsageError, ImportError) as e:
        print("authors_step.py: " + " ".join(str(e).split()), file=sys.stderr)  # one line, always
        return 2
    impl.torch.set_num_threads(1)
    lines = impl.run(args, authors)
    if args.out:
        impl.speed.write_table(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
