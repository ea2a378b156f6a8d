"""`adcbench methods` and `adcbench tasks`: the registries."""

from __future__ import annotations

import click

from adcbench.cli.app import _fail, main

XI_TARGETS = (0.01, 0.05, 0.1, 0.3)


@main.command()
@click.argument("pattern", default="*")
@click.option("--verbose", "-v", is_flag=True, help="Show parameters with defaults and ranges.")
@click.option(
    "--task", "task_spec", default="digits", show_default=True, help="Task whose cut shapes the xi= table uses."
)
def methods(pattern: str, verbose: bool, task_spec: str) -> None:
    """List registered compression methods (wildcards allowed: `adc*`)."""
    from adcbench.core.method import METHODS

    names = METHODS.names(pattern)
    if not names:
        _fail(f"no method matches {pattern!r}; known: {', '.join(METHODS.names())}")
    detailed = verbose or len(names) == 1
    cut = _task_cut(task_spec) if len(names) == 1 else None
    for name in names:
        cls = METHODS.get(name)
        click.echo(f"{name:<14} {cls.description}")
        policy = f"deployed accuracy: {cls.deployment_policy} policy"
        if not detailed:
            if cls.params:
                click.echo("    " + " ".join(f"{p.name}={p.default}" for p in cls.params))
            click.echo(f"    eval (compressed policy): {cls.eval_compressed}; {policy}")
            continue
        for p in cls.params:
            click.echo(f"    {p.name}={p.default}  ({p.range_text()}) {p.help}")
        if getattr(cls, "rate_param", None):
            knob, values = cls.rate_param
            generic = "" if knob == "xi" else "; or xi= (the target wire ratio against none)"
            click.echo(f"    rate knob: {knob} (e.g. {', '.join(map(str, values))}){generic}")
        click.echo(f"    eval (compressed policy): {cls.eval_compressed}")
        click.echo(f"    {policy} (the headline; the record has both)")
        if cls.same_as:
            click.echo(f"    same algorithm as: {cls.same_as}")
        if cut is not None and getattr(cls, "rate_param", None):
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
    from adcbench.data.task import TASKS

    names = TASKS.names(pattern)
    if not names:
        _fail(f"no task matches {pattern!r}; known: {', '.join(TASKS.names())}")
    for name in names:
        cls = TASKS.get(name)
        env = f", env {cls.data_env}" if cls.data_env else ""
        click.echo(f"{name:<14} {cls.description}")
        click.echo(
            f"    {_classes(cls.num_classes)}, {cls.image_size}px, {cls.arch} split {cls.split_index}, "
            f"batch {cls.batch_size}, lr {cls.lr:g}, {cls.epochs} epochs; source: {cls.source}{env}"
        )
        for p in cls.params:
            click.echo(f"    {p.name}={p.default}  ({p.range_text()}) {p.help}")


def _classes(n: int) -> str:
    if not n:
        return "classes from the data"
    return f"{n} class" if n == 1 else f"{n} classes"
