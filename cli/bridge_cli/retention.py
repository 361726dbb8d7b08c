"""`bridge retention run [--dry-run] [--json]`: delete what is older than RETENTION_DAYS, now.

Prints the cutoff and, per table and for FILEDROP_DIR's processed/ and failed/ files, what was
deleted (with --dry-run: what would be, deleting nothing), and how many open dead letters older
than the cutoff were kept (`--json`: the same as one object). What goes and why:
`dispatcher.retention` and docs/data-protection.md.
A real run takes the dispatchers' lease, so it never overlaps their rounds: exit status 1 when
one holds it (try again in a moment). A dry run only reads.
"""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from bridge.cache import new_redis
from bridge.config import get_settings
from bridge.db import connect
from dispatcher.retention import Lease, Report, plan, run

from .output import JsonOpt, print_json

app = typer.Typer(no_args_is_help=True, help="Retention: delete data older than RETENTION_DAYS.")


async def _run(dry_run: bool) -> Report | None:
    settings = get_settings()
    the_plan = plan(datetime.now(UTC), settings.retention_days)
    filedrop_dir = Path(settings.filedrop_dir)
    pool = await connect(settings.database_url, max_size=2)
    redis = new_redis(settings.redis_url)
    try:
        if dry_run:
            return await run(pool, filedrop_dir, the_plan, dry_run=True)
        lease = Lease(redis, f"cli:{socket.gethostname()}-{os.getpid()}")
        async with lease.held() as held:
            return await run(pool, filedrop_dir, the_plan) if held else None
    finally:
        await redis.aclose()
        await pool.close()


@app.command("run")
def run_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete audit rows, settled dead letters, webhook, file-drop and poller records, and
    processed files older than RETENTION_DAYS."""
    try:
        report = asyncio.run(_run(dry_run))
    except ValueError as exc:  # RETENTION_DAYS below 1
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=2) from exc
    if report is None:
        typer.echo("a retention round is running elsewhere (lease held); try again", err=True)
        raise typer.Exit(code=1)
    if as_json:
        print_json(report.summary())
        return
    for line in report.lines():
        typer.echo(line)
