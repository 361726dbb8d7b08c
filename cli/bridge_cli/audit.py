"""`bridge audit REFERENCE [--json]`: the story of one transaction.

Its audit trail from every service (as receipts' `GET /audit/{reference}` answers: the same
`bridge.audit.history` and `as_json`), its status in one word (receipts' own
`summarize`), and its dead letters. A reference is `<provider>:<transaction reference>`.
Numbers never appear in clear: the stores hold sealed ones, and any text is masked as logs
mask it. Exit status 1 when nothing is known of the reference.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from bridge import audit
from bridge.config import get_settings
from bridge.db import connect
from dispatcher import dlq
from receipts.status import summarize_history

from .output import JsonOpt, print_json, shown, to_json

# More dead letters than this for one reference would be a bug elsewhere; show that many.
MAX_DEAD_LETTERS = 100


def story(
    reference: str, history: Sequence[dict[str, Any]], dead_letters: Sequence[dlq.Entry]
) -> dict[str, Any]:
    """The `--json` document (the table shows the same): masked, JSON-ready."""
    told: dict[str, Any] = shown(
        {
            "reference": reference,
            "status": summarize_history(history),
            "events": audit.as_json(list(history)),
            "dead_letters": [entry.summary() for entry in dead_letters],
        }
    )
    return told


async def _read(reference: str) -> tuple[list[dict[str, Any]], list[dlq.Entry]]:
    pool = await connect(get_settings().database_url, max_size=2)
    try:
        history = await audit.history(pool, reference)
        filters = dlq.Filters(reference=reference, limit=MAX_DEAD_LETTERS)
        return history, await dlq.list_matching(pool, filters)
    finally:
        await pool.close()


def _tables(told: dict[str, Any]) -> list[Table]:
    events = Table(title=f"{told['reference']}: {told['status'] or 'no audit records'}")
    for column in ("occurred at (UTC)", "stage", "source", "detail"):
        events.add_column(column, overflow="fold")
    for event in told["events"]:
        detail = {k: v for k, v in event["detail"].items() if v is not None}
        when = event["occurred_at"][:19].replace("T", " ")
        events.add_row(when, event["stage"], event["source"], to_json(detail))
    tables = [events]
    if told["dead_letters"]:
        dead = Table(title="dead letters")
        for column in ("id", "status", "reason", "retries", "event type", "last error"):
            dead.add_column(column, overflow="fold")
        for entry in told["dead_letters"]:
            dead.add_row(
                str(entry["id"]),
                entry["status"],
                entry["reason"],
                str(entry["retry_count"]),
                entry["event_type"],
                entry["last_error"] or "",
            )
        tables.append(dead)
    return tables


def audit_command(
    reference: Annotated[
        str, typer.Argument(help="<provider>:<transaction reference>, e.g. paystack:T123")
    ],
    as_json: JsonOpt = False,
) -> None:
    """The story of one transaction: its audit trail, status and dead letters."""
    history, dead_letters = asyncio.run(_read(reference))
    if not history and not dead_letters:
        typer.echo(f"no audit record or dead letter for {reference!r}", err=True)
        raise typer.Exit(code=1)
    told = story(reference, history, dead_letters)
    if as_json:
        print_json(told)
        return
    console = Console()
    for table in _tables(told):
        console.print(table)
