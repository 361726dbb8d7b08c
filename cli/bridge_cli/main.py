"""`bridge`: the operators' command line, thin over the services' packages.

Every command shares the same conventions (docs/cli.md): `--json` output, and exit status 0
(done), 1 (done, but something asked for was not found or failed: see the output) or 2 (bad
usage, or the environment is wrong: an unreachable PostgreSQL, Redis, Kafka or service, a
missing key or setting), the last always one line on stderr saying what to fix.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from . import customers, db, dlq, keys, privacy, retention, templates
from .audit import audit_command
from .erase import erase
from .failures import GuardedGroup

PACKAGE = "siteti-bridge"

app = typer.Typer(
    cls=GuardedGroup,
    no_args_is_help=True,
    help="siteti-bridge operations.",
    # A traceback that does get through (a bug) must not print its frames' values: settings,
    # keys, customers' data.
    pretty_exceptions_show_locals=False,
)
app.add_typer(customers.app, name="customers")
app.add_typer(templates.app, name="templates")
app.add_typer(dlq.app, name="dlq")
app.add_typer(keys.app, name="keys")
app.add_typer(privacy.app, name="privacy")
app.add_typer(db.app, name="db")
app.add_typer(retention.app, name="retention")
app.command("audit")(audit_command)
app.command("erase")(erase)


def package_version() -> str:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"bridge {package_version()}")
        raise typer.Exit()


@app.callback()
def main(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """siteti-bridge operations."""
    # Client libraries log their own failures (aiokafka's connection errors, unmasked) through
    # logging's last-resort handler onto stderr; the CLI reports failures itself, in one line.
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())
