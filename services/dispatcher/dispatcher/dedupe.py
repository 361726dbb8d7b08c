"""Cluster-wide dedupe in Redis: reserve before the Siteti call, confirm after it.

A reservation is a lease (owner + expiry): if its instance dies, the lease lapses and another
instance takes the event over; the Idempotency-Key makes that second attempt safe.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal, cast

from redis.asyncio import Redis

DONE = b"done"
PARKED = b"parked"  # in the dead-letter store: the retrier owns it, duplicates are skipped

State = Literal["reserved", "done", "parked", "busy"]

_RESERVE = """
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 'reserved'
end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 'reserved'
end
if current == 'done' or current == 'parked' then return current end
return 'busy'
"""

_DELETE_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_SET_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


class Dedupe:
    def __init__(self, redis: Redis, *, lease_seconds: int, ttl_seconds: int) -> None:
        self._redis = redis
        self._lease_ms = lease_seconds * 1000
        self._ttl = ttl_seconds
        self._reserve = redis.register_script(_RESERVE)
        self._set_if_owner = redis.register_script(_SET_IF_OWNER)
        self._delete_if_owner = redis.register_script(_DELETE_IF_OWNER)
        self.lease_seconds = lease_seconds

    @staticmethod
    def key(dedupe_key: str) -> str:
        return f"bridge:dedupe:{dedupe_key}"

    async def reserve(self, dedupe_key: str, owner: str) -> State:
        """Take (or renew) the lease on an event; or say who already has it."""
        result = await self._reserve(keys=[self.key(dedupe_key)], args=[owner, self._lease_ms])
        state = result.decode() if isinstance(result, bytes) else str(result)
        return cast(State, state)

    async def confirm(self, dedupe_key: str) -> None:
        """The message is sent: every later copy of this event is a duplicate."""
        await self._redis.set(self.key(dedupe_key), DONE, ex=self._ttl)

    async def release(self, dedupe_key: str, owner: str) -> None:
        """Hand an unfinished event back (shutdown): the next instance need not wait out the
        lease, and the Idempotency-Key makes its attempt safe if ours reached Siteti."""
        await self._delete_if_owner(keys=[self.key(dedupe_key)], args=[owner])

    @asynccontextmanager
    async def held(self, dedupe_key: str, owner: str) -> AsyncIterator[None]:
        """Renew the lease while the body runs; release it if the body is cancelled."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.lease_seconds / 3)
                await self.reserve(dedupe_key, owner)

        heartbeat = asyncio.create_task(renew())
        try:
            yield
        except asyncio.CancelledError:
            await asyncio.shield(self.release(dedupe_key, owner))
            raise
        finally:
            heartbeat.cancel()

    async def park(self, dedupe_key: str, owner: str) -> None:
        await self._set_if_owner(keys=[self.key(dedupe_key)], args=[owner, PARKED, self._ttl])

    async def take_parked(self, dedupe_key: str, owner: str, *, sent: bool = False) -> bool:
        """The dead-letter retrier takes a parked event back under its own lease. `sent`:
        the event's message went out and WhatsApp refused it, so "done" is taken back too."""
        lease = self._lease_ms // 1000 or 1
        taken = await self._set_if_owner(keys=[self.key(dedupe_key)], args=[PARKED, owner, lease])
        if not taken and sent:
            taken = await self._set_if_owner(keys=[self.key(dedupe_key)], args=[DONE, owner, lease])
        if taken:
            return True
        # Parked long ago (the key expired) or never parked: reserve as usual.
        return await self.reserve(dedupe_key, owner) == "reserved"
