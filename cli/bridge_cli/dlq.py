"""`bridge dlq …`: the dead-letter store for operators.

    bridge dlq list [--status pending,manual_review] [--reason R] [--provider P]
                    [--older-than 2h] [--newer-than 30m] [--limit 100] [--json]
    bridge dlq show ID [--json]
    bridge dlq retry ID [ID…]
    bridge dlq retry --status pending --reason siteti_unavailable [--yes]
    bridge dlq resolve ID [ID…] --note "sent by hand"      (→ completed)
    bridge dlq close ID [ID…] --note "customer left"       (→ failed)

`list --json` prints one JSON object a line: id, reference, status, reason, retry_count,
provider, event_type, template_id, last_error, next_attempt_at, created_at, updated_at.
Retries run here, in-process, through the same pipeline as the dispatcher (same Siteti
account, dedupe store and Idempotency-Keys: a retry never sends a message twice).
Exit status 1 when any id was unknown or its action failed.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC
from typing import Annotated, Any, Literal

import orjson
import structlog
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bridge.config import get_settings
from bridge.db import connect
from bridge.logs import redact
from dispatcher import dlq
from dispatcher.recovery import RetryResult, retry_ids
from dispatcher.runtime import build_runtime

app = typer.Typer(
    no_args_is_help=True, help="The dead-letter store: events that could not be delivered."
)


class _Stderr:
    """Whatever sys.stderr is at the time of writing."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@contextmanager
def logs_to_stderr() -> Iterator[None]:
    """While the pipeline runs here, its logs (warnings and worse, as JSON) go to stderr:
    stdout is for results. The previous logging set-up is restored afterwards."""
    was_configured = structlog.is_configured()
    previous = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=lambda *_: structlog.PrintLogger(_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    try:
        yield
    finally:
        if was_configured:
            structlog.configure(**previous)
        else:
            structlog.reset_defaults()


StatusOpt = Annotated[
    str | None,
    typer.Option(
        "--status", help="pending, processing, completed, failed, manual_review (comma list)"
    ),
]
ReasonOpt = Annotated[
    str | None, typer.Option("--reason", help="e.g. siteti_unavailable, missing_contact")
]
ProviderOpt = Annotated[str | None, typer.Option("--provider", help="e.g. moniepoint")]
OlderOpt = Annotated[
    str | None, typer.Option("--older-than", help="created before: 90s, 30m, 2h, 1d")
]
NewerOpt = Annotated[str | None, typer.Option("--newer-than", help="created within: 30m, 2h")]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, help="at most this many entries")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON (one object a line for list)")]
NoteOpt = Annotated[str, typer.Option("--note", help="why (kept in the audit trail)")]


def actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = os.environ.get("USER", "unknown")
    return f"cli:{user}"


def _filters(
    status: str | None,
    reason: str | None,
    provider: str | None,
    older_than: str | None,
    newer_than: str | None,
    limit: int,
) -> dlq.Filters:
    try:
        return dlq.Filters.parse(
            status=status,
            reason=reason,
            provider=provider,
            older_than=older_than,
            newer_than=newer_than,
            limit=limit,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _line(value: Any) -> str:
    return orjson.dumps(value).decode()


def _short(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(entries: Sequence[dlq.Entry]) -> Table:
    table = Table(show_lines=False)
    for column in ("id", "reference", "status", "reason", "retries", "created", "last error"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(
            str(e.id),
            e.reference,
            e.status,
            e.reason,
            str(e.retry_count),
            e.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
            _short(e.last_error, 48),
        )
    return table


# --- list / show ----------------------------------------------------------------------------


async def _list(filters: dlq.Filters) -> list[dlq.Entry]:
    pool = await connect(get_settings().database_url, max_size=2)
    try:
        return await dlq.list_matching(pool, filters)
    finally:
        await pool.close()


@app.command("list")
def list_entries(
    status: StatusOpt = None,
    reason: ReasonOpt = None,
    provider: ProviderOpt = None,
    older_than: OlderOpt = None,
    newer_than: NewerOpt = None,
    limit: LimitOpt = 100,
    as_json: JsonOpt = False,
) -> None:
    """List entries, oldest first."""
    filters = _filters(status, reason, provider, older_than, newer_than, limit)
    entries = asyncio.run(_list(filters))
    if as_json:
        for entry in entries:
            typer.echo(_line(entry.summary()))
        return
    if not entries:
        typer.echo("no entries match")
        return
    Console().print(_table(entries))
    typer.echo(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")


async def _show(entry_id: int) -> tuple[dlq.Entry | None, list[dict[str, Any]]]:
    pool = await connect(get_settings().database_url, max_size=2)
    try:
        entry = await dlq.get_entry(pool, entry_id)
        story = await dlq.entry_history(pool, entry) if entry else []
        return entry, story
    finally:
        await pool.close()


@app.command("show")
def show(
    entry_id: Annotated[int, typer.Argument(metavar="ID", help="the entry's id")],
    as_json: JsonOpt = False,
) -> None:
    """One entry: its fields, the event it holds, and the reference's audit history."""
    entry, story = asyncio.run(_show(entry_id))
    if entry is None:
        typer.echo(f"no dead-letter entry {entry_id}", err=True)
        raise typer.Exit(code=1)
    history = dlq.json_safe(story)
    if as_json:
        typer.echo(_line({**entry.detail(), "history": history}))
        return
    for name, value in entry.summary().items():
        typer.echo(f"{name:>16}: {'' if value is None else value}")
    typer.echo(f"{'dedupe_key':>16}: {entry.dedupe_key}")
    typer.echo("\nevent:")
    typer.echo(orjson.dumps(entry.payload, option=orjson.OPT_INDENT_2).decode())
    typer.echo(f"\nhistory of {entry.reference}:")
    for step in history:
        typer.echo(
            f"  {step['occurred_at']}  {step['stage']:<13} {step['source']:<11}"
            f" {_line(step['detail'])}"
        )
    if not history:
        typer.echo("  (no audit records)")


# --- retry ----------------------------------------------------------------------------------


async def _matching_retryable(filters: dlq.Filters) -> list[dlq.Entry]:
    if not filters.statuses:
        filters = replace(filters, statuses=dlq.RETRYABLE)
    return await _list(filters)


async def _retry(ids: list[int], progress: Progress | None) -> list[RetryResult]:
    settings = get_settings()
    runtime = await build_runtime(
        settings,
        instance_id=f"cli-{os.getpid()}-{os.urandom(3).hex()}",
        pool_size=6,
        http_connections=8,
    )
    task = progress.add_task("retrying", total=len(ids)) if progress else None

    def advance(_: RetryResult) -> None:
        if progress is not None and task is not None:
            progress.advance(task)

    try:
        return await retry_ids(runtime.dispatcher, ids, by=actor(), on_result=advance)
    finally:
        await runtime.aclose()


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


@app.command("retry")
def retry(
    entry_ids: Annotated[
        list[int] | None, typer.Argument(metavar="ID", help="entries to retry")
    ] = None,
    status: StatusOpt = None,
    reason: ReasonOpt = None,
    provider: ProviderOpt = None,
    older_than: OlderOpt = None,
    newer_than: NewerOpt = None,
    limit: LimitOpt = 100,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask to confirm")] = False,
) -> None:
    """Retry entries now: by id, or every entry matching the filters (asks first)."""
    filters = _filters(status, reason, provider, older_than, newer_than, limit)
    if entry_ids and filters.narrowing:
        raise typer.BadParameter("give ids or filters, not both")
    if not entry_ids and not filters.narrowing:
        raise typer.BadParameter(
            "give ids, or filters for a bulk retry (e.g. --status pending --reason R)"
        )
    ids = list(entry_ids or [])
    references: dict[int, str] = {}
    if not ids:
        entries = asyncio.run(_matching_retryable(filters))
        if not entries:
            typer.echo("no retryable entries match")
            return
        ids = [e.id for e in entries]
        references = {e.id: e.reference for e in entries}
        if not yes:
            Console().print(_table(entries[:20]))
            if len(entries) > 20:
                typer.echo(f"… and {len(entries) - 20} more")
            typer.confirm(f"Retry {len(entries)} entries?", abort=True)
    with logs_to_stderr():
        if len(ids) > 1:
            with _progress() as progress:
                results = asyncio.run(_retry(ids, progress))
        else:
            results = asyncio.run(_retry(ids, None))
    for result in results:
        reference = result.entry.reference if result.entry else references.get(result.id, "")
        label = f"{result.id} ({reference})" if reference else str(result.id)
        typer.echo(f"{'ok  ' if result.ok else 'FAIL'} {label}: {result.describe()}")
    failed = sum(1 for r in results if not r.ok)
    if len(results) > 1:
        typer.echo(f"{len(results) - failed} ok, {failed} failed")
    if failed:
        raise typer.Exit(code=1)


# --- resolve / close ------------------------------------------------------------------------


async def _settle(
    ids: Sequence[int], status: Literal["completed", "failed"], note: str
) -> list[tuple[int, dlq.Entry | None, dlq.Entry | None]]:
    """(id, the entry after the change or None, the entry as it is when unchanged)."""
    pool = await connect(get_settings().database_url, max_size=2)
    out: list[tuple[int, dlq.Entry | None, dlq.Entry | None]] = []
    try:
        for entry_id in ids:
            done = await dlq.operator_settle(pool, entry_id, status, note=note, by=actor())
            current = None if done else await dlq.get_entry(pool, entry_id)
            out.append((entry_id, done, current))
    finally:
        await pool.close()
    return out


def _settle_command(ids: list[int], note: str, status: Literal["completed", "failed"]) -> None:
    if not note.strip():
        raise typer.BadParameter("--note must say why")
    verb = "resolved" if status == "completed" else "closed"
    allowed = dlq.RESOLVABLE if status == "completed" else dlq.CLOSABLE
    failed = 0
    for entry_id, done, current in asyncio.run(_settle(ids, status, note.strip())):
        if done is not None:
            typer.echo(f"ok   {entry_id} ({done.reference}): {verb}; now {done.status}")
        elif current is None:
            failed += 1
            typer.echo(f"FAIL {entry_id}: no such entry")
        else:
            failed += 1
            typer.echo(
                f"FAIL {entry_id} ({current.reference}): it is {current.status};"
                f" only {', '.join(allowed)} entries can be {verb}"
            )
    if failed:
        raise typer.Exit(code=1)


@app.command("resolve")
def resolve(
    entry_ids: Annotated[list[int], typer.Argument(metavar="ID...", help="entries")],
    note: NoteOpt,
) -> None:
    """Mark entries completed: an operator handled them (e.g. told the customer another way)."""
    _settle_command(entry_ids, note, "completed")


@app.command("close")
def close(
    entry_ids: Annotated[list[int], typer.Argument(metavar="ID...", help="entries")],
    note: NoteOpt,
) -> None:
    """Mark entries failed: given up, no message will be sent."""
    _settle_command(entry_ids, note, "failed")
