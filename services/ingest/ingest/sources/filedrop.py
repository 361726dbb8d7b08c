"""The legacy file drop: CSV and XML exports dropped in a folder become canonical events.

The watcher scans `FILEDROP_DIR` (default `.stack/filedrop/inbox`) every
`FILEDROP_POLL_SECONDS` (2), or, when `FILEDROP_SCHEDULE` is set (`08:00`, or several:
`08:00,14:00`), only at those times in `FILEDROP_TIMEZONE` (Africa/Lagos), scanning then until
every file present has been handled. It reads only what the legacy system has finished
writing and never writes to the legacy system; it only moves files out of the inbox.

Which files: regular files directly in the inbox, not named `.*`, `*.tmp` or `*.part`
(write under such a name, then rename: the rename is atomic). A file is read once its size
and mtime were the same on two consecutive scans and for at least `FILEDROP_SETTLE_SECONDS`
(2). `*.csv` and `*.xml` are read; any other file goes to `failed/` with a report.

Formats: CSV with a header row (delimiter `,`, `;`, tab or `|`, found from the header;
encoding `FILEDROP_ENCODING`, default UTF-8 with or without BOM), and XML
`<records><record><field>value</field>…</record>…</records>` (any element names; a record's
attributes are fields too; DOCTYPEs are refused). Column and element names are normalised:
`Tenant Account` → `tenant_account`.

Column mapping (defaults below; `FILEDROP_COLUMNS="amount=balance|amount_due,…"` overrides a
field's columns, the first present wins):

| field            | columns (first present)                | becomes                          |
|------------------|----------------------------------------|----------------------------------|
| `record_id`      | `record_id`, `id`                      | the row's id in the reference    |
| `event_type`     | `event_type`                           | the type, when given             |
| `status`         | `status`                               | the type via FILEDROP_STATUS_TYPES |
| `account_number` | `tenant_account`, `account_number`     | customer.account_number          |
| `phone`          | `phone`, `phone_number`                | customer.phone                   |
| `email`          | `email`                                | customer.email                   |
| `name`           | `name`, `tenant_name`                  | customer.name                    |
| `amount`         | `amount_due`, `amount`                 | amount (`12,500.00` accepted)    |
| `currency`       | `currency`                             | currency (default NGN)           |
| `next_due_date`  | `due_date`, `next_due_date`            | next_due_date (also in details)  |
| `occurred_at`    | `occurred_at`                          | occurred_at (naive = WAT)        |
| `description`    | `description`                          | description                      |

Every other non-empty column, with `record_id`, `status` and `due_date`, goes to
`details` (e.g. `property`), plus `source_file` and `source_row`. The event type is the row's
`event_type` when present, else its status through `FILEDROP_STATUS_TYPES` (default
`overdue=rent.overdue,due_soon=rent.reminder,paid=,current=`: `paid` and `current` send
nothing and are counted as skipped; any other status makes the row bad). Statuses compare
case-insensitively, spaces as `_` (`Due Soon` = `due_soon`).

References are deterministic: `filedrop:<file stem>:<sha256 of the file, 10 hex>:<row id>`,
the row id being its `record_id` or `L<line>` (CSV) / `R<n>` (XML). Re-reading the same file
(a crash mid-file) gives the same event ids and dedupe keys, so the dispatcher sends nothing
twice; a new export under the same name has a new hash, so its rows are new messages.

Never read twice: table `filedrop_files` (key name + sha256) is claimed before reading
(status `processing`, re-claimable after `FILEDROP_LEASE_SECONDS`), then marked `processed` or
`failed`, and the file is moved. The same file dropped again is not read: it is moved to
where the first copy went (`<stem>.<hash><ext>` if the name is taken) with a report saying it
is a duplicate, and nothing is sent.

Outcome of a file, always with `<moved name>.report.json` beside it (rows, events, skipped
and bad rows with line and reason, the references emitted):
- `processed/`: the file was read and at least one row was usable, or none was bad; bad rows
  are named in the report and the good rows are emitted (one bad row loses nothing else). A
  row is bad when a value is unreadable or one the canonical model refuses (a legacy
  `0001-01-01` "null date", a control character, an over-long text, an absurd amount);
- `failed/`: the file could not be read (malformed, not the configured encoding, missing
  columns, unsupported type, larger than `FILEDROP_MAX_BYTES`), or every row was bad; nothing
  was emitted.
If Kafka does not acknowledge the events, the file stays in the inbox and is tried again.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import os
import time
import uuid
import xml.parsers.expat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from datetime import time as dtime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from bridge.config import Settings
from bridge.db import connect
from bridge.events import EVENT_TYPES, CanonicalEvent
from bridge.kafka import new_producer
from bridge.logs import get_logger

from . import (
    CUSTOMER_FIELDS,
    WAT,
    RowError,
    Stopper,
    build_event,
    chunked,
    normalise_name,
    reference_part,
    send_all,
    utcnow,
    worker_id,
)

log = get_logger("ingest.sources.filedrop")

PROVIDER = "filedrop"
FORMATS = {".csv": "csv", ".xml": "xml"}
IGNORED_SUFFIXES = (".tmp", ".part")
PROCESSED = "processed"
FAILED = "failed"

DEFAULT_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "record_id": ("record_id", "id"),
    "event_type": ("event_type",),
    "status": ("status",),
    "account_number": ("tenant_account", "account_number"),
    "phone": ("phone", "phone_number"),
    "email": ("email",),
    "name": ("name", "tenant_name"),
    "amount": ("amount_due", "amount"),
    "currency": ("currency",),
    "next_due_date": ("due_date", "next_due_date"),
    "occurred_at": ("occurred_at",),
    "description": ("description",),
}
# Fields whose columns are not repeated in `details` (the customer's contact stays out of it).
_CONSUMED = frozenset({*CUSTOMER_FIELDS, "amount", "currency", "event_type", "occurred_at"})
_SEND_CHUNK = 500


class FileFormatError(ValueError):
    """The whole file is unusable (the file goes to failed/)."""


@dataclass(frozen=True)
class Record:
    """One CSV row or XML record: its position and its fields (normalised names → text)."""

    position: str  # "L5" (CSV line) or "R3" (XML record)
    line: int
    fields: Mapping[str, str]


@dataclass(frozen=True)
class BadRow:
    row: str
    line: int
    reason: str


@dataclass(frozen=True)
class Skipped:
    reason: str


@dataclass(frozen=True)
class FiledropConfig:
    columns: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_COLUMNS))
    status_types: Mapping[str, str | None] = field(
        default_factory=lambda: parse_status_types(
            "overdue=rent.overdue,due_soon=rent.reminder,paid=,current="
        )
    )
    encoding: str = "utf-8-sig"

    @classmethod
    def from_settings(cls, settings: Settings) -> FiledropConfig:
        return cls(
            columns=parse_columns(settings.filedrop_columns),
            status_types=parse_status_types(settings.filedrop_status_types),
            encoding=settings.filedrop_encoding,
        )


def parse_columns(spec: str) -> dict[str, tuple[str, ...]]:
    """`"amount=balance|amount_due,phone=msisdn"` over the defaults."""
    columns = dict(DEFAULT_COLUMNS)
    for item in spec.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        key = normalise_name(name)
        if not sep or key not in DEFAULT_COLUMNS:
            raise ValueError(
                f"FILEDROP_COLUMNS: {item.strip()!r} is not field=column; fields: "
                + ", ".join(DEFAULT_COLUMNS)
            )
        columns[key] = tuple(normalise_name(c) for c in value.split("|") if c.strip())
    return columns


def normalise_status(value: str) -> str:
    return normalise_name(value)


def parse_status_types(spec: str) -> dict[str, str | None]:
    """`"overdue=rent.overdue,paid="` → {"overdue": "rent.overdue", "paid": None}."""
    mapping: dict[str, str | None] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        status, sep, event_type = item.partition("=")
        event_type = event_type.strip()
        if not sep or not status.strip():
            raise ValueError(f"FILEDROP_STATUS_TYPES: {item.strip()!r} is not status=type")
        if event_type and event_type not in EVENT_TYPES:
            raise ValueError(f"FILEDROP_STATUS_TYPES: {event_type!r} is not a canonical type")
        mapping[normalise_status(status)] = event_type or None
    return mapping


# --- reading ---------------------------------------------------------------------------------


def _delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _header(names: Iterable[str]) -> list[str]:
    header: list[str] = []
    for index, raw in enumerate(names, start=1):
        name = normalise_name(raw) or f"column_{index}"
        if name in header:
            raise FileFormatError(f"column {name!r} appears twice in the header")
        header.append(name)
    return header


def read_csv(data: bytes, encoding: str = "utf-8-sig") -> tuple[list[Record], list[BadRow]]:
    """The rows of a CSV export, and the rows that are structurally bad (wrong field count)."""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise FileFormatError(
            f"not {encoding} text (byte {exc.start}); set FILEDROP_ENCODING"
        ) from exc
    except LookupError as exc:
        raise FileFormatError(f"unknown FILEDROP_ENCODING {encoding!r}") from exc
    first_line = text.lstrip("\r\n").split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first_line))
    records: list[Record] = []
    bad: list[BadRow] = []
    header: list[str] | None = None
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = _header(row)
                continue
            line = reader.line_num
            position = f"L{line}"
            if len(row) > len(header) and not any(c.strip() for c in row[len(header) :]):
                row = row[: len(header)]  # trailing empty fields (a trailing delimiter)
            if len(row) != len(header):
                bad.append(
                    BadRow(position, line, f"{len(row)} fields, the header has {len(header)}")
                )
                continue
            fields = {name: cell.strip() for name, cell in zip(header, row, strict=True)}
            records.append(Record(position, line, fields))
    except csv.Error as exc:
        raise FileFormatError(f"malformed CSV at line {reader.line_num}: {exc}") from exc
    if header is None:
        raise FileFormatError("the file is empty (no header row)")
    return records, bad


def _local_name(name: str) -> str:
    return normalise_name(name.rsplit(":", 1)[-1])


def read_xml(data: bytes) -> tuple[list[Record], list[BadRow]]:
    """The records of `<records><record><field>value</field>…</record></records>`: every child
    of the root is a record, its children and attributes its fields. DTDs (and so entity
    declarations) are refused, which keeps entity expansion attacks out."""
    parser = xml.parsers.expat.ParserCreate()
    records: list[Record] = []
    bad: list[BadRow] = []
    depth = 0
    index = 0
    line = 0
    current: dict[str, str] = {}
    problem: str | None = None
    field_name = ""
    text: list[str] = []

    def start(name: str, attributes: dict[str, str]) -> None:
        nonlocal depth, index, line, current, problem, field_name, text
        depth += 1
        if depth == 2:
            index += 1
            line = parser.CurrentLineNumber
            current = {
                _local_name(k): v.strip()
                for k, v in attributes.items()
                if k != "xmlns" and not k.startswith("xmlns:")
            }
            problem = None
        elif depth == 3:
            field_name = _local_name(name)
            text = []
            if field_name in current:
                problem = f"field {field_name!r} appears twice"
        elif depth > 3 and problem is None:
            problem = f"field {field_name!r} has child elements"

    def end(name: str) -> None:
        nonlocal depth
        if depth == 3:
            current[field_name] = "".join(text).strip()
        elif depth == 2:
            position = f"R{index}"
            if problem is None:
                records.append(Record(position, line, dict(current)))
            else:
                bad.append(BadRow(position, line, problem))
        depth -= 1

    def characters(data: str) -> None:
        if depth == 3:
            text.append(data)

    def refuse_doctype(*_: Any) -> None:
        raise FileFormatError("DOCTYPE declarations are not accepted")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_doctype
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as exc:
        raise FileFormatError(f"malformed XML: {exc}") from exc
    return records, bad


def read_records(data: bytes, fmt: str, encoding: str) -> tuple[list[Record], list[BadRow]]:
    if fmt == "csv":
        return read_csv(data, encoding)
    if fmt == "xml":
        return read_xml(data)
    raise FileFormatError(f"unsupported file type (read: {', '.join(FORMATS)})")


# --- mapping ---------------------------------------------------------------------------------


def _column(record: Record, config: FiledropConfig, field: str) -> str | None:
    """The first of `field`'s columns that the record has."""
    for column in config.columns.get(field, ()):
        if column in record.fields:
            return column
    return None


def check_columns(fields: Iterable[str], config: FiledropConfig) -> None:
    """Raise FileFormatError when the file lacks a column every row needs."""
    present = set(fields)

    def has(field: str) -> bool:
        return any(c in present for c in config.columns.get(field, ()))

    missing: list[str] = []
    if not has("amount"):
        missing.append("amount (" + "|".join(config.columns["amount"]) + ")")
    if not has("event_type") and not has("status"):
        missing.append("status or event_type")
    if not any(has(f) for f in ("account_number", "email", "phone")):
        missing.append("one of account_number, email, phone")
    if missing:
        raise FileFormatError("missing columns: " + "; ".join(missing))


def row_id(record: Record, config: FiledropConfig) -> str:
    """The row's id in its reference: its record_id column, else its position."""
    column = _column(record, config, "record_id")
    value = record.fields.get(column, "") if column else ""
    return reference_part(value) if value else record.position


def map_record(
    record: Record, config: FiledropConfig, *, reference_prefix: str, file_name: str
) -> CanonicalEvent | Skipped:
    """The canonical event for one row, Skipped when its status sends nothing, or RowError."""
    values: dict[str, Any] = {}
    labels: dict[str, str] = {}
    consumed: set[str] = set()
    for name in config.columns:
        column = _column(record, config, name)
        if column is None:
            continue
        values[name] = record.fields[column]
        labels[name] = column
        if name in _CONSUMED:
            consumed.add(column)
    if not values.get("event_type"):
        raw_status = values.get("status") or ""
        if not raw_status:
            raise RowError(f"{labels.get('status', 'status')} is missing")
        status = normalise_status(raw_status)
        if status not in config.status_types:
            known = ", ".join(sorted(config.status_types))
            raise RowError(f"status {raw_status!r} is not one of: {known}")
        event_type = config.status_types[status]
        if event_type is None:
            return Skipped(f"status {raw_status!r} sends nothing")
        values["event_type"] = event_type
    identifier = row_id(record, config)
    values["transaction_reference"] = f"{reference_prefix}:{identifier}"
    details = {k: v for k, v in record.fields.items() if v and k not in consumed}
    details["source_file"] = file_name
    details["source_row"] = identifier
    return build_event(PROVIDER, values, details, labels)


def reference_prefix(name: str, sha256: str) -> str:
    return f"{reference_part(Path(name).stem, 48)}:{sha256[:10]}"


@dataclass
class Plan:
    """What a file turns into: events to publish and the report's rows."""

    fmt: str
    events: list[tuple[Record, CanonicalEvent]] = field(default_factory=list)
    skipped: list[tuple[Record, str]] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    rows: int = 0
    error: str | None = None  # the whole file is unusable

    @property
    def failed(self) -> bool:
        """Unreadable, or every row was bad (none emitted or deliberately skipped)."""
        return self.error is not None or (bool(self.bad) and not self.events and not self.skipped)


def plan_file(name: str, data: bytes, sha256: str, config: FiledropConfig) -> Plan:
    """Read and map a whole file (pure): what to emit, skip and report."""
    fmt = FORMATS.get(Path(name).suffix.lower(), "other")
    plan = Plan(fmt=fmt)
    try:
        records, bad = read_records(data, fmt, config.encoding)
        columns = {c for r in records for c in r.fields}
        if records:
            check_columns(columns, config)
    except FileFormatError as exc:
        plan.error = str(exc)
        return plan
    plan.bad.extend(bad)
    plan.rows = len(records) + len(bad)
    prefix = reference_prefix(name, sha256)
    seen: dict[str, int] = {}
    for record in records:
        identifier = row_id(record, config)
        if identifier in seen:
            plan.bad.append(
                BadRow(
                    record.position,
                    record.line,
                    f"row id {identifier!r} repeats line {seen[identifier]}",
                )
            )
            continue
        seen[identifier] = record.line
        try:
            result = map_record(record, config, reference_prefix=prefix, file_name=name)
        except RowError as exc:
            plan.bad.append(BadRow(record.position, record.line, str(exc)))
            continue
        if isinstance(result, Skipped):
            plan.skipped.append((record, result.reason))
        else:
            plan.events.append((record, result))
    plan.bad.sort(key=lambda b: b.line)
    return plan


def build_report(
    name: str, sha256: str, size: int, plan: Plan, status: str, moved_to: str
) -> dict[str, Any]:
    return {
        "file": name,
        "sha256": sha256,
        "size_bytes": size,
        "format": plan.fmt,
        "status": status,
        "moved_to": moved_to,
        "processed_at": utcnow().isoformat(),
        "error": plan.error,
        "rows": plan.rows,
        "events": len(plan.events),
        "skipped": len(plan.skipped),
        "failed": len(plan.bad),
        "bad_rows": [{"row": b.row, "line": b.line, "reason": b.reason} for b in plan.bad],
        "skipped_rows": [
            {"row": r.position, "line": r.line, "reason": reason} for r, reason in plan.skipped
        ],
        "emitted": [
            {"row": r.position, "line": r.line, "type": e.type, "reference": e.reference}
            for r, e in plan.events
        ],
    }


# --- schedule --------------------------------------------------------------------------------


def parse_schedule(spec: str) -> list[dtime]:
    """`"08:00"` or `"08:00,14:30"` → the times of day; empty → []."""
    times: list[dtime] = []
    for item in spec.split(","):
        text = item.strip()
        if not text:
            continue
        try:
            hour, minute = (int(part) for part in text.split(":"))
            times.append(dtime(hour, minute))
        except ValueError as exc:
            raise ValueError(f"FILEDROP_SCHEDULE: {text!r} is not HH:MM") from exc
    return sorted(set(times))


def zone(name: str) -> tzinfo:
    """The named time zone; Africa/Lagos works without a tz database too (WAT, no DST)."""
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:
        if name == "Africa/Lagos":
            return WAT
        raise


def next_run(now: datetime, times: Sequence[dtime], tz: tzinfo) -> datetime:
    """The first scheduled time at or after `now` (aware), as an aware time in `tz`."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not times:
        raise ValueError("no scheduled times")
    local = now.astimezone(tz)
    for offset in range(3):
        day = local.date() + timedelta(days=offset)
        for at in sorted(times):
            candidate = datetime.combine(day, at, tzinfo=tz)
            if candidate >= now:
                return candidate
    raise AssertionError("unreachable: a time of day recurs within two days")


# --- the watcher -----------------------------------------------------------------------------

_CLAIM = """
INSERT INTO filedrop_files AS f (name, sha256, size_bytes, status, claimed_by, claimed_at)
VALUES ($1, $2, $3, 'processing', $4, now())
ON CONFLICT (name, sha256) DO UPDATE
   SET claimed_by = EXCLUDED.claimed_by, claimed_at = now(), attempts = f.attempts + 1
 WHERE f.status = 'processing' AND f.claimed_at < now() - make_interval(secs => $5)
RETURNING f.id
"""

_FINISH = """
UPDATE filedrop_files
   SET status = $3, rows_total = $4, events = $5, rows_skipped = $6, rows_failed = $7,
       report = $8, moved_to = $9, error = $10, finished_at = now()
 WHERE id = $1 AND claimed_by = $2 AND status = 'processing'
"""

_RELEASE = """
UPDATE filedrop_files SET claimed_at = '-infinity', error = $3
 WHERE id = $1 AND claimed_by = $2 AND status = 'processing'
"""

Outcome = Literal["processed", "failed", "duplicate", "busy", "retry", "gone", "unstable"]


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float
    scans: int = 1


@dataclass(frozen=True)
class FileResult:
    name: str
    outcome: Outcome
    events: int = 0
    moved_to: str | None = None


@dataclass
class ScanReport:
    results: list[FileResult] = field(default_factory=list)
    pending: int = 0  # files present but not (yet) handled: settling, busy, to retry


def _unique_target(directory: Path, name: str, sha256: str) -> Path:
    target = directory / name
    if not target.exists() and not _report_path(target).exists():
        return target
    path = Path(name)
    for n in range(1000):
        extra = f".{n}" if n else ""
        target = directory / f"{path.stem}.{sha256[:10]}{extra}{path.suffix}"
        if not target.exists():
            return target
    raise FileExistsError(f"no free name for {name} in {directory}")


def _report_path(target: Path) -> Path:
    return target.with_name(target.name + ".report.json")


def _write_report(target: Path, report: Mapping[str, Any]) -> None:
    report_path = _report_path(target)
    partial = report_path.with_name(f".{report_path.name}.{uuid.uuid4().hex[:8]}.part")
    partial.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    partial.replace(report_path)


def _read(path: Path, max_bytes: int) -> tuple[int, bytes, str]:
    """Size, content (empty when larger than `max_bytes`: only hashed) and sha256."""
    digest = hashlib.sha256()
    chunks: list[bytes] = []
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
            if size <= max_bytes:
                chunks.append(chunk)
            else:
                chunks.clear()
    return size, (b"".join(chunks) if size <= max_bytes else b""), digest.hexdigest()


class FileDrop:
    """One watcher over `inbox`. `poll_once` scans and handles every settled file."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        inbox: Path,
        config: FiledropConfig | None = None,
        settle_seconds: float = 2.0,
        lease_seconds: float = 300.0,
        max_bytes: int = 50 * 1024 * 1024,
        send_timeout: float = 10.0,
        topic: str,
        owner: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.producer = producer
        self.inbox = inbox
        self.config = config or FiledropConfig()
        self.settle_seconds = settle_seconds
        self.lease_seconds = lease_seconds
        self.max_bytes = max_bytes
        self.send_timeout = send_timeout
        self.topic = topic
        self.owner = owner or worker_id()
        self.clock = clock
        self._seen: dict[str, _Seen] = {}
        for sub in (PROCESSED, FAILED):
            (inbox / sub).mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, pool: asyncpg.Pool, producer: AIOKafkaProducer
    ) -> FileDrop:
        return cls(
            pool=pool,
            producer=producer,
            inbox=Path(settings.filedrop_dir),
            config=FiledropConfig.from_settings(settings),
            settle_seconds=settings.filedrop_settle_seconds,
            lease_seconds=settings.filedrop_lease_seconds,
            max_bytes=settings.filedrop_max_bytes,
            send_timeout=settings.kafka_send_timeout_seconds,
            topic=settings.events_topic,
        )

    # -- scanning --

    @staticmethod
    def ignored(name: str) -> bool:
        lowered = name.lower()
        return lowered.startswith(".") or lowered.endswith(IGNORED_SUFFIXES)

    def scan(self) -> tuple[list[Path], int]:
        """The files ready to read (settled), and how many others are still settling."""
        now = self.clock()
        ready: list[Path] = []
        settling = 0
        present: set[str] = set()
        for entry in sorted(self.inbox.iterdir()):
            if self.ignored(entry.name) or entry.is_symlink() or not entry.is_file():
                continue
            try:
                stat = entry.stat()
            except FileNotFoundError:
                continue
            present.add(entry.name)
            seen = self._seen.get(entry.name)
            if seen is None or (seen.size, seen.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
                self._seen[entry.name] = _Seen(stat.st_size, stat.st_mtime_ns, now)
                settling += 1
                continue
            seen.scans += 1
            if seen.scans >= 2 and now - seen.since >= self.settle_seconds:
                ready.append(entry)
            else:
                settling += 1
        for name in set(self._seen) - present:
            del self._seen[name]
        return ready, settling

    async def poll_once(self, stopping: asyncio.Event | None = None) -> ScanReport:
        """One scan: handle every settled file (finishing the current one on a stop)."""
        ready, settling = await asyncio.to_thread(self.scan)
        report = ScanReport(pending=settling)
        for index, path in enumerate(ready):
            if stopping is not None and stopping.is_set():
                report.pending += len(ready) - index
                break
            result = await self.process(path)
            report.results.append(result)
            if result.outcome in ("busy", "retry", "unstable"):
                report.pending += 1
        return report

    async def run_until_settled(
        self, stopping: asyncio.Event, poll_seconds: float, max_seconds: float = 600.0
    ) -> ScanReport:
        """Scan until every file present is handled (a scheduled run, or `--once`)."""
        total = ScanReport()
        deadline = self.clock() + max_seconds
        while not stopping.is_set():
            report = await self.poll_once(stopping)
            total.results.extend(report.results)
            total.pending = report.pending
            if not report.pending or self.clock() >= deadline:
                break
            try:
                await asyncio.wait_for(stopping.wait(), poll_seconds)
            except TimeoutError:
                pass
        return total

    # -- one file --

    async def process(self, path: Path) -> FileResult:
        """Read, emit, record and move one settled file."""
        name = path.name
        seen = self._seen.get(name)
        try:
            size, data, sha256 = await asyncio.to_thread(_read, path, self.max_bytes)
        except FileNotFoundError:
            self._seen.pop(name, None)
            return FileResult(name, "gone")
        if seen is not None and size != seen.size:
            self._seen.pop(name, None)  # it grew after all: settle again
            return FileResult(name, "unstable")

        file_id = await self.pool.fetchval(
            _CLAIM, name, sha256, size, self.owner, float(self.lease_seconds)
        )
        if file_id is None:
            return await self._already_known(path, sha256)

        if size > self.max_bytes:
            plan = Plan(fmt=FORMATS.get(path.suffix.lower(), "other"))
            plan.error = f"larger than FILEDROP_MAX_BYTES ({self.max_bytes} bytes)"
        else:
            plan = await asyncio.to_thread(plan_file, name, data, sha256, self.config)

        events = [event for _, event in plan.events]
        for chunk in chunked(events, _SEND_CHUNK):
            errors = [
                e for e in await send_all(self.producer, chunk, self.send_timeout, self.topic) if e
            ]
            if errors:
                # Not moved: the next scan re-claims it at once and re-sends (same event ids).
                await self.pool.execute(
                    _RELEASE, file_id, self.owner, f"publish failed: {errors[0]!r}"[:500]
                )
                log.error(
                    "filedrop_publish_failed", file=name, failed=len(errors), error=repr(errors[0])
                )
                return FileResult(name, "retry")

        status = FAILED if plan.failed else PROCESSED
        target = _unique_target(self.inbox / status, name, sha256)
        moved_to = f"{status}/{target.name}"
        report = build_report(name, sha256, size, plan, status, moved_to)
        finished = await self.pool.execute(
            _FINISH,
            file_id,
            self.owner,
            status,
            plan.rows,
            len(plan.events),
            len(plan.skipped),
            len(plan.bad),
            report,
            moved_to,
            plan.error,
        )
        if finished == "UPDATE 0":
            # Our claim ran out and another watcher took the file over: it moves it.
            log.warning("filedrop_claim_lost", file=name)
            return FileResult(name, "busy")
        moved = await asyncio.to_thread(self._move, path, target, report)
        self._seen.pop(name, None)
        log_method = log.warning if plan.failed or plan.bad else log.info
        log_method(
            "filedrop_file",
            file=name,
            status=status,
            rows=plan.rows,
            events=len(plan.events),
            skipped=len(plan.skipped),
            bad=len(plan.bad),
            error=plan.error,
            moved_to=moved_to,
        )
        # Not moved: another watcher saw the record first and finished the move for us.
        outcome: Outcome = "gone" if not moved else "failed" if plan.failed else "processed"
        return FileResult(name, outcome, len(plan.events), moved_to)

    @staticmethod
    def _move(path: Path, target: Path, report: Mapping[str, Any]) -> bool:
        """Move the file out of the inbox, then write its report beside it. False when the
        file has gone already (another watcher moved it, and wrote the report)."""
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return False
        _write_report(target, report)
        return True

    async def _already_known(self, path: Path, sha256: str) -> FileResult:
        """The claim was refused: another watcher has the file, or it was handled before."""
        name = path.name
        row = await self.pool.fetchrow(
            "SELECT status, moved_to, report, finished_at FROM filedrop_files"
            " WHERE name = $1 AND sha256 = $2",
            name,
            sha256,
        )
        if row is None or row["status"] == "processing":
            return FileResult(name, "busy")
        status = str(row["status"])
        moved_to = row["moved_to"]
        if moved_to and not (self.inbox / moved_to).exists():
            # Recorded but not moved (stopped in between): finish the move.
            target = self.inbox / moved_to
            moved = await asyncio.to_thread(self._move, path, target, row["report"] or {})
            self._seen.pop(name, None)
            if not moved:
                return FileResult(name, "gone")  # the watcher that recorded it just moved it
            log.info("filedrop_move_finished", file=name, moved_to=moved_to)
            return FileResult(name, "processed" if status == PROCESSED else "failed", 0, moved_to)
        target = _unique_target(self.inbox / status, name, sha256)
        report = {
            "file": name,
            "sha256": sha256,
            "status": "duplicate",
            "duplicate_of": moved_to,
            "first_processed_at": (
                row["finished_at"].isoformat() if row["finished_at"] is not None else None
            ),
            "processed_at": utcnow().isoformat(),
            "events": 0,
            "note": "the same file (name and content) was read before; nothing was sent",
        }
        if not await asyncio.to_thread(self._move, path, target, report):
            self._seen.pop(name, None)
            return FileResult(name, "gone")
        self._seen.pop(name, None)
        duplicate_to = f"{status}/{target.name}"
        log.warning("filedrop_duplicate", file=name, duplicate_of=moved_to, moved_to=duplicate_to)
        return FileResult(name, "duplicate", 0, duplicate_to)


async def run(settings: Settings, *, once: bool = False) -> int:
    """The watcher process: scan on arrival or on schedule until SIGTERM (or once)."""
    FiledropConfig.from_settings(settings)  # bad settings fail here, before any I/O
    times = parse_schedule(settings.filedrop_schedule)
    tz = zone(settings.filedrop_timezone)
    stopper = Stopper()
    stopper.install()
    pool = await connect(settings.database_url, min_size=1, max_size=4)
    producer = new_producer(settings.kafka_bootstrap_servers)
    await producer.start()
    drop = FileDrop.from_settings(settings, pool=pool, producer=producer)
    log.info(
        "filedrop_started",
        inbox=str(drop.inbox.resolve()),
        schedule=settings.filedrop_schedule or None,
        timezone=settings.filedrop_timezone,
        owner=drop.owner,
    )
    poll = settings.filedrop_poll_seconds
    try:
        if once:
            await drop.run_until_settled(stopper.stopping, poll)
        elif times:
            while not stopper.stopping.is_set():
                at = next_run(utcnow(), times, tz)
                log.info("filedrop_next_run", at=at.isoformat())
                # Short naps, re-reading the clock: a suspended host or clock step is noticed.
                while (remaining := (at - utcnow()).total_seconds()) > 0:
                    if await stopper.sleep(min(remaining, 60.0)):
                        break
                if stopper.stopping.is_set():
                    break
                try:
                    await drop.run_until_settled(stopper.stopping, poll)
                except Exception as exc:
                    log.error("filedrop_run_failed", error=repr(exc))
        else:
            while not stopper.stopping.is_set():
                try:
                    await drop.poll_once(stopper.stopping)
                except Exception as exc:
                    # PostgreSQL down, the inbox unreadable…: say so and scan again.
                    log.error("filedrop_scan_failed", error=repr(exc))
                await stopper.sleep(poll)
    finally:
        await producer.stop()
        await pool.close()
        stopper.uninstall()
        log.info("filedrop_stopped")
    return 0
