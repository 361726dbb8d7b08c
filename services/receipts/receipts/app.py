"""The receipts service: Siteti's delivery webhooks into the audit trail, and the trail read back.

A webhook is acknowledged only after its audit row (and the row's outbox copy) has committed,
so an answer of 200 means stored; everything else makes Siteti retry, and the event id makes
the retry harmless.

Reading needs `Authorization: Bearer <token>` with a role (bridge.access): `GET /audit/{ref}`
is for `support` and `engineering`, `GET /audit/stats` (counts, no references) for every role.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer

from bridge import audit, problems
from bridge.access import EVERYONE, INVESTIGATORS, Refusal, Role, Tokens, refusal
from bridge.config import Settings
from bridge.correlation import TraceContextMiddleware
from bridge.db import connect
from bridge.edge import (
    BodyTooLarge,
    ProblemResponse,
    Readiness,
    add_probes,
    add_problem_handlers,
    problem_response,
    read_limited_body,
)
from bridge.failure_codes import DEFAULT_POLICY, FailurePolicy
from bridge.inbound import MAX_REFERENCE_LENGTH
from bridge.kafka import DurableProducer, client_options
from bridge.logs import get_logger
from bridge.metrics import DEAD_LETTERS, RECEIPTS
from bridge.protect import data_keys
from bridge.retry import OUTAGE_BACKOFF
from bridge.signing import SignatureError, verify_siteti_webhook

from . import outcomes
from .correlation import correlate
from .delivery import note_delivery
from .openapi import STATS_RESPONSES, TRAIL_RESPONSES, WEBHOOK_OPENAPI, WEBHOOK_RESPONSES
from .status import summarize_history
from .topics import OutboxRecord, queue, records
from .webhooks import (
    STAGE_BY_TYPE,
    Receipt,
    UnknownType,
    WebhookError,
    parse_webhook,
    storable,
)

log = get_logger(__name__)

# Longer than this and Siteti's own request has likely timed out: give up and let it retry.
DB_TIMEOUT_SECONDS = 10.0
READY_TIMEOUT_SECONDS = 2.0
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# PostgreSQL refusing a value (not being unavailable): the request's fault, never a 503. The
# parser already refuses what these would catch; they are the net under it.
_VALUE_ERRORS = (asyncpg.DataError, asyncpg.ProgramLimitExceededError)

DISABLED = "audit API disabled: set API_TOKENS"
MAX_STATS_HOURS = 24 * 366
# Declares the scheme in the OpenAPI document; the header is checked by `refusal`.
_BEARER = HTTPBearer(auto_error=False, description="a token from API_TOKENS (role:token)")


class Refused(Exception):
    def __init__(self, refused: Refusal) -> None:
        super().__init__(refused.message)
        self.refusal = refused


def _caller(tokens: Tokens, allowed: frozenset[Role]) -> Any:
    """A dependency refusing callers whose token's role is not in `allowed`. Dependencies run
    before parameters are validated: an unauthenticated caller learns nothing about them."""

    def check(request: Request, _: Annotated[Any, Depends(_BEARER)]) -> None:
        refused = refusal(tokens, request.headers.get("authorization"), allowed, DISABLED)
        if refused is not None:
            raise Refused(refused)

    return Depends(check)


def stage_counts(rows: list[Any], hours: int, since: str) -> dict[str, Any]:
    """GET /audit/stats's body from (stage, events, transactions) rows, stages in their
    natural order."""
    ordered = sorted(rows, key=lambda r: audit.STAGE_RANK.get(r["stage"], len(audit.STAGES)))
    return {
        "window_hours": hours,
        "since": since,
        "events": sum(r["events"] for r in rows),
        "stages": {
            r["stage"]: {"events": r["events"], "transactions": r["transactions"]} for r in ordered
        },
    }


class Runtime:
    """The process's connections, set by the lifespan; requests only run once it has."""

    def __init__(self) -> None:
        self._pool: asyncpg.Pool | None = None
        self.producer: DurableProducer | None = None
        self.kafka_task: asyncio.Task[None] | None = None
        # Why the producer is not started yet, for /readyz.
        self.kafka_error = "producer not started"

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the receipts service has not started")
        return self._pool

    @pool.setter
    def pool(self, pool: asyncpg.Pool) -> None:
        self._pool = pool


async def _start_producer(
    runtime: Runtime, bootstrap_servers: str, options: dict[str, Any]
) -> DurableProducer:
    """Start a producer, retrying on `OUTAGE_BACKOFF`: webhooks are stored while Kafka is
    away, and the outbox holds their audit records until it is back."""
    producer = DurableProducer(bootstrap_servers, options)
    failures = 0
    while True:
        try:
            await producer.start()
            return producer
        except asyncio.CancelledError:
            await producer.stop()
            raise
        except Exception as exc:  # any failure, even a missing codec, is retried and reported
            runtime.kafka_error = repr(exc)
            delay = OUTAGE_BACKOFF.delay(failures)
            failures += 1
            log.warning("kafka_unavailable", error=repr(exc), retry_in_seconds=round(delay, 3))
            await asyncio.sleep(delay)


async def _relay(runtime: Runtime, bootstrap_servers: str, options: dict[str, Any]) -> None:
    runtime.producer = await _start_producer(runtime, bootstrap_servers, options)
    await audit.OutboxRelay(runtime.pool, runtime.producer).run()


def _type_label(event_type: str | None) -> str:
    # Bounded label values: a type this version does not know is counted as "other".
    if event_type is None:
        return "unknown"
    return event_type if event_type in STAGE_BY_TYPE else "other"


def _answer(
    status: int, body: dict[str, Any], event_type: str | None, outcome: str
) -> JSONResponse:
    RECEIPTS.labels(_type_label(event_type), outcome).inc()
    answer = ProblemResponse if status >= 400 else JSONResponse
    return answer(body, status_code=status)


def _refuse(
    kind: problems.ProblemType, status: int, detail: str, event_type: str | None, outcome: str
) -> JSONResponse:
    return _answer(status, problems.problem(kind, status, detail), event_type, outcome)


async def _store(
    pool: asyncpg.Pool,
    receipt: Receipt,
    topic_records: Sequence[OutboxRecord] = (),
    policy: FailurePolicy = DEFAULT_POLICY,
) -> bool:
    """Store a receipt once; False when its event id was already stored (a redelivery).
    `topic_records` (receipts.topics: replies, conversation states) join its outbox row; the
    message's delivery state and a failure's action (receipts.outcomes, by `policy`) are in
    the same transaction."""
    async with asyncio.timeout(DB_TIMEOUT_SECONDS):
        async with pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                "INSERT INTO siteti_webhook_events (event_id, type, reference)"
                " VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING RETURNING true",
                receipt.event_id,
                receipt.type,
                receipt.reference,
            )
            if not inserted:
                return False
            effect = await outcomes.apply(conn, receipt, policy)
            await audit.record(
                conn,
                reference=receipt.reference,
                stage=receipt.stage,
                source="receipts",
                occurred_at=receipt.occurred_at,
                detail={**receipt.detail, **effect.audit},
            )
            await queue(conn, topic_records)
    note_delivery(receipt, effect)
    if effect.dead_letter_reason:
        DEAD_LETTERS.labels(effect.dead_letter_reason).inc()
    return True


def create_app(settings: Settings) -> FastAPI:
    runtime = Runtime()
    kafka_options = client_options(settings)  # bad Kafka security settings stop the start

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime.pool = await connect(settings.database_url)
        runtime.kafka_task = asyncio.create_task(
            _relay(runtime, settings.kafka_bootstrap_servers, kafka_options),
            name="receipts-outbox-relay",
        )
        try:
            yield
        finally:
            runtime.kafka_task.cancel()
            with suppress(asyncio.CancelledError):
                await runtime.kafka_task
            if runtime.producer is not None:
                await runtime.producer.stop()
            await runtime.pool.close()

    app = FastAPI(title="siteti-bridge receipts", lifespan=lifespan)
    # Siteti's traceparent when it sends one; else `correlate` finds the trace by reference.
    app.add_middleware(TraceContextMiddleware, start=False)
    app.state.runtime = runtime
    tokens = Tokens.from_settings(settings)
    # Replies' numbers are sealed and hashed (receipts.topics): no keys, no start.
    keys, region = data_keys(settings), settings.default_country
    failure_policy = FailurePolicy.parse(  # a bad WHATSAPP_FAILURE_ACTIONS stops the start
        settings.whatsapp_failure_actions,
        settings.whatsapp_retry_base_seconds,
        settings.whatsapp_max_resends,
    )

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        answer = exc.refusal
        return ProblemResponse(answer.body, status_code=answer.status, headers=answer.headers)

    @app.post("/siteti/webhooks", openapi_extra=WEBHOOK_OPENAPI, responses=WEBHOOK_RESPONSES)
    async def siteti_webhook(request: Request) -> JSONResponse:
        try:
            body = await read_limited_body(request, settings.max_body_bytes)
        except BodyTooLarge:
            limit = settings.max_body_bytes
            message = f"body is larger than {limit} bytes"
            return _refuse(problems.TOO_LARGE, 413, message, None, "too_large")
        try:
            verify_siteti_webhook(
                request.headers.get("x-siteti-signature"), body, settings.siteti_webhook_secrets
            )
        except SignatureError as exc:
            log.warning(
                "siteti_webhook_rejected",
                category="security",
                reason=str(exc),
                client_ip=request.client.host if request.client else None,
            )
            return _refuse(problems.BAD_SIGNATURE, 401, str(exc), None, "rejected")
        try:
            receipt = parse_webhook(body)
        except UnknownType as exc:
            # Acknowledged so Siteti stops retrying an event this version cannot use.
            log.info("siteti_webhook_ignored", reason=str(exc))
            return _answer(200, {"status": "ignored"}, "other", "ignored")
        except WebhookError as exc:
            log.warning("siteti_webhook_invalid", status=exc.status, reason=str(exc))
            kind = problems.UNUSABLE_PAYLOAD if exc.status == 422 else problems.INVALID_REQUEST
            return _refuse(kind, exc.status, str(exc), None, "invalid")
        await correlate(runtime.pool, receipt)
        header_id = request.headers.get("x-siteti-event-id")
        if header_id and header_id != receipt.event_id:
            # Not an error (the header is unsigned and ignored), but worth seeing if it recurs.
            log.info(
                "siteti_webhook_header_id_differs", event_id=receipt.event_id, header=header_id[:80]
            )
        try:
            stored = await _store(
                runtime.pool, receipt, records(receipt, keys, region), failure_policy
            )
        except _VALUE_ERRORS as exc:
            log.warning("siteti_webhook_unstorable", event_id=receipt.event_id, error=repr(exc))
            message = "the webhook holds a value that cannot be stored"
            return _refuse(problems.UNUSABLE_PAYLOAD, 422, message, receipt.type, "invalid")
        except outcomes.NotRecordedYet as exc:
            log.info("siteti_webhook_deferred", event_id=receipt.event_id, reason=str(exc))
            message = "the message's send is not recorded yet, retry"
            return _refuse(problems.UNAVAILABLE, 503, message, receipt.type, "deferred")
        except _DB_ERRORS as exc:
            log.error("siteti_webhook_store_failed", event_id=receipt.event_id, error=repr(exc))
            message = "storage unavailable, retry"
            return _refuse(problems.UNAVAILABLE, 503, message, receipt.type, "error")
        if not stored:
            return _answer(200, {"status": "duplicate"}, receipt.type, "duplicate")
        log.info(
            "siteti_webhook_stored",
            event_id=receipt.event_id,
            type=receipt.type,
            reference=receipt.reference,
        )
        return _answer(200, {"status": "stored"}, receipt.type, "stored")

    # Before /audit/{reference:path}, which would take "stats" as a reference.
    @app.get("/audit/stats", dependencies=[_caller(tokens, EVERYONE)], responses=STATS_RESPONSES)
    async def audit_stats(
        hours: int = Query(24, ge=1, le=MAX_STATS_HOURS, description="the window, back from now"),
    ) -> JSONResponse:
        try:
            async with asyncio.timeout(DB_TIMEOUT_SECONDS):
                since = await runtime.pool.fetchval(
                    "SELECT now() - make_interval(hours => $1)", hours
                )
                rows = await runtime.pool.fetch(
                    "SELECT stage, count(*) AS events, count(DISTINCT reference) AS transactions"
                    " FROM audit_log WHERE occurred_at >= $1 GROUP BY stage",
                    since,
                )
        except _DB_ERRORS as exc:
            log.error("audit_stats_failed", error=repr(exc))
            return problem_response(problems.UNAVAILABLE, 503, "storage unavailable")
        return JSONResponse(stage_counts(rows, hours, since.isoformat()))

    @app.get(
        "/audit/{reference:path}",
        dependencies=[_caller(tokens, INVESTIGATORS)],
        responses=TRAIL_RESPONSES,
    )
    async def audit_trail(reference: str) -> JSONResponse:
        if not storable(reference, MAX_REFERENCE_LENGTH):
            # Nothing stored can have this reference; not echoed, as it may not even encode.
            return problem_response(problems.NOT_FOUND, 404, "no audit record for that reference")
        not_found = problem_response(problems.NOT_FOUND, 404, f"no audit record for {reference}")
        try:
            entries = await audit.history(runtime.pool, reference)
        except _VALUE_ERRORS:
            return not_found
        except _DB_ERRORS as exc:
            log.error("audit_read_failed", error=repr(exc))
            return problem_response(problems.UNAVAILABLE, 503, "storage unavailable")
        if not entries:
            return not_found
        events = audit.as_json(entries)
        status = summarize_history(entries)
        return JSONResponse({"reference": reference, "status": status, "events": events})

    async def ready() -> Readiness:
        failed: dict[str, str] = {}
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                await runtime.pool.fetchval("SELECT 1")
        except (*_DB_ERRORS, RuntimeError) as exc:
            failed["postgres"] = repr(exc)
        if runtime.producer is None:
            failed["kafka"] = runtime.kafka_error
        if failed:
            return Readiness(False, {"status": "unavailable", "failed": failed})
        return Readiness(True, {"status": "ready"})

    add_probes(app, ready)
    add_problem_handlers(app)

    return app
