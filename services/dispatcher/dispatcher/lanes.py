"""Per-key lanes: events of one key are handled one after another, in arrival order; other
keys proceed concurrently. Every event is acked exactly when its handling has finished."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol


class Ackable(Protocol):
    key: Any

    def ack(self) -> bool: ...


class Lanes:
    def __init__(
        self, count: int, handle: Callable[[Any], Awaitable[None]], depth: int = 64
    ) -> None:
        self._handle = handle
        self._queues: list[asyncio.Queue[Any]] = [
            asyncio.Queue(maxsize=depth) for _ in range(count)
        ]
        self._workers = [asyncio.create_task(self._work(q)) for q in self._queues]

    def lane_of(self, key: bytes | None) -> int:
        return zlib.crc32(key or b"") % len(self._queues)

    async def submit(self, event: Ackable) -> None:
        """Queue the event on its key's lane; waits when that lane is full (backpressure)."""
        await self._queues[self.lane_of(event.key)].put(event)

    async def _work(self, queue: asyncio.Queue[Any]) -> None:
        while True:
            event = await queue.get()
            try:
                await self._handle(event)
                # Only a settled event (sent, duplicate or dead-lettered) is acked; one cut
                # short by shutdown stays unacked, so Kafka hands it out again.
                event.ack()
            finally:
                queue.task_done()

    async def drain(self) -> None:
        """Wait for every queued event to finish, then stop the workers."""
        await asyncio.gather(*(q.join() for q in self._queues))
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
