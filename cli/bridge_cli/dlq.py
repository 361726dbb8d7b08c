"""`bridge dlq …`: the dead-letter store for operators.

    bridge dlq list [--status pending,manual_review] [--reason R] [--provider P]
                    [--reference R] [--older-than 2h] [--newer-than 30m] [--limit 100] [--json]
    bridge dlq stats [--newer-than 24h] [--json]
    bridge dlq show ID [--json]
    bridge dlq retry ID [ID…] [--json]
    bridge dlq retry --status pending --reason siteti_unavailable [--yes] [--json]
    bridge dlq resolve ID [ID…] --note "sent by hand" [--json]     (→ completed)
    bridge dlq close ID [ID…] --note "customer left" [--json]      (→ failed)

`list --json` prints one JSON object a line: id, reference, status, reason, retry_count,
provider, event_type, template_id, last_error, next_attempt_at, created_at, updated_at;
`stats --json` and `show --json` one object, as `GET /dlq/stats` and `GET /dlq/{id}` answer
(the event's number masked); `retry`, `resolve` and `close --json` one object a line per entry:
id, reference, ok, outcome, message.
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
from dataclasses import asdict, dataclass, replace
from datetime import UTC, timedelta
from typing import Annotated, Any, Literal

import orjson
import structlog
import typer
from rich.console import Console
from rich.table import Table

from bridge.access import shown_event
from bridge.config import get_settings
from bridge.db import connect
from bridge.logs import redact
from bridge.protect import DataKeys, KeyConfigError, data_keys
from dispatcher import dlq
from dispatcher.recovery import RetryResult, retry_ids
from dispatcher.runtime import build_runtime

from .output import (
    Advance,
    JsonOpt,
    print_json,
    print_json_lines,
    progress_bar,
    shown,
    to_json,
    wants_progress,
)

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
ReferenceOpt = Annotated[
    str | None, typer.Option("--reference", help="one transaction: <provider>:<reference>")
]
OlderOpt = Annotated[
    str | None, typer.Option("--older-than", help="created before: 90s, 30m, 2h, 1d")
]
NewerOpt = Annotated[str | None, typer.Option("--newer-than", help="created within: 30m, 2h")]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, help="at most this many entries")]
NoteOpt = Annotated[str, typer.Option("--note", help="why (kept in the audit trail)")]


def _keys_or_none() -> DataKeys | None:
    """The data keys when configured (a sealed number then shows its last four digits)."""
    try:
        return data_keys(get_settings())
    except KeyConfigError:
        return None


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
    reference: str | None = None,
) -> dlq.Filters:
    try:
        return dlq.Filters.parse(
            status=status,
            reason=reason,
            provider=provider,
            older_than=older_than,
            newer_than=newer_than,
            limit=limit,
            reference=reference,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


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
            _short(shown(e.last_error), 48),
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
    reference: ReferenceOpt = None,
    older_than: OlderOpt = None,
    newer_than: NewerOpt = None,
    limit: LimitOpt = 100,
    as_json: JsonOpt = False,
) -> None:
    """List entries, oldest first."""
    filters = _filters(status, reason, provider, older_than, newer_than, limit, reference)
    entries = asyncio.run(_list(filters))
    if as_json:
        print_json_lines(shown(entry.summary()) for entry in entries)
        return
    if not entries:
        typer.echo("no entries match")
        return
    Console().print(_table(entries))
    typer.echo(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")


async def _stats(window: timedelta | None) -> dict[str, Any]:
    pool = await connect(get_settings().database_url, max_size=2)
    try:
        return dlq.dead_letter_counts(await dlq.count_by_status_and_reason(pool, window), window)
    finally:
        await pool.close()


@app.command("stats")
def stats(newer_than: NewerOpt = None, as_json: JsonOpt = False) -> None:
    """Counts by status and by reason (no references), as GET /dlq/stats."""
    window = _filters(None, None, None, None, newer_than, 1).newer_than
    counts = asyncio.run(_stats(window))
    if as_json:
        print_json(counts)
        return
    total = counts["total"]
    within = f", created in the last {newer_than}" if window else ""
    table = Table(title=f"{total} dead letter{'' if total == 1 else 's'}{within}")
    for column in ("status", "reason", "count"):
        table.add_column(column)
    for row in counts["by_status_and_reason"]:
        table.add_row(row["status"], row["reason"], str(row["count"]))
    Console().print(table)


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
    history = shown(dlq.json_safe(story))
    # As GET /dlq/{id} shows it: the event's number by its last four digits.
    payload = shown_event(entry.payload, _keys_or_none())
    if as_json:
        print_json({**shown(entry.detail()), "payload": payload, "history": history})
        return
    for name, value in shown(entry.summary()).items():
        typer.echo(f"{name:>16}: {'' if value is None else value}")
    typer.echo(f"{'dedupe_key':>16}: {entry.dedupe_key}")
    typer.echo("\nevent:")
    typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
    typer.echo(f"\nhistory of {entry.reference}:")
    for step in history:
        typer.echo(
            f"  {step['occurred_at']}  {step['stage']:<13} {step['source']:<11}"
            f" {to_json(step['detail'])}"
        )
    if not history:
        typer.echo("  (no audit records)")


# --- retry ----------------------------------------------------------------------------------


async def _matching_retryable(filters: dlq.Filters) -> list[dlq.Entry]:
    if not filters.statuses:
        filters = replace(filters, statuses=dlq.RETRYABLE)
    return await _list(filters)


async def _retry(ids: list[int], advance: Advance) -> list[RetryResult]:
    settings = get_settings()
    runtime = await build_runtime(
        settings,
        instance_id=f"cli-{os.getpid()}-{os.urandom(3).hex()}",
        pool_size=6,
        http_connections=8,
    )
    try:
        return await retry_ids(
            runtime.dispatcher, ids, by=actor(), on_result=lambda _result: advance(1)
        )
    finally:
        await runtime.aclose()


@app.command("retry")
def retry(
    entry_ids: Annotated[
        list[int] | None, typer.Argument(metavar="ID", help="entries to retry")
    ] = None,
    status: StatusOpt = None,
    reason: ReasonOpt = None,
    provider: ProviderOpt = None,
    reference: ReferenceOpt = None,
    older_than: OlderOpt = None,
    newer_than: NewerOpt = None,
    limit: LimitOpt = 100,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask to confirm")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Retry entries now: by id, or every entry matching the filters (asks first)."""
    filters = _filters(status, reason, provider, older_than, newer_than, limit, reference)
    if entry_ids and filters.narrowing:
        raise typer.BadParameter("give ids or filters, not both")
    if not entry_ids and not filters.narrowing:
        raise typer.BadParameter(
            "give ids, or filters for a bulk retry (e.g. --status pending --reason R)"
        )
    if as_json and not entry_ids and not yes:
        raise typer.BadParameter("a bulk retry with --json needs --yes (stdout is for JSON)")
    ids = list(entry_ids or [])
    references: dict[int, str] = {}
    if not ids:
        entries = asyncio.run(_matching_retryable(filters))
        if not entries:
            typer.echo("no retryable entries match", err=as_json)
            return
        ids = [e.id for e in entries]
        references = {e.id: e.reference for e in entries}
        if not yes:
            Console().print(_table(entries[:20]))
            if len(entries) > 20:
                typer.echo(f"… and {len(entries) - 20} more")
            typer.confirm(f"Retry {len(entries)} entries?", abort=True)
    visible = len(ids) > 1 and wants_progress(None, as_json)
    with logs_to_stderr(), progress_bar("retrying", len(ids), visible=visible) as advance:
        results = asyncio.run(_retry(ids, advance))
    _outcomes(
        [
            Outcome(
                r.id,
                r.entry.reference if r.entry else references.get(r.id),
                r.ok,
                r.outcome.label,
                r.describe(),
            )
            for r in results
        ],
        as_json,
    )


@dataclass(frozen=True)
class Outcome:
    """What an action did to one entry: a line of text, or of JSON Lines."""

    id: int
    reference: str | None
    ok: bool
    outcome: str
    message: str


def _outcomes(outcomes: Sequence[Outcome], as_json: bool) -> None:
    """Print the actions' outcomes; exit status 1 when any failed."""
    failed = sum(1 for o in outcomes if not o.ok)
    if as_json:
        print_json_lines(shown(asdict(o)) for o in outcomes)
    else:
        for o in outcomes:
            label = f"{o.id} ({o.reference})" if o.reference else str(o.id)
            typer.echo(f"{'ok  ' if o.ok else 'FAIL'} {label}: {shown(o.message)}")
        if len(outcomes) > 1:
            typer.echo(f"{len(outcomes) - failed} ok, {failed} failed")
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


def _settle_command(
    ids: list[int], note: str, status: Literal["completed", "failed"], as_json: bool
) -> None:
    if not note.strip():
        raise typer.BadParameter("--note must say why")
    verb = "resolved" if status == "completed" else "closed"
    allowed = dlq.RESOLVABLE if status == "completed" else dlq.CLOSABLE
    outcomes = []
    for entry_id, done, current in asyncio.run(_settle(ids, status, note.strip())):
        if done is not None:
            outcome = Outcome(entry_id, done.reference, True, verb, f"{verb}; now {done.status}")
        elif current is None:
            outcome = Outcome(entry_id, None, False, "unknown", "no such entry")
        else:
            outcome = Outcome(
                entry_id,
                current.reference,
                False,
                "not_allowed",
                f"it is {current.status}; only {', '.join(allowed)} entries can be {verb}",
            )
        outcomes.append(outcome)
    _outcomes(outcomes, as_json)


@app.command("resolve")
def resolve(
    entry_ids: Annotated[list[int], typer.Argument(metavar="ID...", help="entries")],
    note: NoteOpt,
    as_json: JsonOpt = False,
) -> None:
    """Mark entries completed: an operator handled them (e.g. told the customer another way)."""
    _settle_command(entry_ids, note, "completed", as_json)


@app.command("close")
def close(
    entry_ids: Annotated[list[int], typer.Argument(metavar="ID...", help="entries")],
    note: NoteOpt,
    as_json: JsonOpt = False,
) -> None:
    """Mark entries failed: given up, no message will be sent."""
    _settle_command(entry_ids, note, "failed", as_json)
