"""`bridge`: the operators' command line, thin over the services' packages."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from bridge.cache import new_redis
from bridge.config import get_settings
from bridge.db import connect
from bridge.protect import data_keys
from dispatcher.directory import ImportReport, import_csv

from . import db, dlq, keys, privacy, retention, templates
from .erase import erase

app = typer.Typer(no_args_is_help=True, help="siteti-bridge operations.")
customers = typer.Typer(no_args_is_help=True, help="The customer directory.")
app.add_typer(customers, name="customers")
app.add_typer(templates.app, name="templates")
app.add_typer(dlq.app, name="dlq")
app.add_typer(keys.app, name="keys")
app.add_typer(privacy.app, name="privacy")
app.add_typer(db.app, name="db")
app.add_typer(retention.app, name="retention")
app.command("erase")(erase)


async def _import(path: Path) -> ImportReport:
    settings = get_settings()
    pool = await connect(settings.database_url, max_size=2)
    redis = new_redis(settings.redis_url)
    try:
        return await import_csv(pool, redis, data_keys(settings), path, settings.default_country)
    finally:
        await redis.aclose()
        await pool.close()


@customers.command("import")
def customers_import(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV file")
    ],
) -> None:
    """Import (upsert) customers from a CSV: account_number,email,phone,name,tier,late_payments."""
    report = asyncio.run(_import(file))
    typer.echo(
        f"imported {report.imported} customers ({report.without_phone} without a WhatsApp number),"
        f" rejected {len(report.rejected)}"
    )
    for line, why in report.rejected:
        typer.echo(f"  line {line}: {why}", err=True)
    if report.rejected:
        raise typer.Exit(code=1)
