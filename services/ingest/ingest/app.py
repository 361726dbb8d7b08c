"""The ingest edge: verify on the raw body, normalise, answer 200 only once Kafka has it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.telemetry import TelemetryConfig

from bridge import problems
from bridge.config import Settings, get_settings
from bridge.correlation import (
    TraceContextMiddleware,
    correlated,
    current_span,
    kafka_headers,
    traced,
)
from bridge.edge import (
    BodyTooLarge,
    EdgeApp,
    Readiness,
    add_probes,
    add_problem_handlers,
    problem_response,
    read_limited_body,
)
from bridge.kafka import DurableProducer, client_options, publish
from bridge.logs import get_logger
from bridge.metrics import INGEST_LATENCY, WEBHOOKS_RECEIVED, observe_provider_delay
from bridge.protect import sealer
from bridge.signing import SignatureError
from bridge.tracing import new_trace

from .defences import ConcurrencyCap, EdgeDefences
from .providers import PROVIDERS
from .providers.base import (
    Configurable,
    Confirming,
    Handshake,
    Ignored,
    PayloadError,
    Provider,
    WebhookRequest,
)
from .providers.openapi import WEBHOOK_RESPONSES, webhook_openapi

log = get_logger("ingest")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # Numbers are sealed and Kafka keys hashed before anything leaves (bridge.protect); no
    # keys configured stops the start, saying what to set.
    seal = sealer(settings)

    secrets = {name: secrets_for(p, settings) for name, p in PROVIDERS.items()}
    # A provider that cannot work with its configuration stops the start, saying what to fix.
    for name, provider in PROVIDERS.items():
        if isinstance(provider, Configurable):
            provider.check_configuration(secrets[name])
    # Allowlists, trusted proxies and the rejection limit (checked here, like the above).
    defences = EdgeDefences.from_settings(settings, PROVIDERS)
    # Found once: a runtime-checked Protocol's isinstance costs more than a signature check.
    confirmers = {name: p for name, p in PROVIDERS.items() if isinstance(p, Confirming)}
    # The accepted outcome's metrics, bound once (a labels() look-up on each webhook is not free).
    accepted_metrics = {
        name: (WEBHOOKS_RECEIVED.labels(name, "accepted"), INGEST_LATENCY.labels(name))
        for name in PROVIDERS
    }
    kafka_options = client_options(settings)  # and the Kafka connection's security

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Lives through broker restarts: it starts again and replaces itself when it must.
        producer = DurableProducer(settings.kafka_bootstrap_servers, kafka_options)
        await producer.start()
        app.state.producer = producer
        app.state.http = httpx.AsyncClient(timeout=10.0)
        try:
            yield
        finally:
            await app.state.http.aclose()
            await producer.stop()
            await defences.aclose()

    # FastAPI's native OpenTelemetry off: the bridge carries its own W3C trace context
    # (bridge.correlation), and asking for OpenTelemetry's providers costs on every request.
    no_telemetry: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
    app = EdgeApp(title="siteti-bridge ingest", lifespan=lifespan, telemetry=no_telemetry)

    # Declared as a route for the OpenAPI document; `app.direct` (below) serves it.
    @app.post(
        "/webhooks/{provider_name}", openapi_extra=webhook_openapi(), responses=WEBHOOK_RESPONSES
    )
    async def webhook(provider_name: str, request: Request) -> Response:
        started = time.perf_counter()
        client = defences.client(request)
        provider = PROVIDERS.get(provider_name)
        if provider is None:
            message = f"unknown provider {provider_name!r}; known: {sorted(PROVIDERS)}"
            unknown = problem_response(problems.NOT_FOUND, 404, message)
            return await defences.reject(client, None, "unknown_provider", unknown)
        if not defences.allowed(provider_name, client):
            refused = problem_response(
                problems.CLIENT_NOT_ALLOWED,
                403,
                f"client address {client} is not allowed for {provider_name}",
            )
            return await defences.reject(client, provider_name, "ip_not_allowed", refused)

        def outcome(name: str) -> None:
            WEBHOOKS_RECEIVED.labels(provider_name, name).inc()

        try:
            body = await read_limited_body(request, settings.max_body_bytes)
        except BodyTooLarge:
            outcome("too_large")
            message = f"body is larger than {settings.max_body_bytes} bytes"
            too_large = problem_response(problems.TOO_LARGE, 413, message)
            return await defences.reject(client, provider_name, "too_large", too_large)

        # ASGI names headers in lower case already: decoded as they come, without Starlette's
        # header object.
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}
        webhook_request = WebhookRequest(body=body, headers=headers)
        try:
            provider.verify(webhook_request, secrets[provider_name])
        except SignatureError as exc:
            outcome("bad_signature")
            refused = problem_response(
                problems.BAD_SIGNATURE,
                provider.bad_signature_status,
                f"signature check failed: {exc}",
            )
            return await defences.reject(client, provider_name, "bad_signature", refused, str(exc))

        try:
            result = provider.parse(webhook_request)
        except orjson.JSONDecodeError as exc:
            outcome("malformed")
            return problem_response(problems.INVALID_REQUEST, 400, f"body is not valid JSON: {exc}")
        except PayloadError as exc:
            outcome("invalid")
            return problem_response(problems.UNUSABLE_PAYLOAD, 422, str(exc))

        if isinstance(result, Handshake):
            outcome("handshake")
            return JSONResponse(result.response)
        if isinstance(result, Ignored):
            outcome("ignored")
            return JSONResponse({"status": "ignored", "reason": result.reason})

        confirmer = confirmers.get(provider_name)
        if confirmer is not None:
            try:
                await confirmer.confirm(result, request.app.state.http, settings)
            except SignatureError as exc:
                outcome("not_confirmed")
                log.error(
                    "security_alert_unconfirmed_transaction",
                    provider=provider_name,
                    reason=str(exc),
                )
                return problem_response(
                    problems.NOT_CONFIRMED,
                    401,
                    f"transaction not confirmed by {provider_name}: {exc}",
                )
            except httpx.HTTPError as exc:
                outcome("confirm_unavailable")
                return problem_response(
                    problems.UNAVAILABLE,
                    503,
                    f"could not confirm the transaction with {provider_name}; retry later ({exc})",
                )

        producer = request.app.state.producer
        try:
            for event in result:
                event = traced(event, current_span() or new_trace())
                with correlated(event_id=event.id, reference=event.reference):
                    key, value = seal(event)
                    await publish(
                        producer,
                        settings.events_topic,
                        key,
                        value,
                        settings.kafka_send_timeout_seconds,
                        kafka_headers(event),
                    )
                    # The one line per accepted event (its trace, id and reference bound).
                    log.info("event_published", type=event.type)
        except Exception as exc:
            outcome("kafka_unavailable")
            log.error("kafka_publish_failed", provider=provider_name, error=repr(exc))
            return problem_response(
                problems.UNAVAILABLE, 503, "the event could not be stored durably; retry later"
            )

        accepted, latency = accepted_metrics[provider_name]
        accepted.inc()
        latency.observe(time.perf_counter() - started)
        observe_provider_delay(provider_name, (e.data.occurred_at for e in result))
        answer = {
            "status": "accepted",
            "events": [{"id": e.id, "type": e.type, "subject": e.subject} for e in result],
        }
        return Response(orjson.dumps(answer), media_type="application/json")

    async def ready() -> Readiness:
        try:
            await app.state.producer.check_connection()
        except Exception as exc:
            return Readiness(False, {"failed": {"kafka": repr(exc)}})
        return Readiness(True, {"status": "ready"})

    add_probes(app, ready)
    add_problem_handlers(app)
    # Each layer put in front wraps the ones before: the webhooks' direct route is innermost.
    app.direct("/webhooks/", webhook)
    app.front(lambda inner: ConcurrencyCap(inner, limit=settings.ingest_max_concurrency))
    # The provider's traceparent continued (or a new trace) for the whole request.
    app.front(TraceContextMiddleware)

    return app


def secrets_for(provider: Provider, settings: Settings) -> list[str]:
    value: Any = getattr(settings, provider.secrets_setting)
    return list(value)
