"""Per-number pacing: messages to one WhatsApp number go out at least
`PAIR_MIN_INTERVAL_SECONDS` apart, across every instance.

WhatsApp limits how often one business number may message one customer number (the pair
rate limit, error 131056): a customer who pays twice in two seconds would have the second
message refused. So each send first reserves the number's next free slot in Redis (one Lua
script, atomic, on Redis's clock as the rate governor is): the later of now and the number's
next free time. It waits for the slot with its lane's turn lent to other customers
(lanes.idle), so a waiting customer never holds up anyone else; after the call the next free
time moves to at least one interval after Siteti answered, since the governor or a retry may
have held the call past its slot. One customer's messages keep their order because their
lane hands them out one at a time.

The key is the number's keyed hash (DataKeys.phone_index), never the number itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from bridge.metrics import PAIR_PACING_WAIT
from bridge.protect import DataKeys

from .lanes import idle

# KEYS: the number's next free time (ms, Redis's clock). ARGV: interval_ms.
# Returns the ms from now to the slot reserved for this call (0: at once). A key lives only
# as long as it matters: until its next free time.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
redis.call('SET', KEYS[1], slot + interval, 'PX', slot - now + interval)
return slot - now
"""

# KEYS, ARGV as above. A message went out just now: the next one no sooner than an interval
# from now (a later reservation already made stands).
_SENT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
if tonumber(redis.call('GET', KEYS[1]) or '0') < now + interval then
  redis.call('SET', KEYS[1], now + interval, 'PX', interval)
end
return 0
"""


class Pacer:
    def __init__(
        self, redis: Redis, keys: DataKeys, *, interval_seconds: float, prefix: str
    ) -> None:
        """`prefix` names the sending Siteti account: the pair limit is per business number."""
        self._keys = keys
        self._interval_ms = round(interval_seconds * 1000)
        self._prefix = prefix
        self._reserve = redis.register_script(_RESERVE)
        self._sent = redis.register_script(_SENT)

    def key(self, phone: str) -> str:
        """The Redis key of a number (Siteti's format): its keyed hash, never the number."""
        return f"{self._prefix}:{self._keys.phone_index(phone)}"

    async def reserve(self, phone: str) -> float:
        """Take the number's next slot; the seconds until it (0: send now)."""
        if self._interval_ms <= 0:
            return 0.0
        wait_ms = int(await self._reserve(keys=[self.key(phone)], args=[self._interval_ms]))
        return wait_ms / 1000

    async def sent(self, phone: str) -> None:
        """A call that may have sent a message to `phone` has just ended."""
        if self._interval_ms > 0:
            await self._sent(keys=[self.key(phone)], args=[self._interval_ms])

    @asynccontextmanager
    async def turn(self, phone: str) -> AsyncIterator[float]:
        """Wait (lending the lane's turn to others) until `phone` may be messaged, run the
        body (the send), then keep the next message an interval away. Yields the wait."""
        wait = await self.reserve(phone)
        PAIR_PACING_WAIT.observe(wait)
        if wait > 0:
            async with idle():
                await asyncio.sleep(wait)
        try:
            yield wait
        finally:
            await self.sent(phone)


@asynccontextmanager
async def paced(pacer: Pacer | None, phone: str) -> AsyncIterator[None]:
    """`pacer.turn(phone)`, or nothing when the pipeline is built without pacing."""
    if pacer is None:
        yield
        return
    async with pacer.turn(phone):
        yield
