"""`adcbench methods` and `adcbench tasks`: the registries, read from the cached catalog
(cli/catalog.py), so listing them imports neither torch nor the data stack."""

from __future__ import annotations

import fnmatch

import click

from adcbench.cli.app import _fail, main
from adcbench.cli.catalog import entries, names, params
from adcbench.core.params import missing_modules, unavailable_text

XI_TARGETS = (0.01, 0.05, 0.1, 0.3)


def _entries(kind: str, pattern: str) -> dict[str, dict]:
    matched = [n for n in names(kind) if fnmatch.fnmatchcase(n, pattern)]
    if not matched:
        _fail(f"no {kind} matches {pattern!r}; known: {', '.join(names(kind))}")
    return entries(kind, matched)


@main.command()
@click.argument("pattern", default="*")
@click.option("--verbose", "-v", is_flag=True, help="Show parameters with defaults and ranges.")
@click.option(
    "--task", "task_spec", default="digits", show_default=True, help="Task whose cut shapes the xi= table uses."
)
def methods(pattern: str, verbose: bool, task_spec: str) -> None:
    """List registered compression methods (wildcards allowed: `adc*`)."""
    entries = _entries("method", pattern)
    detailed = verbose or len(entries) == 1
    cut = _task_cut(task_spec) if len(entries) == 1 else None
    for name, e in entries.items():
        click.echo(f"{name:<14} {e['description']}")
        if missing := missing_modules(e.get("requires") or []):
            click.echo(f"    UNAVAILABLE: {unavailable_text(name, missing, e.get('install', ''))}")
        ps = params(e)
        policy = f"deployed accuracy: {e.get('deployment_policy') or 'raw'} policy"
        if not detailed:
            if ps:
                click.echo("    " + " ".join(f"{p.name}={p.default}" for p in ps))
            click.echo(f"    eval (compressed policy): {e.get('eval_compressed')}; {policy}")
            continue
        for p in ps:
            click.echo(f"    {p.name}={p.default}  ({p.range_text()}) {p.help}")
        if e.get("rate_param"):
            knob, values = e["rate_param"]
            generic = "" if knob == "xi" else "; or xi= (the target wire ratio against none)"
            click.echo(f"    rate knob: {knob} (e.g. {', '.join(map(str, values))}){generic}")
        click.echo(f"    eval (compressed policy): {e.get('eval_compressed')}")
        click.echo(f"    {policy} (the headline; the record has both)")
        if e.get("same_as"):
            click.echo(f"    same algorithm as: {e['same_as']}")
        if cut is not None and e.get("rate_param"):
            _xi_table(name, cut, task_spec)


def _task_cut(task_spec: str):  # -> Cut
    from adcbench.cli.options import _task_spec
    from adcbench.core.method import Cut
    from adcbench.data.task import get_task
    from adcbench.model.backbones import probe_cut

    name, params = _task_spec(task_spec)
    task = get_task(name)(**params)
    _, n, d, prefix = probe_cut(task, None, task.split_index)
    return Cut(n, d, task.num_classes, task.batch_size, prefix)


def _xi_table(name: str, cut, task_spec: str) -> None:  # noqa: ANN001 (Cut: imported lazily)
    """What `xi=` maps to at the task's cut, and the wire ratio achieved (analytic, both ways)."""
    from adcbench.core.params import _fmt
    from adcbench.core.pipeline import Pipeline
    from adcbench.errors import ParamError

    click.echo(
        f"    xi= at {task_spec}'s cut ({cut.tokens}x{cut.dim}, batch {cut.batch_size}), achieved wire ratio vs none:"
    )
    for xi in XI_TARGETS:
        try:
            pipe = Pipeline.from_spec(f"{name}:xi={xi:g}")
            pipe.setup(cut)
        except ParamError as exc:
            click.echo(f"      xi={xi:g}: {exc}")
            continue
        stage = pipe.resolved()[0]
        knob = type(pipe.stages[0]).rate_param[0]  # type: ignore[index]
        native = "(native)" if knob == "xi" else f"-> {knob}={_fmt(stage['params'][knob])}"
        click.echo(f"      xi={xi:g} {native}  achieved xi {pipe.achieved_xi():.4f}")


@main.command()
@click.argument("pattern", default="*")
def tasks(pattern: str) -> None:
    """List registered tasks with their source and defaults."""
    for name, e in _entries("task", pattern).items():
        env = f", env {e['data_env']}" if e["data_env"] else ""
        click.echo(f"{name:<14} {e['description']}")
        click.echo(
            f"    {_classes(e['num_classes'])}, {e['image_size']}px, {e['arch']} split {e['split_index']}, "
            f"batch {e['batch_size']}, lr {e['lr']:g}, {e['epochs']} epochs; source: {e['source']}{env}"
        )
        for p in params(e):
            click.echo(f"    {p.name}={p.default}  ({p.range_text()}) {p.help}")


def _classes(n: int) -> str:
    if not n:
        return "classes from the data"
    return f"{n} class" if n == 1 else f"{n} classes"
