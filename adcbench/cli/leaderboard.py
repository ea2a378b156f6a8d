"""`adcbench leaderboard`: regenerate leaderboard.md and the plots from committed records."""

from __future__ import annotations

from pathlib import Path

import click

from adcbench.cli.app import main
from adcbench.errors import AdcbenchError


@main.command()
@click.argument("results", nargs=-1, type=click.Path())
@click.option("--out", default="leaderboard.md", show_default=True, type=click.Path())
@click.option(
    "--plots",
    default="docs/plots",
    show_default=True,
    type=click.Path(),
    help="Folder for the PNG plots (three per task).",
)
@click.option("--results", "results_opt", multiple=True, type=click.Path(), help="Same as a RESULTS argument.")
@click.option("--csv", default=None, type=click.Path(), help="Also write the summary as a tidy CSV table.")
def leaderboard(results: tuple[str, ...], results_opt: tuple[str, ...], out: str, plots: str, csv: str | None) -> None:
    """Regenerate leaderboard.md and the plots from the records in RESULTS (folders or .jsonl files;
    default: the committed study in results/). Running it twice gives identical files."""
    from adcbench.report.leaderboard import write_leaderboard

    sources = list(results) + list(results_opt) or ["results"]
    missing = [s for s in sources if not Path(s).exists()]
    if missing:
        raise AdcbenchError(f"no such results folder or file: {missing[0]} (records are written by adcbench run/sweep)")
    summary = write_leaderboard(sources, out, plots, csv=csv)
    click.echo(
        f"wrote {out} ({len(summary)} configurations) and plots in {plots}/" + (f"; table in {csv}" if csv else "")
    )
