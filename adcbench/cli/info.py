"""`adcbench methods` and `adcbench tasks`: the registries."""

from __future__ import annotations

import click

from adcbench.cli.app import _fail, main


@main.command()
@click.argument("pattern", default="*")
@click.option("--verbose", "-v", is_flag=True, help="Show parameters with defaults and ranges.")
def methods(pattern: str, verbose: bool) -> None:
    """List registered compression methods (wildcards allowed: `adc*`)."""
    from adcbench.core.method import METHODS

    names = METHODS.names(pattern)
    if not names:
        _fail(f"no method matches {pattern!r}; known: {', '.join(METHODS.names())}")
    detailed = verbose or len(names) == 1
    for name in names:
        cls = METHODS.get(name)
        click.echo(f"{name:<14} {cls.description}")
        if not detailed:
            if cls.params:
                click.echo("    " + " ".join(f"{p.name}={p.default}" for p in cls.params))
            continue
        for p in cls.params:
            click.echo(f"    {p.name}={p.default}  ({p.range_text()}) {p.help}")
        if getattr(cls, "rate_param", None):
            knob, values = cls.rate_param
            click.echo(f"    rate knob: {knob} (e.g. {', '.join(map(str, values))})")
        if hasattr(cls, "eval_compressed"):
            click.echo(f"    eval (compressed policy): {cls.eval_compressed}")


@main.command()
@click.argument("pattern", default="*")
def tasks(pattern: str) -> None:
    """List registered tasks with their source and defaults."""
    from adcbench.data.task import TASKS

    names = TASKS.names(pattern)
    if not names:
        _fail(f"no task matches {pattern!r}; known: {', '.join(TASKS.names())}")
    for name in names:
        cls = TASKS.get(name)
        env = f", env {cls.data_env}" if cls.data_env else ""
        click.echo(f"{name:<14} {cls.description}")
        click.echo(
            f"    {cls.num_classes} classes, {cls.image_size}px, {cls.arch} split {cls.split_index}, "
            f"batch {cls.batch_size}, lr {cls.lr:g}, {cls.epochs} epochs; source: {cls.source}{env}"
        )
        for p in cls.params:
            click.echo(f"    {p.name}={p.default}  ({p.range_text()}) {p.help}")
