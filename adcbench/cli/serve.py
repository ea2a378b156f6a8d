"""`adcbench serve` (the server role for a client on another host), how `adcbench run` picks its
transport, and `adcbench replay` (a run's timeline under a modelled link). docs/transport.md."""

from __future__ import annotations

import os
from typing import Any

import click

from adcbench.cli.app import main
from adcbench.cli.options import parse_bytes, parse_hostport
from adcbench.errors import AdcbenchError


def run_over(cfg: Any, kw: dict[str, Any]) -> dict[str, Any]:
    """`adcbench run` with its transport options; every option is checked before any data loads."""
    cap, timeout = parse_bytes(kw["max_message_bytes"]), kw["timeout"]
    if kw["connect"] or kw["role"] == "client":
        if kw["connect"]:
            host, port = parse_hostport(kw["connect"])
        elif os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT", "").isdigit():
            host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
        else:
            raise AdcbenchError("--role client needs --connect HOST:PORT (or MASTER_ADDR and MASTER_PORT)")
        from adcbench.train.remote import connect, run_client

        with connect(host, port, timeout, cap, max(timeout, 60.0)) as transport:
            return run_client(cfg, transport)
    if kw["transport"] == "tcp":
        from adcbench.train.remote import run_pair

        return run_pair(cfg, timeout, cap)
    from adcbench.train.loop import run as run_training

    return run_training(cfg)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address clients reach this server at.")
@click.option("--port", type=click.IntRange(1, 65535), default=29500, show_default=True)
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds of peer silence.",
)
@click.option(
    "--wait",
    type=click.FloatRange(0, min_open=True),
    default=600.0,
    show_default=True,
    help="Seconds to wait for a client.",
)
@click.option(
    "--max-message-bytes", default="1GiB", show_default=True, help="Refuse longer messages before allocation."
)
def serve(host: str, port: int, timeout: float, wait: float, max_message_bytes: str) -> None:
    """Serve one run's server role to `adcbench run --role client --connect HOST:PORT`.

    The client sends its configuration; this side builds the same parties from it, so it needs the
    task's data too (digits is built in)."""
    from adcbench.train.remote import serve_once

    click.echo(f"adcbench serve: waiting for a client at {host}:{port} (gloo, env:// rendezvous)", err=True)
    summary = serve_once(host, port, timeout, parse_bytes(max_message_bytes), wait)
    t = summary["transport"]
    click.echo(
        f"served {summary['task']} {summary['method']}: {summary['steps']} steps for {t['peer_host'] or 'a client'}; "
        f"received {t['wire_bytes']['fwd']:,} B fwd, sent {t['wire_bytes']['bwd']:,} B bwd (frames included)"
    )


@main.command()
@click.argument("results", type=click.Path(exists=True))
@click.option(
    "--link", "links", multiple=True, default=["lte"], show_default=True, help="Preset or up=..,down=..,rtt=.."
)
@click.option("--target", type=click.FloatRange(0, 1), default=None, help="Also print the time to this accuracy.")
@click.option("--method", default=None, help="Only records of this method spec.")
def replay(results: str, links: tuple[str, ...], target: float | None, method: str | None) -> None:
    """Print each run's timeline (accuracy vs virtual time) under a modelled link, from RESULTS
    (a .jsonl file or a folder of them); nothing is re-trained."""
    from adcbench.core.records import read_records
    from adcbench.transport.link import parse_link, time_to_accuracy, timeline

    parsed = [parse_link(text) for text in links]
    records = [r for r in read_records(results) if r.get("history") and (method is None or r["method"] == method)]
    if not records:
        raise AdcbenchError(f"no records with a history in {results}")
    for link in parsed:
        click.echo(f"# link {link.name}: {link.spec()}  ({link.source})")
        for rec in records:
            ttx = ""
            if target is not None:
                t = time_to_accuracy(rec, link, target)
                ttx = f"  time to {target:.0%}: {'never' if t is None else f'{t:,.1f} s'}"
            click.echo(f"{rec['task']} {rec['method']} seed={rec['seed']} [{rec.get('status')}]{ttx}")
            for row in timeline(rec, link):
                acc = "-" if row["acc"] is None else f"{row['acc']:.4f}"
                click.echo(
                    f"  step {row['step']:>6}  acc {acc}  t {row['time_s']:>12,.2f} s  "
                    f"(compute {row['compute_s']:,.2f} + link {row['link_s']:,.2f})"
                    + ("" if row["eval_traffic"] else "  [record predates eval traffic]")
                )
