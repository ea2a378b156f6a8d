"""`adcbench run`: one configuration."""

from __future__ import annotations

from typing import Any

import click

from adcbench.cli.app import main
from adcbench.cli.options import _config, _report, run_options


@main.command()
@click.option(
    "--method",
    default="adc",
    show_default=True,
    help="Method spec: `name`, `name:key=value,...`, or a composition `adc:xi=0.1+quant:bits=8`.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@run_options
def run(method: str, seed: int, **kw: Any) -> None:
    """Train one configuration over the metered wire and append its record to OUT/<task>.jsonl."""
    cfg = _config(method, seed, kw)  # checks names and parameters before the heavy imports
    from adcbench.train.loop import run as run_training

    _report(run_training(cfg))
