"""`adcbench sweep`: a grid of methods x seeds, resumable."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import click

from adcbench.cli.app import main
from adcbench.cli.options import _config, _report, check_inputs, run_options


def expand(spec: str) -> list[str]:
    """Brace expansion: `adc:xi={0.01,0.1}` -> ['adc:xi=0.01', 'adc:xi=0.1']."""
    parts = re.split(r"(\{[^{}]*\})", spec)
    choices = [p[1:-1].split(",") if p.startswith("{") else [p] for p in parts]
    return ["".join(c) for c in itertools.product(*choices)]


@main.command()
@click.option(
    "--method",
    "methods",
    multiple=True,
    required=True,
    help="Method spec, repeatable; braces expand: `adc:xi={0.01,0.1,0.5}`.",
)
@click.option("--seeds", default="0", show_default=True, help="Comma list or range: `0,1,2` or `0-4`.")
@click.option("--rerun", is_flag=True, help="Run even if a completed record with the same config and seed exists.")
@run_options
def sweep(methods: tuple[str, ...], seeds: str, rerun: bool, **kw: Any) -> None:
    """Run a grid of methods × seeds, skipping configurations already completed in OUT."""
    seed_list = _parse_seeds(seeds)
    specs = [s for m in methods for s in expand(m)]
    for spec in specs:  # every spec checked before the heavy imports (and before the first run)
        check_inputs(spec, kw)
    from adcbench.core.records import read_records
    from adcbench.train.loop import run as run_training

    done: set[tuple[str, str, int]] = set()
    out = Path(kw["out"])
    if not rerun and out.exists():
        done = {(r["task"], r["method"], r["seed"]) for r in read_records(out) if r.get("status") == "completed"}
    jobs = [(s, seed) for s in specs for seed in seed_list]
    click.echo(f"sweep: {len(jobs)} runs ({len(specs)} methods × {len(seed_list)} seeds)")
    for i, (spec, seed) in enumerate(jobs, 1):
        cfg = _config(spec, seed, kw)
        from adcbench.core.pipeline import Pipeline

        canonical = Pipeline.from_spec(spec).spec
        if (cfg.task, canonical, seed) in done:
            click.echo(f"[{i}/{len(jobs)}] {canonical} seed={seed}: already in {out}, skipped")
            continue
        click.echo(f"[{i}/{len(jobs)}] {canonical} seed={seed}")
        _report(run_training(cfg))


def _parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)-(\d+)", part)
        if m:
            seeds += list(range(int(m.group(1)), int(m.group(2)) + 1))
        elif part.isdigit():
            seeds.append(int(part))
        else:
            raise click.BadParameter(f"seeds: {part!r} is not an integer or a range like 0-4")
    return seeds
