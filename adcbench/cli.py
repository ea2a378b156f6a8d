"""Command line: `adcbench run | methods | tasks | sweep | leaderboard | pretrain`.

User errors (unknown names, bad parameters, missing data, bad bytes, NaN loss) print one line to
stderr and exit with code 2; no tracebacks."""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from adcbench.errors import AdcbenchError

SI = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_bytes(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgt]i?)?b?\s*", text.lower())
    if not m:
        raise click.BadParameter(f"{text!r} is not a byte count (e.g. 2e9, 500MB, 1.5GiB)")
    value = float(m.group(1)) * SI[m.group(2) or ""]
    if value < 1:
        raise click.BadParameter(f"{text!r} must be at least 1 byte")
    return int(value)


def _fail(msg: str) -> None:
    click.echo(f"adcbench: error: {msg}", err=True)
    sys.exit(2)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AdcbenchError as exc:
            _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except KeyboardInterrupt:
            click.echo("adcbench: interrupted (the run's record was written with status=interrupted)", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="adcbench")
def main() -> None:
    """adcbench: communication-efficient split learning of ViTs, with bytes measured on the wire."""


def _task_spec(spec: str) -> tuple[str, dict[str, str]]:
    from adcbench.core.params import parse_spec

    (name, params), *rest = parse_spec(spec)
    if rest:
        raise AdcbenchError(f"a task spec has one part, got {spec!r}")
    return name, params


def run_options(f: Callable) -> Callable:
    opts = [
        click.option(
            "--task",
            "task_spec",
            default="digits",
            show_default=True,
            help="Task name, optionally with parameters (`imagenette:preset=cpu112`).",
        ),
        click.option("--data", default=None, help="Local dataset path (folder, archive or saved dataset)."),
        click.option("--epochs", type=click.IntRange(1), default=None, help="Epochs [default: the task's]."),
        click.option(
            "--budget-bytes", default=None, help="Stop before training traffic (fwd+bwd) exceeds this (e.g. 2GB)."
        ),
        click.option(
            "--budget-accounting",
            type=click.Choice(["measured", "nominal"]),
            default="measured",
            show_default=True,
            help="nominal: charge ξ·C_base per step as the paper's code does.",
        ),
        click.option("--max-steps", type=click.IntRange(1), default=None, help="Stop after this many steps."),
        click.option(
            "--batch-size", type=click.IntRange(2), default=None, help="Training batch [default: the task's]."
        ),
        click.option("--split", type=click.IntRange(1), default=None, help="Client blocks l [default: the task's]."),
        click.option(
            "--lr", type=click.FloatRange(0, min_open=True), default=None, help="Adam learning rate, both sides."
        ),
        click.option(
            "--eval-every", type=click.IntRange(0), default=None, help="Steps between evaluations (0: each epoch)."
        ),
        click.option(
            "--eval-policy", type=click.Choice(["raw", "compressed", "both"]), default="both", show_default=True
        ),
        click.option(
            "--val-fraction",
            type=click.FloatRange(0, 1, max_open=True),
            default=0.0,
            show_default=True,
            help="Carve a validation split from train and evaluate the history on it.",
        ),
        click.option(
            "--init",
            default=None,
            help="scratch | pretrained | warmstart | PATH [default: the task's: scratch, or pretrained for paper224].",
        ),
        click.option(
            "--threads",
            type=click.IntRange(1),
            default=None,
            help="torch CPU threads (1 is often fastest on a busy 2-core machine).",
        ),
        click.option("--arch", default=None, help="timm ViT name overriding the task's backbone."),
        click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda"])),
        click.option("--out", default="results", show_default=True, help="Folder for <task>.jsonl records."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _config(method: str, seed: int, kw: dict[str, Any]):
    from adcbench.train.loop import RunConfig

    task, task_params = _task_spec(kw["task_spec"])
    return RunConfig(
        method=method,
        task=task,
        task_params=task_params,
        data=kw["data"],
        seed=seed,
        epochs=kw["epochs"],
        budget_bytes=parse_bytes(kw["budget_bytes"]) if kw["budget_bytes"] else None,
        budget_accounting=kw["budget_accounting"],
        max_steps=kw["max_steps"],
        batch_size=kw["batch_size"],
        split=kw["split"],
        lr=kw["lr"],
        eval_every=kw["eval_every"],
        eval_policy=kw["eval_policy"],
        val_fraction=kw["val_fraction"],
        init=kw["init"],
        arch=kw["arch"],
        threads=kw["threads"],
        device=kw["device"],
        out=kw["out"],
        progress=not kw["quiet"],
    )


def _report(rec: dict[str, Any]) -> None:
    f, b = rec["final"], rec["bytes"]
    acc_c = f"  acc(compressed eval) {f['acc_compressed']:.4f}" if f.get("acc_compressed") is not None else ""
    click.echo(
        f"{rec['task']} {rec['method']} seed={rec['seed']}: acc {f['acc']:.4f}{acc_c}  steps {rec['steps']}  "
        f"sent {b['fwd'] / 1e6:.2f} MB fwd / {b['bwd'] / 1e6:.2f} MB bwd "
        f"({b['per_sample_fwd']:,.0f} / {b['per_sample_bwd']:,.0f} B per sample)"
        + (f"  -> {rec['record_file']}" if rec.get("record_file") else "")
    )


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
    from adcbench.train.loop import run as run_training

    _report(run_training(_config(method, seed, kw)))


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
    from adcbench.core.records import read_records
    from adcbench.train.loop import run as run_training

    seed_list = _parse_seeds(seeds)
    specs = [s for m in methods for s in expand(m)]
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
@click.option(
    "--task", "task_spec", required=True, help="Task name, optionally with parameters (`imagenette:preset=cpu112`)."
)
@click.option("--data", default=None, help="Local dataset path (folder, archive or saved dataset).")
@click.option(
    "--epochs", type=click.IntRange(1), default=None, help="Epochs [default: the preset's warm-start recipe]."
)
@click.option(
    "--lr", type=click.FloatRange(0, min_open=True), default=None, help="Adam learning rate [default: the recipe's]."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(2), default=None, help="Batch [default: the task's].")
@click.option("--arch", default=None, help="timm ViT name overriding the task's backbone.")
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.1,
    show_default=True,
    help="Held-out part of train the warm start never sees (runs tune on it with --val-fraction).",
)
@click.option("--max-steps", type=click.IntRange(1), default=None, help="Stop early (smoke tests).")
@click.option("--force", is_flag=True, help="Train again even if this recipe's checkpoint exists.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def pretrain(
    task_spec: str,
    data: str | None,
    epochs: int | None,
    lr: float | None,
    seed: int,
    batch_size: int | None,
    arch: str | None,
    val_fraction: float,
    max_steps: int | None,
    force: bool,
    quiet: bool,
) -> None:
    """Train the task's unsplit, uncompressed backbone once (CPU warm start) for --init warmstart."""
    import json

    from adcbench.data.task import get_task
    from adcbench.train.pretrain import pretrain as run_pretrain

    name, params = _task_spec(task_spec)
    task = get_task(name)(data=data, **params)
    path = run_pretrain(
        task,
        epochs=epochs,
        lr=lr,
        seed=seed,
        arch=arch,
        batch_size=batch_size,
        val_fraction=val_fraction,
        max_steps=max_steps,
        force=force,
        progress=not quiet,
    )
    meta = json.loads(path.with_suffix(".json").read_text())
    click.echo(
        f"{name}: warm start {path} (test acc {meta['final_test_accuracy']:.4f}, "
        f"{meta['steps']} steps, {meta['recipe']['epochs']} epochs at lr {meta['recipe']['lr']:g}); "
        "train from it with --init warmstart"
    )


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


@main.command()
@click.option("--results", default="results", show_default=True, type=click.Path())
@click.option("--out", default="leaderboard.md", show_default=True, type=click.Path())
@click.option(
    "--plots",
    default="docs/plots",
    show_default=True,
    type=click.Path(),
    help="Folder for the PNG plots (one per task).",
)
def leaderboard(results: str, out: str, plots: str) -> None:
    """Regenerate leaderboard.md and the plots from the run records."""
    from adcbench.report.leaderboard import write_leaderboard

    summary = write_leaderboard(results, out, plots)
    click.echo(f"wrote {out} ({len(summary)} configurations) and plots in {plots}/")


def entry() -> None:
    """Console entry point: click's own usage errors become one line + exit code 2 too."""
    try:
        main.main(standalone_mode=False)
    except click.exceptions.UsageError as exc:
        hint = f" (see `adcbench {exc.ctx.info_name} --help`)" if exc.ctx and exc.ctx.info_name != "main" else ""
        _fail(exc.format_message().splitlines()[0] + hint)
    except click.exceptions.Abort:
        _fail("aborted")
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    entry()
