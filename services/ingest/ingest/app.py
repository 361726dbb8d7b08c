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

from bridge.config import Settings, get_settings
from bridge.kafka import new_producer, publish
from bridge.logs import get_logger
from bridge.metrics import INGEST_LATENCY, WEBHOOKS_RECEIVED, render
from bridge.signing import SignatureError

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

log = get_logger("ingest")


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused as soon as it passes `limit` (before it is all in memory)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    # A provider that cannot work with its configuration stops the start, saying what to fix.
    for provider in PROVIDERS.values():
        if isinstance(provider, Configurable):
            provider.check_configuration(secrets_for(provider, settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        producer = new_producer(settings.kafka_bootstrap_servers)
        await producer.start()
        app.state.producer = producer
        app.state.http = httpx.AsyncClient(timeout=10.0)
        try:
            yield
        finally:
            await app.state.http.aclose()
            await producer.stop()

    app = FastAPI(title="siteti-bridge ingest", lifespan=lifespan)

    @app.post("/webhooks/{provider_name}")
    async def webhook(provider_name: str, request: Request) -> Response:
        started = time.perf_counter()
        provider = PROVIDERS.get(provider_name)
        if provider is None:
            return error(404, f"unknown provider {provider_name!r}; known: {sorted(PROVIDERS)}")

        def outcome(name: str) -> None:
            WEBHOOKS_RECEIVED.labels(provider_name, name).inc()

        try:
            body = await read_body(request, settings.max_body_bytes)
        except BodyTooLarge:
            outcome("too_large")
            return error(413, f"body is larger than {settings.max_body_bytes} bytes")

        webhook_request = WebhookRequest(
            body=body, headers={k.lower(): v for k, v in request.headers.items()}
        )
        try:
            provider.verify(webhook_request, secrets_for(provider, settings))
        except SignatureError as exc:
            outcome("bad_signature")
            log.warning(
                "security_webhook_rejected",
                provider=provider_name,
                reason=str(exc),
                client=request.client.host if request.client else None,
            )
            return error(provider.bad_signature_status, f"signature check failed: {exc}")

        try:
            result = provider.parse(webhook_request)
        except orjson.JSONDecodeError as exc:
            outcome("malformed")
            return error(400, f"body is not valid JSON: {exc}")
        except PayloadError as exc:
            outcome("invalid")
            return error(422, str(exc))

        if isinstance(result, Handshake):
            outcome("handshake")
            return JSONResponse(result.response)
        if isinstance(result, Ignored):
            outcome("ignored")
            return JSONResponse({"status": "ignored", "reason": result.reason})

        if isinstance(provider, Confirming):
            try:
                await provider.confirm(result, request.app.state.http, settings)
            except SignatureError as exc:
                outcome("not_confirmed")
                log.error(
                    "security_alert_unconfirmed_transaction",
                    provider=provider_name,
                    reason=str(exc),
                )
                return error(401, f"transaction not confirmed by {provider_name}: {exc}")
            except httpx.HTTPError as exc:
                outcome("confirm_unavailable")
                return error(
                    503,
                    f"could not confirm the transaction with {provider_name}; retry later ({exc})",
                )

        producer = request.app.state.producer
        try:
            for event in result:
                await publish(
                    producer,
                    settings.events_topic,
                    event.partition_key,
                    event.to_json(),
                    settings.kafka_send_timeout_seconds,
                )
        except Exception as exc:
            outcome("kafka_unavailable")
            log.error("kafka_publish_failed", provider=provider_name, error=repr(exc))
            return error(503, "the event could not be stored durably; retry later")

        outcome("accepted")
        INGEST_LATENCY.labels(provider_name).observe(time.perf_counter() - started)
        log.info("webhook_accepted", provider=provider_name, events=[e.dedupe_key for e in result])
        return JSONResponse(
            {
                "status": "accepted",
                "events": [{"id": e.id, "type": e.type, "subject": e.subject} for e in result],
            }
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        producer = request.app.state.producer
        try:
            await producer.client.fetch_all_metadata()
        except Exception as exc:
            return error(503, f"kafka not reachable: {exc!r}")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def metrics() -> Response:
        payload, content_type = render()
        return Response(payload, media_type=content_type)

    return app


def secrets_for(provider: Provider, settings: Settings) -> list[str]:
    value: Any = getattr(settings, provider.secrets_setting)
    return list(value)
