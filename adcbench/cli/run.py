"""`adcbench run`: one configuration."""

from __future__ import annotations

from typing import Any

import click

from adcbench.cli.app import main
from adcbench.cli.options import _config, _report, run_options, transport_options


@main.command()
@click.option(
    "--method",
    default="adc",
    show_default=True,
    help="Method spec: `name`, `name:key=value,...`, or a composition `adc:xi=0.1+quant:bits=8`.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@run_options
@transport_options
def run(method: str, seed: int, **kw: Any) -> None:
    """Train one configuration over the metered wire and append its record to OUT/<task>.jsonl."""
    from adcbench.cli.serve import run_over

    _report(run_over(_config(method, seed, kw), kw))
