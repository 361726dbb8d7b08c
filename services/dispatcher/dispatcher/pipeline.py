"""What happens to one canonical event: dedupe, look-up, contact, template, send, record.

Every path ends in exactly one of: sent, duplicate, or a dead-letter entry. Nothing raises
out of `handle` for a business reason, so the caller can always ack the Kafka record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg

from bridge.audit import record_now
from bridge.correlation import current_trace_id
from bridge.events import CanonicalEvent, stable_key
from bridge.logs import get_logger
from bridge.metrics import EVENT_TO_SEND, EVENTS_PROCESSED, MESSAGES_SENT
from bridge.retry import RetryPolicy

from . import dlq
from .confirmation import candidate_number
from .confirmation_requests import ask_to_confirm
from .customers import CustomerRecord
from .dedupe import Dedupe
from .directory import Directory
from .doublefire import DoubleFires
from .outcomes import (
    UNPROCESSABLE,
    DeadLettered,
    Duplicate,
    Failure,
    MissingContact,
    NoRule,
    Outcome,
    Sent,
    SuspectedDoubleFire,
    Unprocessable,
    dead_letter_for,
)
from .pacing import Pacer, paced
from .rules import Choice, MissingVariable, NoRuleMatched, RuleSet, choose
from .sent import held_for_review, record_dispatched
from .siteti import SitetiClient, SitetiError

log = get_logger("dispatcher")
T = TypeVar("T")

# How long to wait for another instance that holds an event's lease before looking again.
_BUSY_POLL_SECONDS = 0.5


def trigger_key(dedupe_key: str, generation: int = 0) -> str:
    """The Idempotency-Key of an event's trigger: stable per event and key generation."""
    key = stable_key("trigger", dedupe_key)
    return key if generation <= 0 else stable_key(key, f"g{generation}")


@dataclass
class Dispatcher:
    pool: asyncpg.Pool
    directory: Directory
    rules: RuleSet
    siteti: SitetiClient
    dedupe: Dedupe
    policy: RetryPolicy
    instance_id: str
    missing_contact_wait_seconds: float = 5.0
    # Bumped by the dead-letter store when Siteti definitely refused a trigger (its stored
    # answer for the old key would be replayed for 24 h); 0 is the event's own key.
    key_generation: int = 0
    # Issue 12: per-number pacing and the double-fire check; None = off (tests that build
    # the pipeline by hand). build_dispatcher sets both from the settings.
    pacer: Pacer | None = None
    double_fires: DoubleFires | None = None
    # An operator's retry of an entry about a flagged number (dispatcher.sent): lift the flag.
    lift_flag: bool = False
    # How long an event waits for its customer to confirm a candidate number (confirmation.py).
    number_confirmation_timeout: float = 86400.0

    async def handle(self, event: CanonicalEvent) -> Outcome:
        """Process one event from the events topic."""
        while True:
            state = await self.dedupe.reserve(event.dedupe_key, self.instance_id)
            if state != "busy":
                break
            # Another instance is on it (or died holding it): wait for the lease to settle.
            await asyncio.sleep(_BUSY_POLL_SECONDS)
        if state in ("done", "parked"):
            EVENTS_PROCESSED.labels(event.type, "duplicate").inc()
            log.info("duplicate_skipped", reference=event.reference, type=event.type, state=state)
            return Duplicate(state)
        await record_now(
            self.pool,
            reference=event.reference,
            stage="received",
            source="dispatcher",
            occurred_at=event.time,
            customer_hash=self.directory.customer_hash(event),
            detail={
                "type": event.type,
                "event_id": event.id,
                "amount": str(event.data.amount),
                # What receipts joins Siteti's webhooks (which carry no trace) to.
                "trace_id": current_trace_id(),
            },
        )
        # A provider's second event for the same money is held for review (doublefire.py);
        # retries come through `deliver` and skip this.
        if self.double_fires is not None:
            first = await self.double_fires.check(
                self.pool, event, self.directory.customer_hash(event)
            )
            if first is not None:
                return await self._failed(
                    event, SuspectedDoubleFire(first.event_id, first.reference)
                )
        return await self.deliver(event)

    async def deliver(self, event: CanonicalEvent) -> Sent | DeadLettered:
        """Send the event's message; the caller holds its dedupe lease, which is kept alive
        here for as long as it takes (governor queue, retries)."""
        async with self.dedupe.held(event.dedupe_key, self.instance_id):
            return await self._deliver(event)

    async def _deliver(self, event: CanonicalEvent) -> Sent | DeadLettered:
        customer = await self._find_customer(event)
        candidate = candidate_number(
            customer, lambda: self.directory.supplied_phone(event.data.customer)
        )
        if customer is not None and candidate is not None:
            # Nothing goes to a number its customer has not confirmed: ask it (confirmation.py).
            return await ask_to_confirm(
                self, event, customer, candidate, self._with_retries, self._failed
            )
        if customer is None or customer.phone is None:
            return await self._failed(event, MissingContact(customer_found=customer is not None))
        phone_index = self.directory.phone_index(customer.phone)
        held = await held_for_review(self.pool, phone_index, lift=self.lift_flag)
        if held is not None:
            return await self._dead_letter(event, held)
        try:
            choice = choose(self.rules, event, customer)
        except (NoRuleMatched, MissingVariable) as exc:
            return await self._failed(event, NoRule(str(exc)))

        try:
            contact_id = customer.contact_id or await self._upsert_contact(event, customer)
            # One number's messages stay PAIR_MIN_INTERVAL_SECONDS apart (pacing.py).
            async with paced(self.pacer, customer.phone):
                answer = await self._with_retries(
                    event,
                    lambda: self.siteti.trigger_template(
                        choice.template_id,
                        to=customer.phone or "",
                        contact_id=contact_id,
                        variables=choice.variables,
                        reference=event.reference,
                        idempotency_key=trigger_key(event.dedupe_key, self.key_generation),
                        priority=event.priority,
                    ),
                )
        except SitetiError as exc:
            return await self._failed(event, exc, template_id=choice.template_id)

        # Audited before the dedupe key says "done": if PostgreSQL fails in between, the
        # retry sends again under the same Idempotency-Key (a replay) and records it then.
        await self._record_sent(
            event, choice, answer.status, answer.body, answer.replayed, phone_index
        )
        await self.dedupe.confirm(event.dedupe_key)
        EVENT_TO_SEND.observe(max(0.0, time.time() - event.time.timestamp()))
        EVENTS_PROCESSED.labels(event.type, "sent").inc()
        MESSAGES_SENT.labels(event.type).inc()
        message_id = answer.body.get("message_id")
        sent = Sent(message_id if isinstance(message_id, str) else None, answer.replayed)
        log.info(
            "message_dispatched",
            reference=event.reference,
            type=event.type,
            template=choice.template_id,
            message_id=sent.message_id,
            replayed=sent.replayed,
        )
        return sent

    async def _find_customer(self, event: CanonicalEvent) -> CustomerRecord | None:
        # The directory may be a moment behind the payment: look again for a few seconds.
        deadline = time.monotonic() + self.missing_contact_wait_seconds
        while True:
            customer = await self.directory.find(event.data.customer)
            if (customer is not None and customer.phone) or time.monotonic() >= deadline:
                return customer
            await asyncio.sleep(0.5)

    async def _upsert_contact(self, event: CanonicalEvent, customer: CustomerRecord) -> str:
        attributes = {"tier": customer.tier}
        if customer.account_number:
            attributes["account_number"] = customer.account_number
        contact_id = await self._with_retries(
            event,
            lambda: self.siteti.upsert_contact(
                customer.phone or "",
                customer.name,
                attributes,
                stable_key("contact", customer.phone or "", customer.name or "", customer.tier),
                event.priority,
            ),
        )
        await self.directory.remember_contact(customer, contact_id)
        return contact_id

    async def _with_retries(self, event: CanonicalEvent, call: Callable[[], Awaitable[T]]) -> T:
        retry = 0
        while True:
            try:
                return await call()
            except SitetiError as exc:
                if not exc.transient or retry >= self.policy.max_retries:
                    raise
                delay = max(self.policy.delay(retry), exc.retry_after or 0.0)
                log.warning(
                    "siteti_retry",
                    reference=event.reference,
                    retry=retry + 1,
                    delay=round(delay, 3),
                    error=str(exc),
                )
                await asyncio.sleep(delay)
                retry += 1

    async def _failed(
        self, event: CanonicalEvent, failure: Failure, *, template_id: str | None = None
    ) -> DeadLettered:
        return await self._dead_letter(
            event, dead_letter_for(failure, policy=self.policy, template_id=template_id)
        )

    async def _dead_letter(self, event: CanonicalEvent, dead: DeadLettered) -> DeadLettered:
        """Store the entry, then park the event: copies read later are duplicates."""
        entry_id = await dlq.put(self.pool, event, dead, self.directory.customer_hash(event))
        await self.dedupe.park(event.dedupe_key, self.instance_id)
        EVENTS_PROCESSED.labels(event.type, "dead_lettered").inc()
        log.warning(
            "dead_lettered",
            reference=event.reference,
            reason=dead.reason,
            status=dead.status,
            id=entry_id,
        )
        return dead

    async def give_up(self, event: CanonicalEvent, error: str) -> DeadLettered:
        """Dead-letter an event that failed the same way every attempt (`unprocessable`)."""
        return await self._failed(event, Unprocessable(error))

    async def give_up_record(self, record: dlq.RecordPosition, error: str) -> None:
        """Dead-letter a record that is not a canonical event (an older or foreign producer's)."""
        entry_id = await dlq.put_record(self.pool, record, error)
        EVENTS_PROCESSED.labels("invalid", "dead_lettered").inc()
        log.error(
            "dead_lettered",
            reason=UNPROCESSABLE,
            id=entry_id,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error=error[:500],
        )

    async def _record_sent(
        self,
        event: CanonicalEvent,
        choice: Choice,
        status: int,
        body: dict[str, object],
        replayed: bool,
        phone_index: str,
    ) -> None:
        await record_dispatched(
            self.pool,
            event,
            customer_hash=self.directory.customer_hash(event),
            phone_index=phone_index,
            template_id=choice.template_id,
            key_generation=self.key_generation,
            detail={
                "type": event.type,
                "rule": choice.rule,
                "template": choice.template_id,
                "siteti_status": status,
                "message_id": body.get("message_id"),
                "replayed": replayed,
            },
        )
