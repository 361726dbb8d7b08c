"""`bridge erase`: erase one customer (dispatcher/erasure.py says what goes).

    bridge erase --account 0123456789 [--requested-by NAME] [--dry-run] [--json]
    bridge erase --phone 08031234567 …

The Siteti contacts are deleted from here, with the dispatcher's retry policy; a deletion
that still fails leaves the erasure `pending`, and the dispatcher's retrier finishes it.
Prints what was removed (counts, never the number); exit status 1 while Siteti deletions
are pending, 2 for a bad subject or missing keys.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import orjson
import typer

from bridge.config import Settings, get_settings
from dispatcher import erasure
from dispatcher.runtime import build_runtime

from .dlq import actor, logs_to_stderr
from .keys import configured_keys


async def _erase(
    settings: Settings, subject: erasure.Subject, requested_by: str, dry_run: bool
) -> erasure.Result:
    runtime = await build_runtime(settings, pool_size=2, http_connections=2)
    try:
        ctx = erasure.Context.from_settings(settings, runtime.pool, runtime.redis)
        return await erasure.erase(
            ctx,
            runtime.dispatcher.siteti,
            subject,
            requested_by=requested_by,
            dry_run=dry_run,
            policy=runtime.dispatcher.policy,
        )
    finally:
        await runtime.aclose()


def erase(
    account: Annotated[
        str | None, typer.Option("--account", help="the customer's account number")
    ] = None,
    phone: Annotated[
        str | None, typer.Option("--phone", help="the customer's number (any common form)")
    ] = None,
    requested_by: Annotated[
        str | None, typer.Option("--requested-by", help="who asked (default: your OS user)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show what would go; change nothing")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="the report as JSON")] = False,
) -> None:
    """Erase a customer: directory record, Siteti contact, dead letters, audit details,
    dedupe and cache entries, file-drop rows; logged by keyed hash."""
    if (account is None) == (phone is None):
        raise typer.BadParameter("give --account or --phone (one of them)")
    settings = get_settings()
    keys = configured_keys(settings)
    try:
        if account is not None:
            subject = erasure.subject_of("account", account, keys, settings.default_country)
        else:
            subject = erasure.subject_of("phone", phone or "", keys, settings.default_country)
    except erasure.SubjectError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with logs_to_stderr():
        result = asyncio.run(_erase(settings, subject, requested_by or actor(), dry_run))
    if as_json:
        typer.echo(orjson.dumps(result.as_json()).decode())
    else:
        for line in result.describe():
            typer.echo(line)
    if result.status == "pending":
        raise typer.Exit(code=1)
