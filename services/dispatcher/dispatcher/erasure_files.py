"""An erasure's file-drop part: the copies of read exports (FILEDROP_DIR/processed and failed)
rewritten without the customer's rows, matched by account number or normalised number.

The files are read with the file drop's own reader and column mapping
(ingest.sources.filedrop_reader), so a row matches here exactly when it was the customer's
there. A CSV keeps every other line byte for byte; an XML is re-serialised without the
records. `strip_rows` is pure; `find_rewrites` and `rewrite` do the files.
"""

from __future__ import annotations

import csv
import io
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bridge.phones import to_siteti
from ingest.sources.filedrop_reader import (
    FAILED,
    FORMATS,
    PROCESSED,
    FiledropConfig,
    FileFormatError,
    Record,
    csv_delimiter,  # the reader's own rule, so that row spans match its line numbers
    read_records,
)

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class FileRewrite:
    path: Path
    rows: int  # removed
    content: bytes  # the file without them


@dataclass(frozen=True)
class Wanted:
    """Whose rows go: the customer's account numbers and numbers (Siteti's form)."""

    accounts: frozenset[str]
    phones: frozenset[str]
    region: str


def _column_value(record: Record, columns: Sequence[str]) -> str | None:
    return next((record.fields[c] for c in columns if record.fields.get(c)), None)


def row_matches(record: Record, config: FiledropConfig, wanted: Wanted) -> bool:
    account = _column_value(record, config.columns.get("account_number", ()))
    if account is not None and account in wanted.accounts:
        return True
    phone = _column_value(record, config.columns.get("phone", ()))
    return phone is not None and to_siteti(phone, wanted.region, trusted=True) in wanted.phones


def _strip_csv(data: bytes, encoding: str, end_lines: set[int]) -> bytes:
    """The CSV without the rows ending on `end_lines` (read_csv's line numbers)."""
    text = data.decode(encoding)
    lines = list(io.StringIO(text, newline=""))  # the lines csv counts, endings kept
    first_line = text.lstrip("\r\n").split("\n", 1)[0]
    reader = csv.reader(lines, delimiter=csv_delimiter(first_line))
    kept: list[str] = []
    start = 0
    for _ in reader:
        if reader.line_num not in end_lines:
            kept.extend(lines[start : reader.line_num])
        start = reader.line_num
    kept.extend(lines[start:])
    # utf-8-sig decodes with or without a BOM but always writes one: keep the file's choice.
    no_bom = encoding.lower().replace("_", "-") == "utf-8-sig" and not data.startswith(_BOM)
    return "".join(kept).encode("utf-8" if no_bom else encoding)


def _strip_xml(data: bytes, numbers: set[int]) -> bytes:
    """The XML without the records numbered `numbers` (read_xml's R<n>: the root's n-th child)."""
    root = ET.fromstring(data)  # noqa: S314 - read_xml has refused DTDs and entities already
    for index, child in enumerate(list(root), start=1):
        if index in numbers:
            root.remove(child)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True)) + b"\n"


def strip_rows(data: bytes, fmt: str, config: FiledropConfig, wanted: Wanted) -> tuple[bytes, int]:
    """(the file without the customer's rows, how many went); FileFormatError if unreadable."""
    records, _ = read_records(data, fmt, config.encoding)
    hits = [r for r in records if row_matches(r, config, wanted)]
    if not hits:
        return data, 0
    if fmt == "csv":
        return _strip_csv(data, config.encoding, {r.line for r in hits}), len(hits)
    return _strip_xml(data, {int(r.position[1:]) for r in hits}), len(hits)


def find_rewrites(
    inbox: Path, config: FiledropConfig, wanted: Wanted
) -> tuple[list[FileRewrite], int]:
    """The files holding the customer's rows, rewritten in memory; and how many copies could
    not be read (they went to failed/ unreadable: a person checks them)."""
    rewrites: list[FileRewrite] = []
    unreadable = 0
    for folder in (PROCESSED, FAILED):
        directory = inbox / folder
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            fmt = FORMATS.get(path.suffix.lower())
            if fmt is None or path.name.startswith(".") or not path.is_file():
                continue
            try:
                content, rows = strip_rows(path.read_bytes(), fmt, config, wanted)
            except (FileFormatError, UnicodeError, LookupError, ET.ParseError):
                unreadable += 1
                continue
            if rows:
                rewrites.append(FileRewrite(path, rows, content))
    return rewrites, unreadable


def rewrite(change: FileRewrite) -> None:
    """Replace the file atomically: a reader sees the old copy or the new one, never half."""
    partial = change.path.with_name(f".{change.path.name}.erasure.part")
    partial.write_bytes(change.content)
    os.replace(partial, change.path)
