"""Evaluation plumbing: the history's (optionally subsampled) and the final eval loaders, an
evaluation progress bar, and the console line that names a warm start."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from adcbench.model.warmstart import describe_recipe

EVAL_SUBSET_SEED = 0  # fixed: every run and seed evaluates its history on the same subset


def eval_loaders(data: Dataset, settings: dict[str, Any], num_workers: int = 0, **opts: Any) -> dict[str, DataLoader]:
    """ "history": a fixed seeded subset of `eval_samples` (all samples when unset or larger);
    "final": the full split, the same subset when `final_eval="subset"`, or the first
    `final_eval_samples` of the same seeded order (a superset of the history's)."""
    bs = max(settings["batch_size"], 256)
    size = len(data)  # type: ignore[arg-type]
    order = torch.randperm(size, generator=torch.Generator().manual_seed(EVAL_SUBSET_SEED)).tolist()

    def loader(n: int | None) -> DataLoader:
        part = data if n is None or n >= size else Subset(data, sorted(order[:n]))
        return DataLoader(part, batch_size=bs, shuffle=False, num_workers=num_workers, **opts)

    n, n_final = settings.get("eval_samples"), settings.get("final_eval_samples")
    history = loader(n)
    if settings.get("final_eval") == "subset" or ((n is None or n >= size) and n_final is None):
        return {"history": history, "final": history}
    return {"history": history, "final": loader(n_final)}


@contextlib.contextmanager
def eval_progress(enabled: bool, total: int, desc: str) -> Iterator[Any]:
    """A transient second progress bar while an evaluation runs (it can take minutes)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, disable=not enabled, dynamic_ncols=True, leave=False, position=1)
    try:
        yield bar
    finally:
        bar.close()


def say_warmstart(info: dict[str, Any]) -> None:
    """Name the warm start on the console: which recipe, how good, which file (checksum)."""
    recipe = info.get("recipe") or {}
    ws = info.get("warmstart") or {}
    acc = ws.get("final_test_accuracy")
    print(
        f"adcbench: warm start {info.get('path')} (trained on {ws.get('task', '?')}; recipe {describe_recipe(recipe) or '?'}; "
        f"test acc {acc if acc is None else f'{acc:.4f}'}; sha256 {str(info.get('sha256'))[:12]})",
        file=sys.stderr,
    )


# Log-spaced evaluation steps, a factor of about 1.5 apart (1, 2, 3, 4, 6, 8, 12, 18, 26, ...).
LOG_STEPS = frozenset(math.ceil(1.5**k) for k in range(64))


def eval_due(step: int, every: int, schedule: str) -> bool:
    """Whether the history gets an evaluation after `step`: every `every` steps, and with the
    "log" schedule also at the log-spaced steps."""
    return step % every == 0 or (schedule == "log" and step in LOG_STEPS)
