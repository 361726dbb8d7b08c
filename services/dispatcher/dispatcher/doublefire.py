"""Provider double-fires: one payment announced twice, under two transaction references.

The dedupe key (`<provider>:<reference>:<type>`) absorbs a provider's re-sent webhook, but
some providers fire a second, distinct event (another reference, another id) for the same
money. The integration guide's rule, `is_double_fire`: the same provider, event type,
customer and amount (and currency), different event ids, and provider timestamps within
`DOUBLE_FIRE_WINDOW_SECONDS` of each other (0 turns the check off).

Every new event is remembered in Redis under that fingerprint (the customer as its keyed
hash: nothing in clear), in one atomic step that also reads the ones remembered before it, so
across instances exactly the later of two fires is the suspect, however often either is
handled again. The suspect is not sent:
the pipeline dead-letters it for review (`suspected_double_fire`), and an operator who finds
a genuine second payment retries it, which sends it (retries skip this check).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import orjson
from redis.asyncio import Redis

from bridge.audit import record_now
from bridge.events import CanonicalEvent, stable_key
from bridge.logs import get_logger
from bridge.metrics import DOUBLE_FIRES

log = get_logger("dispatcher.doublefire")

# How long an event is remembered: a provider's late retries of either fire come within
# hours (Moniepoint retries for about two), well inside a day.
MEMORY_SECONDS = 24 * 3600

STAGE = "double_fire_suspected"


# --- the rule (pure) ------------------------------------------------------------------------


@dataclass(frozen=True)
class Fire:
    """What the rule compares of one event, besides its fingerprint."""

    event_id: str
    reference: str
    at: float  # the provider's time of the transaction (epoch seconds), else the edge's


def fire_of(event: CanonicalEvent) -> Fire:
    when = event.data.occurred_at or event.time
    return Fire(event.id, event.reference, when.timestamp())


def fingerprint(event: CanonicalEvent, customer_hash: str) -> str:
    """Events that may be fires of one transaction share this: same provider, type,
    customer (its keyed hash) and amount; 5000, 5000.0 and 5000.00 are one amount."""
    data = event.data
    amount = format(data.amount.normalize(), "f")
    return stable_key(data.provider, event.type, customer_hash, amount, data.currency)


def is_double_fire(first: Fire, second: Fire, window_seconds: float) -> bool:
    """Two fires of one fingerprint are one transaction fired twice: distinct events whose
    provider times are at most the window apart."""
    return (
        window_seconds > 0
        and first.event_id != second.event_id
        and abs(first.at - second.at) <= window_seconds
    )


def earlier_fire(seen: Iterable[Fire], fire: Fire, window_seconds: float) -> Fire | None:
    """The remembered fire that `fire` repeats (the nearest in time), or None."""
    matches = [f for f in seen if is_double_fire(f, fire, window_seconds)]
    return min(matches, key=lambda f: (abs(f.at - fire.at), f.at), default=None)


# --- the memory (Redis) ---------------------------------------------------------------------

# KEYS: the fingerprint's memory (a hash: event id → "<µs first remembered> <fire>").
# ARGV: event id, fire, ttl seconds. Remembers the event (once: a retry of it keeps its first
# time) and returns the whole memory, in one step.
_REMEMBER = """
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
redis.call('HSETNX', KEYS[1], ARGV[1], now .. ' ' .. ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return redis.call('HGETALL', KEYS[1])
"""


def _before(pairs: Sequence[bytes], event_id: str) -> list[Fire]:
    """The fires remembered before `event_id` was: an event handled again (after an outage)
    is never taken for a repeat of one that came after it."""
    remembered: dict[str, tuple[tuple[int, str], Fire]] = {}
    for key, value in zip(pairs[::2], pairs[1::2], strict=True):
        remembered_id = key.decode()
        when, _, fire = value.partition(b" ")
        stored = orjson.loads(fire)
        order = (int(when), remembered_id)  # the id breaks a tie of one microsecond
        remembered[remembered_id] = (
            order,
            Fire(remembered_id, str(stored["reference"]), float(stored["at"])),
        )
    mine = remembered[event_id][0]
    return [fire for order, fire in remembered.values() if order < mine]


class DoubleFires:
    def __init__(self, redis: Redis, *, window_seconds: float, prefix: str = "bridge:fires"):
        self.window_seconds = window_seconds
        self._prefix = prefix
        self._remember = redis.register_script(_REMEMBER)

    async def first_of(self, event: CanonicalEvent, customer_hash: str) -> Fire | None:
        """Remember `event`; the earlier event it is a second fire of, or None."""
        if self.window_seconds <= 0:
            return None
        fire = fire_of(event)
        value = orjson.dumps({"reference": fire.reference, "at": fire.at})
        seen = await self._remember(
            keys=[f"{self._prefix}:{fingerprint(event, customer_hash)}"],
            args=[fire.event_id, value, MEMORY_SECONDS],
        )
        return earlier_fire(_before(seen, fire.event_id), fire, self.window_seconds)

    async def check(
        self, pool: asyncpg.Pool, event: CanonicalEvent, customer_hash: str
    ) -> Fire | None:
        """`first_of`; a suspect is also told in the audit story (stage `double_fire_suspected`,
        with the first event's id and reference) before the pipeline dead-letters it."""
        first = await self.first_of(event, customer_hash)
        if first is None:
            return None
        apart = round(abs(fire_of(event).at - first.at), 3)
        await record_now(
            pool,
            reference=event.reference,
            stage=STAGE,
            source="dispatcher",
            occurred_at=datetime.now(UTC),
            customer_hash=customer_hash,
            detail={
                "type": event.type,
                "event_id": event.id,
                "first_event_id": first.event_id,
                "first_reference": first.reference,
                "seconds_apart": apart,
                "window_seconds": self.window_seconds,
            },
        )
        DOUBLE_FIRES.labels(event.data.provider).inc()
        log.warning(
            "double_fire_suspected",
            reference=event.reference,
            first_reference=first.reference,
            seconds_apart=apart,
        )
        return first
