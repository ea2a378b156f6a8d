"""`adcbench sweep`: a grid from a sweep file or the command line; resumable, sharded, launched
locally (`--jobs N`), on Ray or through SLURM. The logic lives in `adcbench.sweep`."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from adcbench.cli.app import main
from adcbench.cli.options import _config, check_inputs, run_options

if TYPE_CHECKING:
    from adcbench.sweep.grid import Run

# The sweep layer imports the training stack (torch): it is imported when a sweep runs, so that
# `adcbench methods` and option errors stay fast (cli/catalog.py).

# Command-line names of run options that are not RunConfig fields of the same name.
_FIELDS = {"task_spec": ("task", "task_params"), "quiet": ("progress",)}


def _report_line(rec: dict[str, Any]) -> str:
    f, b = rec["final"], rec["bytes"]
    acc = " ".join(f"{k} {f[k]:.4f}" for k in ("acc", "acc_compressed") if f.get(k) is not None)
    return (
        f"{rec['task']} {rec['method']} seed={rec['seed']}: {acc}  steps {rec['steps']}  "
        f"sent {b['fwd'] / 1e6:.2f} MB fwd / {b['bwd'] / 1e6:.2f} MB bwd"
    )


def _launcher(kw: dict[str, Any]) -> Any:
    from adcbench.sweep.launch import Local, Ray, Slurm

    if kw["launcher"] == "ray":
        return Ray(kw["address"], kw["cpus_per_run"], kw["gpus_per_run"])
    if kw["launcher"] == "slurm":
        return Slurm(
            kw["slurm_folder"],
            kw["partition"],
            kw["time_limit"],
            int(kw["gpus_per_run"]),
            max(1, int(kw["cpus_per_run"])),
            kw["array_parallelism"],
            kw["slurm_cluster"],
        )
    return Local(kw["jobs"])


def _grid(
    ctx: click.Context, file: str | None, methods: tuple[str, ...], seeds: str | None, kw: dict[str, Any]
) -> list[Run]:
    from adcbench.sweep.grid import SweepError, expand, make_run, parse_seeds
    from adcbench.sweep.sweepfile import load_sweep

    base = _config("none", 0, kw)
    explicit = {
        k for k in kw if ctx.get_parameter_source(k) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    }
    seed_list = parse_seeds(seeds) if seeds is not None else None
    if file is None:
        if not methods:
            raise SweepError("give a sweep file (adcbench sweep sweeps/NAME.yaml) or --method SPEC")
        runs = []
        for spec in (s for m in methods for s in expand(m)):
            for seed in seed_list or [0]:
                runs.append(make_run(dataclasses.replace(base, method=spec, seed=seed), "command line"))
        return list({r.run_id: r for r in runs}.values())
    if methods:
        raise SweepError(f"{file}: give the methods in the sweep file or with --method, not both")
    if "task_spec" in explicit:
        raise SweepError(f"{file}: give the tasks in the sweep file (`tasks:`) or with --task, not both")
    fields = [f for k in explicit for f in _FIELDS.get(k, (k,)) if f in {x.name for x in dataclasses.fields(base)}]
    return load_sweep(file, base, {f: getattr(base, f) for f in fields}, seed_list)


@main.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--method", "methods", multiple=True, help="Method spec, repeatable; braces expand: `adc:xi={0.01,0.1}`.")
@click.option(
    "--seeds", default=None, help="Comma list or ascending range: `0,1,2` or `0-4` [default: the file's, or 0]."
)
@click.option(
    "--dry-run", is_flag=True, help="List every run (hash, seed, spec, task, status) and the totals; run nothing."
)
@click.option("--rerun", is_flag=True, help="Run even completed runs, from scratch (no checkpoint).")
@click.option("--fail-fast", is_flag=True, help="Stop at the first failing run.")
@click.option(
    "--jobs",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Local runs at once (threads each: cores // N).",
)
@click.option("--shard", default=None, help="Run only shard i/n of the grid (0 <= i < n), e.g. $SLURM_ARRAY_TASK_ID/4.")
@click.option(
    "--checkpoint-every",
    type=click.IntRange(0),
    default=100,
    show_default=True,
    help="Steps between checkpoints (and at every evaluation).",
)
@click.option("--keep-checkpoints", is_flag=True, help="Keep each run's checkpoint after its record is written.")
@click.option("--launcher", type=click.Choice(["local", "ray", "slurm"]), default="local", show_default=True)
@click.option("--address", default=None, help="Ray cluster address [default: $RAY_ADDRESS, else a local Ray].")
@click.option("--cpus-per-run", type=click.FloatRange(0), default=1, show_default=True, help="Ray/SLURM CPUs per run.")
@click.option("--gpus-per-run", type=click.FloatRange(0), default=0, show_default=True, help="Ray/SLURM GPUs per run.")
@click.option("--partition", default=None, help="SLURM partition.")
@click.option(
    "--time-limit", type=click.IntRange(1), default=240, show_default=True, help="SLURM time limit per run, minutes."
)
@click.option(
    "--array-parallelism", type=click.IntRange(1), default=64, show_default=True, help="SLURM array tasks at once."
)
@click.option("--slurm-folder", default="results/slurm", show_default=True, help="submitit's logs and job files.")
@click.option("--slurm-cluster", type=click.Choice(["slurm", "local", "debug"]), default=None, hidden=True)
@run_options
@click.pass_context
def sweep(ctx: click.Context, file: str | None, methods: tuple[str, ...], seeds: str | None, **kw: Any) -> None:
    """Run a grid (a sweep file, or methods × seeds), skipping runs already completed in OUT.

    A run is its fully resolved configuration and seed (config hash): changing any option makes
    a new run; a failed or killed run resumes from its last checkpoint."""
    from adcbench.core.params import expand_braces

    for spec in (s for m in methods for s in expand_braces(m)):  # names and parameters: no torch yet
        check_inputs(spec, kw)
    from adcbench.sweep.runner import dry_run, prepare, run_sweep
    from adcbench.sweep.state import check_warm_starts, parse_shard, shard, statuses

    runs = shard(_grid(ctx, file, methods, seeds, kw), parse_shard(kw["shard"]))
    runs = prepare(runs, kw["checkpoint_every"], kw["keep_checkpoints"])
    check_warm_starts(runs, statuses(runs))
    if kw["dry_run"]:
        dry_run(runs, click.echo)
        return
    launcher = _launcher(kw)
    summary = run_sweep(
        runs,
        launcher,
        click.echo,
        rerun=kw["rerun"],
        fail_fast=kw["fail_fast"],
        progress=not kw["quiet"],
        report=_report_line,
    )
    if summary.failed:
        ctx.exit(1)
