"""`adcbench methods` and `adcbench tasks`: the registries, read from the cached catalog
(cli/catalog.py), so listing them imports neither torch nor the data stack."""

from __future__ import annotations

import fnmatch

import click

from adcbench.cli.app import _fail, main
from adcbench.cli.catalog import entries, names, params


def _entries(kind: str, pattern: str) -> dict[str, dict]:
    matched = [n for n in names(kind) if fnmatch.fnmatchcase(n, pattern)]
    if not matched:
        _fail(f"no {kind} matches {pattern!r}; known: {', '.join(names(kind))}")
    return entries(kind, matched)


@main.command()
@click.argument("pattern", default="*")
@click.option("--verbose", "-v", is_flag=True, help="Show parameters with defaults and ranges.")
def methods(pattern: str, verbose: bool) -> None:
    """List registered compression methods (wildcards allowed: `adc*`)."""
    entries = _entries("method", pattern)
    detailed = verbose or len(entries) == 1
    for name, e in entries.items():
        click.echo(f"{name:<14} {e['description']}")
        ps = params(e)
        if not detailed:
            if ps:
                click.echo("    " + " ".join(f"{p.name}={p.default}" for p in ps))
            continue
        for p in ps:
            click.echo(f"    {p.name}={p.default}  ({p.range_text()}) {p.help}")
        if e.get("rate_param"):
            knob, values = e["rate_param"]
            click.echo(f"    rate knob: {knob} (e.g. {', '.join(map(str, values))})")
        if e.get("eval_compressed") is not None:
            click.echo(f"    eval (compressed policy): {e['eval_compressed']}")


@main.command()
@click.argument("pattern", default="*")
def tasks(pattern: str) -> None:
    """List registered tasks with their source and defaults."""
    for name, e in _entries("task", pattern).items():
        env = f", env {e['data_env']}" if e["data_env"] else ""
        click.echo(f"{name:<14} {e['description']}")
        click.echo(
            f"    {e['num_classes']} classes, {e['image_size']}px, {e['arch']} split {e['split_index']}, "
            f"batch {e['batch_size']}, lr {e['lr']:g}, {e['epochs']} epochs; source: {e['source']}{env}"
        )
        for p in params(e):
            click.echo(f"    {p.name}={p.default}  ({p.range_text()}) {p.help}")
