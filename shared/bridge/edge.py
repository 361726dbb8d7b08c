"""The HTTP edge every service shares: the limited body reader, the probe routes and the
entry point.

- `read_limited_body` reads a request's raw body (signatures cover the exact bytes) and
  raises `BodyTooLarge` as soon as it passes the limit; each service answers that with its
  own 413.
- `add_probes` adds `/healthz` (the process answers), `/readyz` (its dependencies, from an
  async check returning a `Readiness`) and `/metrics` (Prometheus text) to a FastAPI app.
  `Readiness` and `bridge.metrics.render` are what the dispatcher's faust pages use too.
- `serve` is every FastAPI service's `python -m …`: uvicorn on the given host and port.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.requests import Request

from .metrics import render


class BodyTooLarge(Exception):
    """The request body is over the limit (the caller answers 413)."""


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The raw body, refused as soon as it passes `limit` bytes (before it is all in memory)."""
    declared = (request.headers.get("content-length") or "").strip()
    # isascii: "²".isdigit() is True, and int("²") raises.
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray()
    # The declared length may be absent (chunked) or wrong: count what actually arrives.
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


@dataclass(frozen=True)
class Readiness:
    """A readiness check's answer: 200 with `body` when ready, else 503 with it."""

    ready: bool
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def status_code(self) -> int:
        return 200 if self.ready else 503


ReadyCheck = Callable[[], Awaitable[Readiness]]
MetricsRender = Callable[[], tuple[bytes, str]]


async def always_ready() -> Readiness:
    """For a process with no dependencies to wait for."""
    return Readiness(True, {"status": "ok"})


def add_probes(
    app: FastAPI, ready: ReadyCheck = always_ready, metrics: MetricsRender = render
) -> None:
    """Add `/healthz`, `/readyz` (answered by `ready`) and `/metrics` (`metrics()` gives the
    payload and its content type; default: the process's Prometheus registry)."""

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        state = await ready()
        return JSONResponse(state.body, status_code=state.status_code)

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        payload, content_type = metrics()
        return Response(payload, media_type=content_type)


def serve(app: Any, host: str, port: int, **uvicorn_options: Any) -> None:
    """Run `app` (an ASGI app, or an import string / factory as uvicorn takes them, with
    `factory=True` for a factory) on `host`:`port` until SIGINT/SIGTERM. Access logs are off
    unless asked for (each service logs its own requests); other options go to uvicorn as
    given, e.g. ingest's `proxy_headers=False`."""
    import uvicorn  # only the HTTP services need it

    uvicorn.run(app, host=host, port=port, **({"access_log": False} | uvicorn_options))
