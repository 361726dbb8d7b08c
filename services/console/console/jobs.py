"""Bulk work (retry / resolve / close many dead letters) as background jobs.

A job runs as a task in the console process that started it, one entry at a time through
the admin API (each call is then the same as a single retry, and progress is exact). Its
state lives in Redis, so every console instance can show it: a hash of counters and a list
of failures, kept a day.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bridge.logs import get_logger

from .backend import BackendError

log = get_logger("console.jobs")

ACTIONS = ("retry", "resolve", "close")
MAX_ENTRIES = 500  # entries one job may take on (the admin API's own bulk limit)
TTL_SECONDS = 86400
_PREFIX = "console:job:"

Act = Callable[[int], Awaitable[None]]  # one entry's call; raises BackendError


@dataclass(frozen=True)
class Job:
    id: str
    action: str
    total: int
    done: int = 0
    failed: int = 0
    finished: bool = False
    updated_at: float = 0.0  # wall clock: a job whose console died stops moving
    failures: list[tuple[int, str]] = field(default_factory=list)

    @property
    def percent(self) -> int:
        return 100 if self.total == 0 else int(100 * self.done / self.total)

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "action": self.action,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "finished": self.finished,
            "percent": self.percent,
        }


def parse_ids(raw: Sequence[str]) -> list[int]:
    """Checked entry ids from a form (unique, in order); ValueError saying what is wrong."""
    ids: list[int] = []
    for value in raw:
        if not (value.isascii() and value.isdigit()) or len(value) > 19:
            raise ValueError(f"not an entry id: {value[:20]!r}")
        if int(value) not in ids:
            ids.append(int(value))
    if not ids:
        raise ValueError("select at least one entry")
    if len(ids) > MAX_ENTRIES:
        raise ValueError(f"a job takes at most {MAX_ENTRIES} entries")
    return ids


class JobStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        # The running tasks, so they are not collected before they finish.
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, action: str, ids: Sequence[int], act: Act) -> str:
        job_id = secrets.token_urlsafe(12)
        key = _PREFIX + job_id
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "action": action,
                    "total": len(ids),
                    "done": 0,
                    "failed": 0,
                    "finished": 0,
                    "updated_at": time.time(),
                },
            )
            pipe.expire(key, TTL_SECONDS)
            await pipe.execute()
        task = asyncio.create_task(self._run(key, ids, act), name=f"console-job-{job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("console_job_started", job=job_id, action=action, entries=len(ids))
        return job_id

    async def _run(self, key: str, ids: Sequence[int], act: Act) -> None:
        try:
            for entry_id in ids:
                failure: str | None = None
                try:
                    await act(entry_id)
                except BackendError as exc:
                    failure = exc.message
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.hincrby(key, "done", 1)
                    pipe.hset(key, "updated_at", time.time())
                    if failure is not None:
                        pipe.hincrby(key, "failed", 1)
                        pipe.rpush(key + ":failures", orjson.dumps([entry_id, failure]))
                        pipe.expire(key + ":failures", TTL_SECONDS)
                    await pipe.execute()
            await self._redis.hset(key, "finished", 1)
            log.info("console_job_finished", job=key.removeprefix(_PREFIX))
        except RedisError as exc:
            # Progress cannot be recorded: stop here; the job's page shows it stalled.
            log.error("console_job_stopped", job=key.removeprefix(_PREFIX), error=repr(exc))

    async def get(self, job_id: str) -> Job | None:
        if not job_id.replace("-", "").replace("_", "").isalnum() or len(job_id) > 32:
            return None
        key = _PREFIX + job_id
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(key)
            pipe.lrange(key + ":failures", 0, 99)
            fields, failures = await pipe.execute()
        if not fields:
            return None
        return Job(
            id=job_id,
            action=fields[b"action"].decode(),
            total=int(fields[b"total"]),
            done=int(fields[b"done"]),
            failed=int(fields[b"failed"]),
            finished=fields[b"finished"] == b"1",
            updated_at=float(fields[b"updated_at"]),
            failures=[(int(i), str(m)) for i, m in map(orjson.loads, failures)],
        )

    async def wait_idle(self) -> None:
        """Let running jobs finish (shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
