"""The legacy file drop's watcher: scans the inbox (or at the scheduled times), claims each
settled file once across watchers, publishes the events `filedrop_reader.plan_file` makes
of it, and moves it to `processed/` or `failed/` with a report. What it reads and how
columns map: docs/filedrop.md."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from datetime import time as dtime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import orjson

from bridge.config import Settings, get_settings
from bridge.db import connect
from bridge.kafka import DurableProducer, Publisher, client_options
from bridge.logs import get_logger
from bridge.protect import Sealer, sealer

from . import WAT, Stopper, chunked, metrics_endpoint, send_all, utcnow, worker_id
from .filedrop_metrics import count_rows, count_scan
from .filedrop_reader import (
    FAILED,
    FORMATS,
    IGNORED_SUFFIXES,
    PROCESSED,
    FiledropConfig,
    Plan,
    build_report,
    plan_file,
)

log = get_logger("ingest.sources.filedrop")

# Events published per batch to Kafka.
_SEND_CHUNK = 500


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
        producer: Publisher,
        inbox: Path,
        config: FiledropConfig | None = None,
        settle_seconds: float = 2.0,
        lease_seconds: float = 300.0,
        max_bytes: int = 50 * 1024 * 1024,
        send_timeout: float = 10.0,
        topic: str,
        seal: Sealer | None = None,
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
        # The number a row gives is sealed before it leaves (bridge.protect).
        self.seal = seal or sealer(get_settings())
        self.owner = owner or worker_id()
        self.clock = clock
        self._seen: dict[str, _Seen] = {}
        for sub in (PROCESSED, FAILED):
            (inbox / sub).mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, pool: asyncpg.Pool, producer: Publisher
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
            seal=sealer(settings),
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
        count_scan(report)
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
                e
                for e in await send_all(
                    self.producer, chunk, self.send_timeout, self.topic, self.seal
                )
                if e
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
        count_rows(plan)
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
    # Replaces itself if a broker restart leaves it unable to send (bridge.kafka).
    producer = DurableProducer(settings.kafka_bootstrap_servers, client_options(settings))
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
    stop_metrics = metrics_endpoint(
        "filedrop", settings.ingest_host, 0 if once else settings.filedrop_metrics_port
    )
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
        stop_metrics()
        await producer.stop()
        await pool.close()
        stopper.uninstall()
        log.info("filedrop_stopped")
    return 0
