"""Sources without webhooks: a database poller and a legacy file drop.

Both turn records into canonical events (priority `bulk`) on `bridge.events.v1`, exactly like
a provider webhook would, so the dispatcher needs nothing special for them:

- `ingest.sources.poller`: runs `POLLER_QUERY` every `POLLER_INTERVAL_SECONDS` and emits each
  new row once (tracking table `poller_tracking`).
- `ingest.sources.filedrop`: reads CSV and XML exports dropped in `FILEDROP_DIR`, emits each
  row once, and moves the file to `processed/` or `failed/` with a report (tracking table
  `filedrop_files`).

Run one per process (each holds one Kafka producer and stops cleanly on SIGTERM):

    python -m ingest.sources poller [--once]
    python -m ingest.sources filedrop [--once]

This module holds what both share: the canonical field mapping from a flat record, value
parsing, the batched publish and the SIGTERM handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any

import orjson
from pydantic import ValidationError

from bridge.correlation import kafka_headers, traced
from bridge.events import EVENT_TYPES, CanonicalEvent, Customer, EventData, describe, new_event
from bridge.kafka import Publisher
from bridge.logs import get_logger
from bridge.metrics import serve_metrics
from bridge.protect import Sealer
from bridge.tracing import new_trace

from ..providers.base import to_decimal

#: West Africa Time: the zone of naive timestamps in polled rows and exported files.
WAT = timezone(timedelta(hours=1), "WAT")

#: The flat record fields that become `EventData` fields (everything else goes to `details`).
#: `event_type` and `transaction_reference` name the event; the customer fields need at least
#: one of account_number, email and phone.
CUSTOMER_FIELDS = ("account_number", "email", "phone", "name")
EVENT_FIELDS = (
    "event_type",
    "transaction_reference",
    "amount",
    "currency",
    *CUSTOMER_FIELDS,
    "occurred_at",
    "description",
    "reason",
    "channel",
    "next_due_date",
)

_CURRENCY = re.compile(r"^[A-Z]{3}$")
_NAME_SEPARATORS = re.compile(r"[\s\-]+")
_REFERENCE_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class RowError(ValueError):
    """A record that cannot become an event; the message says which field and why."""


def normalise_name(name: str) -> str:
    """A column or element name as a field name: `Tenant Account` → `tenant_account`."""
    return _NAME_SEPARATORS.sub("_", name.strip()).lower()


def reference_part(text: str, limit: int = 64) -> str:
    """`text` made safe for a Siteti reference (letters, digits, `._-`), at most `limit` long."""
    return _REFERENCE_UNSAFE.sub("-", text).strip("-")[:limit] or "x"


def as_text(value: Any) -> str | None:
    """A database or file value as the text `details` carry, or None when empty."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex() or None
    if isinstance(value, dict | list):
        # default=str: a numeric[] (Decimals) or an odd element type is still text, not a crash.
        return orjson.dumps(value, default=str).decode()
    text = str(value).strip()
    return text or None


def parse_amount(value: Any, label: str = "amount") -> Decimal:
    """A non-negative amount from a number or text like `12,500.00` (thousands commas)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RowError(f"{label} is missing")
    if isinstance(value, float):
        value = repr(value)  # the shortest text that round-trips, not the binary expansion
    if isinstance(value, str):
        value = value.replace(",", "").replace(" ", "")
    try:
        return to_decimal(value, label)
    except ValueError as exc:
        raise RowError(str(exc)) from exc


def parse_currency(value: Any, label: str = "currency") -> str:
    text = as_text(value)
    if text is None:
        return "NGN"
    code = text.upper()
    if not _CURRENCY.match(code):
        raise RowError(f"{label} is not an ISO 4217 code: {text!r}")
    return code


def parse_time(value: Any, label: str = "occurred_at", default_tz: tzinfo = WAT) -> datetime | None:
    """An aware datetime from a timestamp, a date (midnight) or ISO 8601 text; naive values are
    read in `default_tz` (WAT). Empty gives None; unreadable text is a RowError."""
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime.combine(value, time())
    else:
        text = str(value).strip()
        if not text:
            return None
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise RowError(f"{label} is not an ISO 8601 date or time: {text!r}") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=default_tz)


def parse_event_type(value: Any, label: str = "event_type") -> str:
    text = as_text(value)
    if text is None:
        raise RowError(f"{label} is missing")
    if text not in EVENT_TYPES:
        raise RowError(f"{label} {text!r} is not a canonical event type")
    return text


def build_event(
    provider: str,
    values: Mapping[str, Any],
    details: Mapping[str, str],
    labels: Mapping[str, str] | None = None,
) -> CanonicalEvent:
    """The canonical event (priority bulk) for one record.

    `values` holds the `EVENT_FIELDS` the record has (missing or empty = absent), with
    `event_type` and `transaction_reference` required; `labels` names each field as the source
    calls it, for error messages. Raises RowError naming the first unusable field, or every
    value the canonical model refuses (a 0001-01-01 "null date", a NUL, an over-long text).
    """
    labels = labels or {}

    def label(field: str) -> str:
        return labels.get(field, field)

    event_type = parse_event_type(values.get("event_type"), label("event_type"))
    reference = as_text(values.get("transaction_reference"))
    if reference is None:
        raise RowError(f"{label('transaction_reference')} is missing")
    customer = {field: as_text(values.get(field)) for field in CUSTOMER_FIELDS}
    if not (customer["account_number"] or customer["email"] or customer["phone"]):
        raise RowError(
            "no customer: "
            + ", ".join(label(f) for f in ("account_number", "email", "phone"))
            + " are all empty"
        )
    try:
        data = EventData(
            provider=provider,
            transaction_reference=reference,
            amount=parse_amount(values.get("amount"), label("amount")),
            currency=parse_currency(values.get("currency"), label("currency")),
            customer=Customer(**customer),
            occurred_at=parse_time(values.get("occurred_at"), label("occurred_at")),
            description=as_text(values.get("description")),
            reason=as_text(values.get("reason")),
            channel=as_text(values.get("channel")),
            next_due_date=as_text(values.get("next_due_date")),
            details=dict(details),
        )
        return new_event(data, event_type, priority="bulk")
    except ValidationError as exc:
        raise RowError(f"unusable value ({describe(exc)})") from exc


async def send_all(
    producer: Publisher,
    events: Sequence[CanonicalEvent],
    within: float,
    topic: str,
    seal: Sealer,
) -> list[BaseException | None]:
    """Publish `events` in order and wait for the broker's acknowledgements (acks=all).

    Returns, per event, None when acknowledged or the error. Records are enqueued one after
    the other (so a customer's events keep their order on its partition) and acknowledged
    together, which is much faster than waiting for each in turn.
    """
    results: list[BaseException | None] = [None] * len(events)
    pending: dict[asyncio.Future[Any], int] = {}
    for index, event in enumerate(events):
        event = traced(event, new_trace())  # one trace per emitted event
        key, value = seal(event)
        try:
            future = await asyncio.wait_for(
                producer.send(topic, value=value, key=key, headers=kafka_headers(event)),
                within,
            )
        except Exception as exc:
            results[index] = exc
            continue
        pending[future] = index
    if pending:
        done, not_done = await asyncio.wait(list(pending), timeout=within)
        for future in done:
            results[pending[future]] = future.exception()
        for future in not_done:
            results[pending[future]] = TimeoutError(f"no acknowledgement within {within} s")
    return results


def worker_id() -> str:
    """Who holds a claim: host, process and a random part (two pollers in one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Stopper:
    """SIGTERM/SIGINT handling: the first signal asks the loop to stop after the current batch
    (`stopping` is set); a second one cancels the running task."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None
        self._installed: list[int] = []

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal)
                self._installed.append(sig)

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)
        self._installed.clear()

    def _on_signal(self) -> None:
        if self.stopping.is_set() and self._task is not None:
            self._task.cancel()
        self.stopping.set()

    async def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when woken because a stop was asked for."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), seconds)
        return self.stopping.is_set()


def chunked(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def utcnow() -> datetime:
    return datetime.now(UTC)


def metrics_endpoint(source: str, host: str, port: int) -> Callable[[], None]:
    """Serve the process's /metrics on `host`:`port` (0: none); returns its stop. A port
    already taken is logged, not fatal: the source's work matters more than its metrics."""
    try:
        return serve_metrics(host, port)
    except OSError as exc:
        get_logger("ingest.sources").error(
            "metrics_endpoint_unavailable", source=source, port=port, error=repr(exc)
        )
        return lambda: None
