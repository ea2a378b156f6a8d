"""The click application: the command group, one-line errors with exit code 2, the entry point."""

from __future__ import annotations

import sys
from typing import Any

import click

from adcbench.errors import AdcbenchError


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
