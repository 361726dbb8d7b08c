"""`bridge customers import FILE [--dry-run] [--json] [--progress/--no-progress]`.

Upserts the directory from a CSV (account_number,email,phone,name,tier,late_payments): by
account number, else by e-mail. Every row is checked first; rows that cannot be imported are
reported by line number and reason, never with their number. `--dry-run` runs the same upserts
in a transaction it rolls back: what would be inserted, updated and rejected, nothing written.
Exit status 1 when any row was rejected (the others are imported), 2 when the file cannot
be read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from bridge.cache import new_redis
from bridge.config import Settings, get_settings
from bridge.db import connect
from bridge.protect import DataKeys
from dispatcher.directory import CsvRows, ImportReport, import_rows, read_csv

from .keys import configured_keys
from .output import Advance, JsonOpt, ProgressOpt, print_json, progress_bar, wants_progress

app = typer.Typer(no_args_is_help=True, help="The customer directory.")


def line_ranges(lines: Sequence[int]) -> str:
    """Line numbers for people: `2-4, 7`."""
    spans: list[list[int]] = []
    for line in sorted(lines):
        if spans and line == spans[-1][1] + 1:
            spans[-1][1] = line
        else:
            spans.append([line, line])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def describe(report: ImportReport) -> list[str]:
    """The report as text, one line each for what went in and one per rejected line."""
    would = "would be " if report.dry_run else ""
    out = ["dry run: nothing was written"] if report.dry_run else []
    for verb, lines in (("inserted", report.inserted), ("updated", report.updated)):
        plural = "s" if len(lines) > 1 else ""
        where = f" (line{plural} {line_ranges(lines)})" if lines and report.dry_run else ""
        out.append(f"{len(lines)} {would}{verb}{where}")
    if report.without_phone:
        out.append(f"{report.without_phone} without a WhatsApp number")
    out.append(f"{len(report.rejected)} rejected")
    out += [f"  line {line}: {why}" for line, why in report.rejected]
    return out


async def _import(
    settings: Settings, keys: DataKeys, parsed: CsvRows, dry_run: bool, advance: Advance
) -> ImportReport:
    pool = await connect(settings.database_url, max_size=2)
    redis = new_redis(settings.redis_url)
    try:
        if not dry_run:
            # The cache is cleared after the commit: find out now, before writing, if Redis
            # is away.
            await redis.ping()
        return await import_rows(pool, redis, keys, parsed, dry_run=dry_run, progress=advance)
    finally:
        await redis.aclose()
        await pool.close()


@app.command("import")
def import_command(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV file")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row, report, write nothing.")
    ] = False,
    as_json: JsonOpt = False,
    progress: ProgressOpt = None,
) -> None:
    """Import (upsert) customers from a CSV: account_number,email,phone,name,tier,late_payments."""
    settings = get_settings()
    keys = configured_keys(settings)
    try:
        parsed = read_csv(file, settings.default_country)
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"error: cannot read {file} as UTF-8 CSV: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    visible = wants_progress(progress, as_json)
    label = "checking" if dry_run else "importing"
    with progress_bar(label, len(parsed.rows), visible=visible) as advance:
        report = asyncio.run(_import(settings, keys, parsed, dry_run, advance))
    if as_json:
        print_json(report.as_json())
    else:
        for line in describe(report):
            typer.echo(line)
    if report.rejected:
        raise typer.Exit(code=1)
