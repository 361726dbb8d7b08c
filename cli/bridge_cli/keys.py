"""`bridge keys`: the data-protection keys (docs/data-protection.md)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from bridge.config import Settings, get_settings
from bridge.db import connect
from bridge.protect import DataKeys, KeyConfigError, data_keys, new_key_entry
from dispatcher import rekey

from .output import progress_bar, wants_progress

app = typer.Typer(no_args_is_help=True, help="Data-protection keys: make one, rotate to it.")


@app.command("new")
def new(
    key_id: Annotated[str, typer.Option("--id", help="The new key's id (letters, digits, . _ -)")],
) -> None:
    """Print a fresh `id:base64key` entry: put it FIRST in BRIDGE_DATA_KEYS, keep the old ones
    after it, roll the services, then run `bridge keys rotate`."""
    try:
        typer.echo(new_key_entry(key_id))
    except KeyConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc


def configured_keys(settings: Settings) -> DataKeys:
    """The data keys, or one line saying what to set and exit status 2."""
    try:
        return data_keys(settings)
    except KeyConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc


async def _rotate(batch_size: int, reindex: bool, dry_run: bool) -> None:
    settings = get_settings()
    keys = configured_keys(settings)
    pool = await connect(settings.database_url, max_size=2)
    try:
        total = await rekey.pending(pool, keys, reindex=reindex)
        typer.echo(f"{total} stored values to re-seal under key {keys.current_id!r}")
        if dry_run or not total:
            return
        with progress_bar("re-sealing", total, visible=wants_progress(None, False)) as advance:
            report = await rekey.rotate(
                pool, keys, batch_size=batch_size, reindex=reindex, progress=advance
            )
        typer.echo(
            f"re-sealed {report.resealed.get('customers', 0)} customers and"
            f" {report.resealed.get('dead_letters', 0)} dead letters"
            f" under {keys.current_id!r}"
            + (
                f"; {report.skipped} changed meanwhile (sealed by the services)"
                if report.skipped
                else ""
            )
        )
        for key_id, count in sorted(report.unreadable.items()):
            typer.echo(
                f"{count} rows sealed under key {key_id!r}, which BRIDGE_DATA_KEYS does not"
                " list: add that key (after the first) and run it again",
                err=True,
            )
        left = await rekey.pending(pool, keys, reindex=False)
        if left:
            typer.echo(f"{left} values still under other keys: run it again", err=True)
            raise typer.Exit(code=1)
    finally:
        await pool.close()


@app.command("rotate")
def rotate(
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Rows per transaction")] = 500,
    reindex: Annotated[
        bool, typer.Option(help="Also recompute every keyed hash (after BRIDGE_INDEX_KEY changed)")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, change nothing")] = False,
) -> None:
    """Re-seal every stored number, e-mail and name under the first key of BRIDGE_DATA_KEYS.

    Safe while the services run, and resumable: stopped half-way, run it again."""
    asyncio.run(_rotate(batch_size, reindex, dry_run))
