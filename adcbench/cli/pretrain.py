"""`adcbench pretrain`: the CPU warm start."""

from __future__ import annotations

import click

from adcbench.cli.app import main
from adcbench.cli.options import _task_spec


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
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=None,
    help="torch CPU threads [default: as `run`]; the weights' bits depend on it (recorded in the checkpoint).",
)
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
    threads: int | None,
    quiet: bool,
) -> None:
    """Train the task's unsplit, uncompressed backbone once (CPU warm start) for --init warmstart."""
    import json

    from adcbench.data.task import get_task
    from adcbench.model.warmstart import is_partial
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
        threads=threads,
    )
    meta = json.loads(path.with_suffix(".json").read_text())
    recipe = meta["recipe"]
    if is_partial(recipe):  # say what actually ran, and that warmstart will not pick it
        ran = f"{meta['steps']} steps (stopped by --max-steps {recipe['max_steps']}; a partial recipe)"
        use = f"--init warmstart never picks a partial recipe: use it with --init {path}"
    else:
        ran = f"{meta['steps']} steps, {recipe['epochs']} epoch{'' if recipe['epochs'] == 1 else 's'}"
        use = "train from it with --init warmstart"
    click.echo(
        f"{name}: warm start {path} (test acc {meta['final_test_accuracy']:.4f}, {ran} at lr {recipe['lr']:g}; "
        f"sha256 {meta['sha256'][:12]}); {use}"
    )
