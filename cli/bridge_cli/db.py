"""`bridge db`: the schema and the services' database logins, run with the owner's DATABASE_URL.

Services connect with roles that may not change the schema (docs/data-protection.md, "Least
privilege in PostgreSQL"): `bridge db migrate` applies it before they start.
"""

from __future__ import annotations

import asyncio
import os
from enum import StrEnum
from typing import Annotated

import typer

from bridge.config import get_settings
from bridge.db import SchemaOutOfDate, create_pool, ensure_login_role, migrate, schema_digest

app = typer.Typer(no_args_is_help=True, help="The PostgreSQL schema and the services' roles.")

PASSWORD_VARIABLE = "BRIDGE_ROLE_PASSWORD"  # noqa: S105 - the variable's name


class Service(StrEnum):
    ingest = "ingest"
    dispatcher = "dispatcher"
    receipts = "receipts"
    operator = "operator"


async def _migrate(dsn: str) -> bool:
    pool = await create_pool(dsn, max_size=1)
    try:
        return await migrate(pool)
    finally:
        await pool.close()


@app.command("migrate")
def migrate_command() -> None:
    """Apply the schema (tables, the services' group roles, their grants) when the database is
    not at it yet. Idempotent; needs the owner's DATABASE_URL (and CREATEROLE the first time)."""
    try:
        applied = asyncio.run(_migrate(get_settings().database_url))
    except SchemaOutOfDate:
        typer.echo(
            "error: this role may not change the schema: use the owner's DATABASE_URL", err=True
        )
        raise typer.Exit(code=2) from None
    digest = schema_digest()[:12]
    typer.echo(f"schema {digest} applied" if applied else f"schema already at {digest}")


async def _login_role(dsn: str, name: str, service: str, password: str) -> None:
    pool = await create_pool(dsn, max_size=1)
    try:
        async with pool.acquire() as conn:
            await ensure_login_role(conn, name, service, password)
    finally:
        await pool.close()


@app.command("login-role")
def login_role(
    name: Annotated[str, typer.Argument(help="The LOGIN role, e.g. bridge_ingest_login.")],
    service: Annotated[Service, typer.Argument(help="Whose group role it joins.")],
) -> None:
    """Create or update a LOGIN role for one service, its password from BRIDGE_ROLE_PASSWORD
    (never on the command line). Needs CREATEROLE; run `bridge db migrate` first."""
    password = os.environ.get(PASSWORD_VARIABLE, "")
    if not password:
        typer.echo(f"error: set {PASSWORD_VARIABLE} to the role's password", err=True)
        raise typer.Exit(code=2)
    asyncio.run(_login_role(get_settings().database_url, name, service.value, password))
    typer.echo(f"{name} can log in as {service.value}")
