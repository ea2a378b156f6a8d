"""`adcbench leaderboard`: regenerate leaderboard.md and the plots from committed records."""

from __future__ import annotations

import click

from adcbench.cli.app import main


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
