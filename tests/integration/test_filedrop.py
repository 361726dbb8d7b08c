"""The legacy file drop against the real stack: files in a temporary inbox, events checked on
the test session's topic (EVENTS_TOPIC), files tracked in `filedrop_files`.

Every dropped file gets a unique name, so its references (`filedrop:<stem>:…`) and its
tracking row are this test's own in the shared database, on the test session's topic.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from bridge.config import Settings, get_settings
from ingest.sources.filedrop import FileDrop, FileResult
from tests.kafka_tools import collect, events_from_now
from tests.process_tools import start_source, stop_process, stopped_cleanly

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "filedrop"


# --- Kafka -------------------------------------------------------------------------------------


# --- the inbox ---------------------------------------------------------------------------------


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


@pytest.fixture
def make_drop(
    pg_pool: asyncpg.Pool, producer: AIOKafkaProducer, inbox: Path
) -> Callable[..., FileDrop]:
    def make(**kwargs: Any) -> FileDrop:
        options: dict[str, Any] = {
            "pool": pg_pool,
            "producer": producer,
            "inbox": inbox,
            "settle_seconds": 0.0,
            "topic": get_settings().events_topic,
        }
        options.update(kwargs)
        return FileDrop(**options)

    return make


@pytest.fixture
async def names(pg_pool: asyncpg.Pool) -> AsyncIterator[Callable[[str], str]]:
    """Unique file names (`rent-<tag>.csv`); their tracking rows are removed afterwards."""
    made: list[str] = []

    def name(suffix: str) -> str:
        made.append(f"rent-{uuid.uuid4().hex[:10]}{suffix}")
        return made[-1]

    yield name
    await pg_pool.execute("DELETE FROM filedrop_files WHERE name = ANY($1::text[])", made)


def drop_fixture(inbox: Path, fixture: str, name: str) -> Path:
    target = inbox / name
    shutil.copyfile(FIXTURES / fixture, target)
    return target


async def poll_until_done(drop: FileDrop, polls: int = 3) -> list[FileResult]:
    results: list[FileResult] = []
    for _ in range(polls):
        results.extend((await drop.poll_once()).results)
    return results


def report_of(inbox: Path, moved_to: str) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads((inbox / (moved_to + ".report.json")).read_bytes())
    return loaded


def prefix(name: str) -> str:
    return f"filedrop:{Path(name).stem}:"


# --- tests -------------------------------------------------------------------------------------


async def test_csv_and_xml_exports_become_events_and_are_moved_to_processed(
    make_drop: Callable[..., FileDrop],
    inbox: Path,
    names: Callable[[str], str],
    pg_pool: asyncpg.Pool,
    kafka_bootstrap: str,
) -> None:
    csv_name, xml_name = names(".csv"), names(".xml")
    drop_fixture(inbox, "rent_status.csv", csv_name)
    drop_fixture(inbox, "rent_status.xml", xml_name)
    drop = make_drop()
    async with events_from_now(kafka_bootstrap) as consumer:
        first = await drop.poll_once()
        assert first.results == [] and first.pending == 2  # seen once: not read yet
        results = await poll_until_done(drop, 1)
        events = await collect(consumer, (prefix(csv_name), prefix(xml_name)), 4)
    csv_events = [e for e in events if e.subject.startswith(prefix(csv_name))]
    xml_events = [e for e in events if e.subject.startswith(prefix(xml_name))]

    assert {(r.name, r.outcome, r.events) for r in results} == {
        (csv_name, "processed", 2),
        (xml_name, "processed", 2),
    }
    assert sorted(os.listdir(inbox)) == ["failed", "processed"]
    assert (inbox / "processed" / csv_name).read_bytes() == (
        FIXTURES / "rent_status.csv"
    ).read_bytes()

    sha = hashlib.sha256((FIXTURES / "rent_status.csv").read_bytes()).hexdigest()
    assert sorted((e.subject, e.type) for e in csv_events) == [
        (f"{prefix(csv_name)}{sha[:10]}:R-1", "rent.overdue"),
        (f"{prefix(csv_name)}{sha[:10]}:R-2", "rent.reminder"),
    ]
    assert {e.priority for e in csv_events} == {"bulk"}
    assert {e.data.provider for e in csv_events} == {"filedrop"}
    overdue = next(e for e in csv_events if e.type == "rent.overdue")
    assert str(overdue.data.amount) == "450000.00"
    assert overdue.data.details["property"] == "Palm Court Lekki B4"
    assert overdue.data.details["due_date"] == "2026-01-15"
    assert sorted(e.type for e in xml_events) == ["rent.overdue", "rent.reminder"]
    assert {e.data.details["source_row"] for e in xml_events} == {"X-1", "X-2"}

    report = report_of(inbox, f"processed/{csv_name}")
    assert (report["rows"], report["events"], report["skipped"], report["failed"]) == (3, 2, 1, 0)
    assert report["skipped_rows"] == [
        {"row": "L4", "line": 4, "reason": "status 'paid' sends nothing"}
    ]
    row = await pg_pool.fetchrow("SELECT * FROM filedrop_files WHERE name = $1", csv_name)
    assert (row["status"], row["sha256"], row["events"], row["moved_to"]) == (
        "processed",
        sha,
        2,
        f"processed/{csv_name}",
    )


async def test_a_file_still_being_written_is_not_read_until_it_is_stable(
    make_drop: Callable[..., FileDrop],
    inbox: Path,
    names: Callable[[str], str],
    pg_pool: asyncpg.Pool,
    kafka_bootstrap: str,
) -> None:
    name = names(".csv")
    content = (FIXTURES / "rent_status.csv").read_bytes()
    half = len(content) // 2
    clock = Clock()
    drop = make_drop(settle_seconds=5.0, clock=clock)
    path = inbox / name
    async with events_from_now(kafka_bootstrap) as consumer:
        path.write_bytes(content[:half])
        assert (await drop.poll_once()).results == []
        clock.now += 10
        with path.open("ab") as handle:  # the writer goes on
            handle.write(content[half:-10])
        assert (await drop.poll_once()).results == []
        clock.now += 10
        with path.open("ab") as handle:
            handle.write(content[-10:])
        assert (await drop.poll_once()).results == []
        # Unchanged on the next scan, but not yet for FILEDROP_SETTLE_SECONDS.
        clock.now += 1
        assert (await drop.poll_once()).results == []
        assert path.exists()
        assert (
            await pg_pool.fetchval("SELECT count(*) FROM filedrop_files WHERE name = $1", name) == 0
        )
        clock.now += 5
        results = (await drop.poll_once()).results
        assert [(r.outcome, r.events) for r in results] == [("processed", 2)]
        events = await collect(consumer, prefix(name), 2)
    assert len(events) == 2
    assert (inbox / "processed" / name).read_bytes() == content


async def test_partial_and_hidden_names_are_ignored_until_renamed(
    make_drop: Callable[..., FileDrop],
    inbox: Path,
    names: Callable[[str], str],
    kafka_bootstrap: str,
) -> None:
    name = names(".csv")
    for ignored in (name + ".part", name + ".tmp", "." + name):
        drop_fixture(inbox, "rent_status.csv", ignored)
    drop = make_drop()
    for _ in range(3):
        report = await drop.poll_once()
        assert report.results == [] and report.pending == 0
    async with events_from_now(kafka_bootstrap) as consumer:
        (inbox / (name + ".part")).rename(inbox / name)  # the writer's atomic rename
        results = await poll_until_done(drop, 2)
        events = await collect(consumer, prefix(name), 2)
    assert [(r.name, r.outcome) for r in results] == [(name, "processed")]
    assert len(events) == 2
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == sorted(
        [name + ".tmp", "." + name]
    )


async def test_the_same_file_dropped_again_is_not_read_again(
    make_drop: Callable[..., FileDrop],
    inbox: Path,
    names: Callable[[str], str],
    pg_pool: asyncpg.Pool,
    kafka_bootstrap: str,
) -> None:
    name = names(".xml")
    drop_fixture(inbox, "rent_status.xml", name)
    drop = make_drop()
    async with events_from_now(kafka_bootstrap) as consumer:
        await poll_until_done(drop, 2)
        assert len(await collect(consumer, prefix(name), 2)) == 2

    async with events_from_now(kafka_bootstrap) as consumer:
        drop_fixture(inbox, "rent_status.xml", name)  # the legacy system exports it again
        results = await poll_until_done(make_drop(), 3)  # a fresh watcher (a restart) too
        assert await collect(consumer, prefix(name), 0, linger=3.0) == []
    sha = hashlib.sha256((FIXTURES / "rent_status.xml").read_bytes()).hexdigest()
    duplicate = f"processed/{Path(name).stem}.{sha[:10]}.xml"
    assert [(r.outcome, r.events, r.moved_to) for r in results] == [("duplicate", 0, duplicate)]
    assert not (inbox / name).exists()
    report = report_of(inbox, duplicate)
    assert report["status"] == "duplicate"
    assert report["duplicate_of"] == f"processed/{name}"
    assert await pg_pool.fetchval("SELECT count(*) FROM filedrop_files WHERE name = $1", name) == 1


async def test_a_file_with_bad_rows_emits_the_good_ones_and_names_the_bad(
    make_drop: Callable[..., FileDrop],
    inbox: Path,
    names: Callable[[str], str],
    pg_pool: asyncpg.Pool,
    kafka_bootstrap: str,
) -> None:
    name = names(".csv")
    drop_fixture(inbox, "rent_status_bad_rows.csv", name)
    async with events_from_now(kafka_bootstrap) as consumer:
        results = await poll_until_done(make_drop(), 2)
        events = await collect(consumer, prefix(name), 2)
    assert [(r.outcome, r.events) for r in results] == [("processed", 2)]
    assert sorted(e.subject.rsplit(":", 1)[1] for e in events) == ["L2", "L5"]
    report = report_of(inbox, f"processed/{name}")
    assert (report["rows"], report["events"], report["failed"]) == (4, 2, 2)
    assert [(b["row"], b["line"]) for b in report["bad_rows"]] == [("L3", 3), ("L4", 4)]
    assert "amount_due is not a number" in report["bad_rows"][0]["reason"]
    assert "status 'evicted' is not one of" in report["bad_rows"][1]["reason"]
    assert [e["row"] for e in report["emitted"]] == ["L2", "L5"]
    row = await pg_pool.fetchrow("SELECT * FROM filedrop_files WHERE name = $1", name)
    assert (row["status"], row["events"], row["rows_failed"]) == ("processed", 2, 2)
    assert row["report"]["bad_rows"] == report["bad_rows"]


async def test_an_unusable_file_goes_to_failed_with_a_report(
    make_drop: Callable[..., FileDrop],
    inbox: Path,
    names: Callable[[str], str],
    pg_pool: asyncpg.Pool,
    kafka_bootstrap: str,
) -> None:
    broken, all_bad, other = names(".xml"), names(".csv"), names(".txt")
    (inbox / broken).write_bytes(b"<records><record><status>overdue</record></records>")
    (inbox / all_bad).write_bytes(b"tenant_account,amount_due,status\n1,x,overdue\n")
    (inbox / other).write_bytes(b"rent is due\n")
    async with events_from_now(kafka_bootstrap) as consumer:
        results = await poll_until_done(make_drop(), 2)
        assert await collect(consumer, "filedrop:rent-", 0, linger=2.0) == []
    assert {(r.name, r.outcome, r.events) for r in results} == {
        (broken, "failed", 0),
        (all_bad, "failed", 0),
        (other, "failed", 0),
    }
    assert "malformed XML" in report_of(inbox, f"failed/{broken}")["error"]
    assert report_of(inbox, f"failed/{all_bad}")["bad_rows"][0]["row"] == "L2"
    assert "unsupported file type" in report_of(inbox, f"failed/{other}")["error"]
    statuses = await pg_pool.fetch(
        "SELECT status FROM filedrop_files WHERE name = ANY($1::text[])", [broken, all_bad, other]
    )
    assert [r["status"] for r in statuses] == ["failed"] * 3


async def test_two_watchers_on_one_inbox_read_each_file_once(
    make_drop: Callable[..., FileDrop],
    inbox: Path,
    names: Callable[[str], str],
    kafka_bootstrap: str,
) -> None:
    dropped = [names(".csv") for _ in range(4)] + [names(".xml") for _ in range(4)]
    for name in dropped:
        drop_fixture(inbox, "rent_status" + Path(name).suffix, name)
    watchers = [make_drop(), make_drop()]
    results: list[FileResult] = []
    async with events_from_now(kafka_bootstrap) as consumer:
        for _ in range(3):
            reports = await asyncio.gather(*(w.poll_once() for w in watchers))
            results.extend(r for report in reports for r in report.results)
        events = await collect(consumer, tuple(prefix(n) for n in dropped), 16, linger=3.0)
    assert len(events) == 16
    assert len({e.id for e in events}) == 16
    handled = sorted(r.name for r in results if r.outcome == "processed")
    assert handled == sorted(dropped)
    assert {r.outcome for r in results} <= {"processed", "busy", "gone"}
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == sorted(
        [*dropped, *(n + ".report.json" for n in dropped)]
    )


async def test_a_watcher_that_died_mid_file_is_taken_over_after_the_lease(
    make_drop: Callable[..., FileDrop],
    inbox: Path,
    names: Callable[[str], str],
    pg_pool: asyncpg.Pool,
    kafka_bootstrap: str,
) -> None:
    name = names(".csv")
    path = drop_fixture(inbox, "rent_status.csv", name)
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    # A watcher claimed the file (and perhaps published some rows), then died.
    await pg_pool.execute(
        "INSERT INTO filedrop_files (name, sha256, size_bytes, status, claimed_by, claimed_at)"
        " VALUES ($1, $2, $3, 'processing', 'dead-watcher', now())",
        name,
        sha,
        len(data),
    )
    drop = make_drop(lease_seconds=1.0)
    async with events_from_now(kafka_bootstrap) as consumer:
        results = await poll_until_done(drop, 2)
        assert [r.outcome for r in results] == ["busy"]  # inside the lease: left alone
        assert path.exists()
        await asyncio.sleep(1.2)
        results = await poll_until_done(drop, 1)
        events = await collect(consumer, prefix(name), 2)
    assert [(r.outcome, r.events) for r in results] == [("processed", 2)]
    assert len(events) == 2
    row = await pg_pool.fetchrow("SELECT * FROM filedrop_files WHERE name = $1", name)
    assert (row["status"], row["attempts"], row["claimed_by"]) == ("processed", 2, drop.owner)


async def test_a_stop_between_recording_and_moving_is_finished_without_resending(
    make_drop: Callable[..., FileDrop],
    inbox: Path,
    names: Callable[[str], str],
    kafka_bootstrap: str,
) -> None:
    name = names(".csv")
    drop_fixture(inbox, "rent_status.csv", name)
    await poll_until_done(make_drop(), 2)
    # As if the watcher had stopped after recording the file but before moving it.
    (inbox / "processed" / name).rename(inbox / name)
    (inbox / "processed" / (name + ".report.json")).unlink()
    async with events_from_now(kafka_bootstrap) as consumer:
        results = await poll_until_done(make_drop(), 2)
        assert await collect(consumer, prefix(name), 0, linger=2.0) == []
    assert [(r.outcome, r.moved_to) for r in results] == [("processed", f"processed/{name}")]
    assert report_of(inbox, f"processed/{name}")["events"] == 2
    assert not (inbox / name).exists()


async def test_the_process_watches_the_inbox_and_stops_cleanly_on_sigterm(
    inbox: Path, names: Callable[[str], str], settings: Settings, kafka_bootstrap: str
) -> None:
    env = {
        **os.environ,
        "FILEDROP_DIR": str(inbox),
        "FILEDROP_POLL_SECONDS": "0.2",
        "FILEDROP_SETTLE_SECONDS": "0.2",
        "DATABASE_URL": settings.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
    }
    name = names(".csv")
    async with events_from_now(kafka_bootstrap) as consumer:
        process = start_source("filedrop", env)
        try:
            drop_fixture(inbox, "rent_status.csv", name)
            events = await collect(consumer, prefix(name), 2, timeout=60, linger=0)
            assert len(events) == 2
            deadline = time.monotonic() + 10
            while not (inbox / "processed" / name).exists() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            output = await stopped_cleanly(process)
        finally:
            stop_process(process)  # an assertion failed above: never leave it running
    assert "filedrop_stopped" in output
    assert (inbox / "processed" / name).exists()


@pytest.mark.parametrize("suffix", [".csv", ".xml"])
async def test_rows_the_canonical_model_refuses_are_row_errors_and_the_rest_is_sent(
    make_drop: Callable[..., FileDrop],
    inbox: Path,
    names: Callable[[str], str],
    kafka_bootstrap: str,
    suffix: str,
) -> None:
    # Issue 7: a legacy "null date" (0001-01-01), a control character or an absurd amount in
    # one row is that row's error in the report; the file is processed, good rows are sent.
    header = ["record_id", "tenant_account", "name", "amount_due", "status", "occurred_at"]
    rows = [
        ["G-1", "0123456789", "Ada Obi", "1000", "overdue", "2026-01-20T08:00:00"],
        ["N-1", "0123456789", "Ada Obi", "1000", "overdue", "0001-01-01T00:00:00"],
        ["C-1", "0123456789", "Ada\u0086Obi", "1000", "overdue", ""],
        ["A-1", "0123456789", "Ada Obi", "1e13", "overdue", ""],
        ["G-2", "0234567890", "Tunde Bakare", "380000", "due_soon", ""],
    ]
    name = names(suffix)
    if suffix == ".csv":
        text = "\n".join(",".join(row) for row in [header, *rows]) + "\n"
    else:
        text = (
            "<records>"
            + "".join(
                f'<record id="{row[0]}">'
                + "".join(f"<{c}>{v}</{c}>" for c, v in zip(header[1:], row[1:], strict=True))
                + "</record>"
                for row in rows
            )
            + "</records>"
        )
    (inbox / name).write_text(text, encoding="utf-8")
    async with events_from_now(kafka_bootstrap) as consumer:
        results = await poll_until_done(make_drop(), 2)
        events = await collect(consumer, prefix(name), 2)
    assert [(r.outcome, r.events) for r in results] == [("processed", 2)]
    assert sorted(e.subject.rsplit(":", 1)[1] for e in events) == ["G-1", "G-2"]
    report = report_of(inbox, f"processed/{name}")
    reasons = {row["row"]: row["reason"] for row in report["bad_rows"]}
    assert len(reasons) == 3, reasons
    reason_text = " | ".join(reasons.values())
    assert "occurred_at" in reason_text and "before 2000-01-01" in reason_text
    assert "control characters" in reason_text
    assert "below 1,000,000,000,000" in reason_text
