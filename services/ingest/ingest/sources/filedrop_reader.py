"""Reading a legacy export: CSV and XML records, the column mapping, the plan of events
a file becomes and its report. Pure: the watcher (filedrop.py, which documents the file
drop as a whole) does the files, the claims and Kafka."""

from __future__ import annotations

import csv
import io
import xml.parsers.expat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.config import Settings
from bridge.events import EVENT_TYPES, CanonicalEvent

from . import (
    CUSTOMER_FIELDS,
    RowError,
    build_event,
    normalise_name,
    reference_part,
    utcnow,
)

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


def csv_delimiter(header_line: str) -> str:
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
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=csv_delimiter(first_line))
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
