"""The cluster-wide Siteti rate governor: every call of every dispatcher instance takes a slot.

GCRA in Redis (one Lua script, atomic, Redis's own clock): each call reserves the next free
slot on a shared schedule spaced `60 / limit` seconds apart, and sleeps until it. A burst
becomes a queue at the plan rate instead of a wall of 429s.

- **Pause**: a 429/503 with Retry-After, or `X-RateLimit-Remaining` at the floor, pauses every
  instance until then (a shared key), not only the one that saw it.
- **Priority**: bulk work (reminders, polled rows) takes a slot only when the schedule is free
  up to one interval ahead, so confirmations waiting for the same budget go first; a bulk call
  that has waited `bulk_max_wait_seconds` queues like any other, so it is never starved forever.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from bridge.events import Priority
from bridge.metrics import GOVERNOR_PAUSES

# KEYS: schedule (theoretical arrival time, ms), pause.
# ARGV: interval_ms, horizon_ms (how far ahead a slot may be reserved; -1 = unbounded).
# Returns the µs to wait for the reserved slot, or -(µs to wait before asking again).
# The interval keeps its fraction (rounded to whole ms, 6,000/min less the safety margin came
# out at exactly the plan), so the schedule is written with '%.3f': Lua's own 14 digits would
# keep only a tenth of a ms.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local horizon = tonumber(ARGV[2])
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return -paused * 1000 end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now
if horizon >= 0 and wait > horizon then return -math.ceil((wait - horizon) * 1000) end
redis.call('SET', KEYS[1], string.format('%.3f', tat + interval), 'PX',
           math.ceil(wait + interval) + 60000)
return math.floor(wait * 1000)
"""

# KEYS: schedule, pause. ARGV: pause_ms. Extends, never shortens, a pause in force.
# Returns 1 when it started or extended the pause, 0 when one in force already lasts longer.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(ARGV[1])
local extended = 0
if redis.call('PTTL', KEYS[2]) < ms then
  redis.call('SET', KEYS[2], '1', 'PX', ms)
  extended = 1
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now + ms then redis.call('SET', KEYS[1], now + ms, 'PX', ms + 60000) end
return extended
"""


@dataclass(frozen=True)
class GovernorConfig:
    limit_per_minute: int
    # Aim a little under the plan, so clock skew between us and Siteti never costs a 429.
    safety: float = 0.97
    bulk_max_wait_seconds: float = 60.0
    # X-RateLimit-Remaining at or below this pauses everyone until X-RateLimit-Reset.
    remaining_floor: int = 0
    key_prefix: str = "bridge:governor"

    @property
    def interval_ms(self) -> float:
        return 60_000 / (self.limit_per_minute * self.safety)


class Governor:
    def __init__(self, redis: Redis, config: GovernorConfig) -> None:
        self._config = config
        self._keys = [f"{config.key_prefix}:schedule", f"{config.key_prefix}:pause"]
        self._reserve = redis.register_script(_RESERVE)
        self._pause = redis.register_script(_PAUSE)
        self._redis = redis

    async def acquire(self, priority: Priority = "transactional") -> float:
        """Wait for this call's slot; returns the seconds waited."""
        started = time.monotonic()
        bulk_deadline = started + self._config.bulk_max_wait_seconds
        while True:
            bounded = priority == "bulk" and time.monotonic() < bulk_deadline
            horizon = self._config.interval_ms if bounded else -1
            wait_us = int(
                await self._reserve(keys=self._keys, args=[self._config.interval_ms, horizon])
            )
            if wait_us == 0:  # the script saw no pause, just now: no second look needed
                return time.monotonic() - started
            if wait_us > 0:
                await asyncio.sleep(wait_us / 1_000_000)
                # A pause may have begun while we slept on our slot: honour it.
                paused_ms = int(await self._redis.pttl(self._keys[1]))
                if paused_ms <= 0:
                    return time.monotonic() - started
                await asyncio.sleep(paused_ms / 1000)
                continue
            # Paused, or (bulk) the schedule is busy: look again shortly.
            await asyncio.sleep(min(-wait_us, 1_000_000) / 1_000_000)

    async def pause(self, seconds: float, *, reason: str) -> None:
        """Every instance holds its calls for `seconds` (a 429/503 Retry-After: `reason` is
        the status; or `remaining_floor`), counted when it starts or extends the pause."""
        if seconds > 0 and await self._pause(keys=self._keys, args=[int(seconds * 1000)]):
            GOVERNOR_PAUSES.labels(reason).inc()

    async def observe(self, remaining: int | None, reset_at: float | None) -> None:
        """Slow before the wall: at the floor of the window's budget, wait for its reset."""
        if remaining is None or reset_at is None or remaining > self._config.remaining_floor:
            return
        await self.pause(reset_at - time.time(), reason="remaining_floor")

    async def paused_for(self) -> float:
        """Seconds left of the cluster-wide pause (0 when none)."""
        return max(0, int(await self._redis.pttl(self._keys[1]))) / 1000
