"""Retrying dead-lettered events: one entry (`retry_entry`), a list of ids (`retry_ids`, for
`bridge dlq retry` and the admin API), and the background `Retrier`.

A retry goes through the same `Dispatcher.deliver` as a fresh event, under the event's dedupe
lease (taken back from "parked"), with the same Idempotency-Key: if Siteti accepted the
message before, it answers a replay and sends nothing new. Only after Siteti definitely
refused the trigger call (template not approved or not found: nothing sent) does a retry use
the key's next generation, since Siteti would otherwise replay that refusal for 24 h.

Entries are claimed (`dlq.claim`/`dlq.claim_due`, SKIP LOCKED) before any work, so across
every instance only one worker retries an entry at a time.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Literal

import asyncpg
from pydantic import ValidationError

from bridge.correlation import correlated
from bridge.events import CanonicalEvent
from bridge.logs import get_logger
from bridge.retry import RetryPolicy
from bridge.tracing import continue_trace

from . import dlq
from .erasure_contacts import retry_pending
from .failures import is_dependency_outage
from .outcomes import (
    MISSING_CONTACT,
    NUMBER_FLAGGED,
    WHATSAPP_REASONS,
    Sent,
    TemplateRejected,
    dead_letter_for,
)
from .pipeline import Dispatcher
from .siteti import SitetiError

log = get_logger("dispatcher.recovery")

RetryKind = Literal[
    "sent",
    "already_sent",  # the dedupe store says it went out: marked completed
    "busy",  # another worker holds the event (or the entry): nothing done
    "unknown",  # no such entry
    "not_retryable",  # detail: the entry's status (processing, completed…), or why not
    "dead_lettered",  # failed again, rescheduled or back in manual review; detail: reason
    "gave_up",  # failed again, retries used up → failed; detail: reason
]


@dataclass(frozen=True)
class RetryOutcome:
    """What one retry did. `label` is its name in reports and the admin API's JSON."""

    kind: RetryKind
    detail: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.detail}" if self.detail else self.kind


SENT = RetryOutcome("sent")
ALREADY_SENT = RetryOutcome("already_sent")
BUSY = RetryOutcome("busy")
UNKNOWN = RetryOutcome("unknown")
NOT_AN_EVENT = RetryOutcome("not_retryable", "not_a_canonical_event")  # a raw record


def for_entry(dispatcher: Dispatcher, entry: dlq.Entry) -> Dispatcher:
    """The dispatcher a retry of `entry` uses: its trigger calls carry the entry's key; an
    operator's retry of an entry about a flagged number (or one WhatsApp refused, taken from
    manual review) lifts the number's flag."""
    lift = entry.reason == NUMBER_FLAGGED or (
        entry.reason in WHATSAPP_REASONS and entry.claimed_from == "manual_review"
    )
    if entry.key_generation <= 0 and not lift:
        return dispatcher
    return replace(dispatcher, key_generation=entry.key_generation, lift_flag=lift)


def with_owner(dispatcher: Dispatcher, suffix: str) -> Dispatcher:
    """The same pipeline and connections under its own lease owner, so that a retry never
    shares a dedupe lease with the agent's lanes in the same process."""
    return replace(dispatcher, instance_id=f"{dispatcher.instance_id}-{suffix}")


# --- one retry --------------------------------------------------------------------------


def _correlation(entry: dlq.Entry) -> AbstractContextManager[object]:
    """A retry continues the trace the event came with (its stored `traceparent`), with its
    id and reference on every line."""
    payload = entry.payload
    traceparent, event_id = payload.get("traceparent"), payload.get("id")
    return correlated(
        continue_trace(traceparent if isinstance(traceparent, str) else None),
        event_id=event_id if isinstance(event_id, str) else None,
        reference=entry.reference,
    )


async def retry_entry(
    dispatcher: Dispatcher,
    entry: dlq.Entry,
    *,
    by: str = "retrier",
    policy: RetryPolicy = dlq.DLQ_RETRY_POLICY,
    max_retries: int | None = None,
) -> RetryOutcome:
    """Retry a claimed entry (status `processing`, from `dlq.claim`/`dlq.claim_due`).

    Returns sent, already_sent, busy, dead_lettered (the pipeline stored the entry again:
    pending with the next attempt after the backoff, or manual review) or gave_up
    (`max_retries` used up → failed). Audited as stage `retried`.
    """
    if entry.status != "processing":
        raise ValueError(f"entry {entry.id} is {entry.status}: claim it before retrying")
    with _correlation(entry):
        pool = dispatcher.pool
        owner = dispatcher.instance_id
        try:
            event = CanonicalEvent.model_validate(entry.payload)
        except ValidationError:
            # An unprocessable record kept raw (not a canonical event): nothing to send again;
            # a person closes it, or republishes a corrected event.
            await dlq.release(pool, entry)
            log.info(
                "dlq_retry", id=entry.id, reference=entry.reference, outcome=NOT_AN_EVENT.label
            )
            return NOT_AN_EVENT

        # An entry receipts wrote (WhatsApp refused a message Siteti accepted) finds its
        # event "done": sending again is the point; the entry's new key generation makes it
        # a new message rather than Siteti's replay of the refused one.
        sent = entry.reason in WHATSAPP_REASONS
        if not await dispatcher.dedupe.take_parked(entry.dedupe_key, owner, sent=sent):
            state = await dispatcher.dedupe.reserve(entry.dedupe_key, owner)
            if state == "done":
                # Sent by an earlier attempt whose outcome was never written here.
                done = await dlq.mark(pool, entry.id, "completed")
                await dlq.record_retry(pool, done or entry, ALREADY_SENT.label, by)
                log.info(
                    "dlq_retry", id=entry.id, reference=entry.reference, outcome=ALREADY_SENT.label
                )
                return ALREADY_SENT
            if state != "reserved":
                await dlq.release(pool, entry)
                log.info("dlq_retry", id=entry.id, reference=entry.reference, outcome=BUSY.label)
                return BUSY

        try:
            delivered = await for_entry(dispatcher, entry).deliver(event)
        except BaseException:
            # Infrastructure failure or cancellation: hand the entry and the event back untouched.
            # (An entry left `processing` by a crash is recovered by `Retrier` after a while.)
            try:
                await asyncio.shield(dlq.release(pool, entry))
                await asyncio.shield(dispatcher.dedupe.park(entry.dedupe_key, owner))
            except Exception as exc:
                log.warning("dlq_release_failed", id=entry.id, error=repr(exc))
            raise

        if isinstance(delivered, Sent):
            outcome = SENT
            updated = await dlq.mark(
                pool, entry.id, "completed", retried=True, only_from="processing"
            )
            # None: WhatsApp refused the new message already, and receipts stored that.
            updated = updated or await dlq.get_entry(pool, entry.id)
        else:
            # `deliver` stored its new decision; the retry's bookkeeping goes on top of it.
            after = dlq.after_retry(
                entry,
                reason=delivered.reason,
                status=delivered.status,
                policy=policy,
                max_retries=max_retries,
            )
            updated = await dlq.settle_retry(pool, entry, after)
            kind: RetryKind = "gave_up" if after.status == "failed" else "dead_lettered"
            outcome = RetryOutcome(kind, delivered.reason)
        await dlq.record_retry(pool, updated or entry, outcome.label, by)
        log.info(
            "dlq_retry",
            id=entry.id,
            reference=entry.reference,
            outcome=outcome.label,
            status=updated.status if updated else None,
            retry_count=updated.retry_count if updated else None,
        )
        return outcome


@dataclass(frozen=True)
class RetryResult:
    id: int
    outcome: RetryOutcome
    entry: dlq.Entry | None = None  # as it is after the retry

    @property
    def ok(self) -> bool:
        """Sent now or before, or nothing to do (already completed)."""
        kind, detail = self.outcome.kind, self.outcome.detail
        return kind in ("sent", "already_sent") or (
            kind == "not_retryable" and detail == "completed"
        )

    def describe(self) -> str:
        entry = self.entry
        kind, detail = self.outcome.kind, self.outcome.detail
        if kind == "sent":
            return "sent; entry completed"
        if kind == "already_sent":
            return "had already been sent; entry completed"
        if kind == "unknown":
            return "no such entry"
        if kind == "busy":
            return "busy: another worker holds this event; try again shortly"
        if kind == "not_retryable":
            if detail == "completed":
                return "already completed; nothing sent"
            if self.outcome == NOT_AN_EVENT:
                return "not retried: the entry holds a raw record, not an event; close it"
            return f"not retried: the entry is {detail}"
        where = ""
        if entry is not None:
            where = f"; now {entry.status}"
            if entry.status == "pending" and entry.next_attempt_at is not None:
                where += f", next attempt {entry.next_attempt_at.isoformat(timespec='seconds')}"
            if entry.last_error:
                where += f" ({entry.last_error})"
        if kind == "gave_up":
            return f"failed again, retries used up ({detail}){where}"
        return f"failed again ({detail}){where}"


async def retry_id(
    dispatcher: Dispatcher,
    entry_id: int,
    *,
    by: str,
    policy: RetryPolicy = dlq.DLQ_RETRY_POLICY,
    max_retries: int | None = None,
) -> RetryResult:
    """Claim and retry one entry by id (an operator's retry: pending, manual_review or
    failed entries)."""
    entry = await dlq.claim(dispatcher.pool, entry_id)
    if entry is None:
        current = await dlq.get_entry(dispatcher.pool, entry_id)
        if current is None:
            return RetryResult(entry_id, UNKNOWN)
        outcome = (
            BUSY
            if current.status == "processing"
            else RetryOutcome("not_retryable", current.status)
        )
        return RetryResult(entry_id, outcome, current)
    outcome = await retry_entry(dispatcher, entry, by=by, policy=policy, max_retries=max_retries)
    return RetryResult(entry_id, outcome, await dlq.get_entry(dispatcher.pool, entry_id))


async def retry_ids(
    dispatcher: Dispatcher,
    ids: Iterable[int],
    *,
    by: str,
    concurrency: int = 4,
    on_result: Callable[[RetryResult], Awaitable[None] | None] | None = None,
) -> list[RetryResult]:
    """Retry each id (bounded concurrency); results in the order of `ids`."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(entry_id: int) -> RetryResult:
        async with gate:
            result = await retry_id(dispatcher, entry_id, by=by)
        if on_result is not None:
            maybe = on_result(result)
            if maybe is not None:
                await maybe
        return result

    return list(await asyncio.gather(*(one(i) for i in ids)))


# --- the background retrier -------------------------------------------------------------


@dataclass
class RoundReport:
    outcomes: Counter[str] = field(default_factory=Counter)
    results: list[tuple[int, str]] = field(default_factory=list)
    templates_checked: dict[str, str] = field(default_factory=dict)  # template → status
    recovered: int = 0

    def add(self, entry_id: int, outcome: str) -> None:
        self.outcomes[outcome] += 1
        self.results.append((entry_id, outcome))


class Retrier:
    """Every `interval_seconds`, across all instances (claims make each entry one worker's):

    1. entries left `processing` for `stale_after` by a dead worker go back to the queue;
    2. `template_not_approved` entries: one `template_status` call per awaited template;
       an APPROVED template's entries are retried, a REJECTED one's go to manual review
       (`template_rejected`);
    3. other due `pending` entries are retried (backoff `policy` between retries of one
       entry; after `max_retries` retries it is `failed`);
    4. `missing_contact` entries in manual review are retried once the customer directory
       has a number for the customer.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        interval_seconds: float = 60.0,
        batch_size: int = 50,
        max_retries: int = dlq.DLQ_RETRY_POLICY.max_retries,
        policy: RetryPolicy = dlq.DLQ_RETRY_POLICY,
        concurrency: int = 4,
        stale_after: timedelta = timedelta(minutes=15),
        providers: Sequence[str] | None = None,
    ) -> None:
        self.dispatcher = with_owner(dispatcher, "dlq")
        self.interval_seconds = interval_seconds
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.policy = policy
        self.concurrency = concurrency
        self.stale_after = stale_after
        self.providers = list(providers) if providers else None  # None: every provider
        self._contact_cursor = 0

    @property
    def pool(self) -> asyncpg.Pool:
        return self.dispatcher.pool

    async def run(self) -> None:
        """Forever: `interval_seconds` of sleep, then a round. Errors are logged, not raised."""
        while True:
            await asyncio.sleep(self.interval_seconds)
            try:
                report = await self.run_once()
                if report.results or report.recovered:
                    log.info(
                        "dlq_round",
                        outcomes=dict(report.outcomes),
                        templates=report.templates_checked,
                        recovered=report.recovered,
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("dlq_round_failed", error=repr(exc))

    async def run_once(self) -> RoundReport:
        report = RoundReport()
        stale = await dlq.recover_stale(self.pool, self.stale_after)
        report.recovered = len(stale)
        for entry in stale:
            log.warning("dlq_recovered_stale", id=entry.id, status=entry.status)
        await self._templates(report)
        await self._due(report)
        await self._contacts(report)
        await retry_pending(self.pool, self.dispatcher.siteti, policy=self.dispatcher.policy)
        return report

    async def _retry_all(self, entries: Sequence[dlq.Entry], report: RoundReport) -> None:
        gate = asyncio.Semaphore(max(1, self.concurrency))

        async def one(entry: dlq.Entry) -> None:
            async with gate:
                try:
                    outcome = await retry_entry(
                        self.dispatcher,
                        entry,
                        policy=self.policy,
                        max_retries=self.max_retries,
                    )
                except Exception as exc:
                    # One entry's failure never ends the round for the others; an entry
                    # left `processing` is recovered as stale later.
                    log.error(
                        "dlq_retry_error",
                        id=entry.id,
                        error=repr(exc),
                        outage=is_dependency_outage(exc),
                    )
                    report.add(entry.id, "error")
                    return
            report.add(entry.id, outcome.label)

        await asyncio.gather(*(one(e) for e in entries))

    async def _templates(self, report: RoundReport) -> None:
        awaited = await dlq.templates_awaited(self.pool, providers=self.providers)
        for template_id in awaited:
            try:
                status = await self.dispatcher.siteti.template_status(template_id)
            except SitetiError as exc:
                report.templates_checked[template_id] = f"error: {exc.code}"
                log.warning("dlq_template_status_failed", template=template_id, error=str(exc))
                continue
            report.templates_checked[template_id] = status
            if status == "REJECTED":
                await self._rejected(template_id, report)
            if status != "APPROVED":
                continue
            entries = await dlq.claim_due(
                self.pool,
                self.batch_size,
                providers=self.providers,
                template_id=template_id,
            )
            log.info("dlq_template_approved", template=template_id, entries=len(entries))
            await self._retry_all(entries, report)

    async def _rejected(self, template_id: str, report: RoundReport) -> None:
        """Waiting will not approve a rejected template: its entries go to manual review
        (`template_rejected`), audited as dead-lettered again."""
        entries = await dlq.claim_due(
            self.pool, self.batch_size, providers=self.providers, template_id=template_id
        )
        dead = dead_letter_for(
            TemplateRejected(template_id), policy=self.policy, template_id=template_id
        )
        for entry in entries:
            event = CanonicalEvent.model_validate(entry.payload)
            customer = self.dispatcher.directory.customer_hash(event)
            await dlq.put(self.pool, event, dead, customer)
            report.add(entry.id, dead.label)
        log.info("dlq_template_rejected", template=template_id, entries=len(entries))

    async def _due(self, report: RoundReport) -> None:
        entries = await dlq.claim_due(self.pool, self.batch_size, providers=self.providers)
        await self._retry_all(entries, report)

    async def _contacts(self, report: RoundReport) -> None:
        candidates = await dlq.waiting_for_contact(
            self.pool,
            after_id=self._contact_cursor,
            limit=self.batch_size,
            providers=self.providers,
        )
        # A rolling cursor: every entry gets looked at, however many wait.
        self._contact_cursor = candidates[-1].id if len(candidates) == self.batch_size else 0
        ready: list[dlq.Entry] = []
        for candidate in candidates:
            event = CanonicalEvent.model_validate(candidate.payload)
            customer = await self.dispatcher.directory.find(event.data.customer)
            if customer is None or not customer.phone:
                continue
            claimed = await dlq.claim(self.pool, candidate.id, ("manual_review",))
            if claimed is not None and claimed.reason == MISSING_CONTACT:
                ready.append(claimed)
            elif claimed is not None:
                await dlq.release(self.pool, claimed)
        await self._retry_all(ready, report)
