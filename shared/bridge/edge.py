"""The HTTP edge every service shares: the limited body reader, the probe routes and the
entry point.

- `read_limited_body` reads a request's raw body (signatures cover the exact bytes) and
  raises `BodyTooLarge` as soon as it passes the limit; each service answers that with its
  own 413.
- `add_probes` adds `/healthz` (the process answers), `/readyz` (its dependencies, from an
  async check returning a `Readiness`) and `/metrics` (Prometheus text) to a FastAPI app.
  `Readiness` and `bridge.metrics.render` are what the dispatcher's faust pages use too.
- `problem_response` answers an error as `application/problem+json` (bridge.problems), and
  `add_problem_handlers` makes FastAPI's own answers (404, 405, 422, 500) take that shape.
- `EdgeApp` is a FastAPI app with layers in front of every request and one hot `POST`
  route (ingest's webhooks) served ahead of FastAPI's whole stack.
- `serve` is every FastAPI service's `python -m …`: uvicorn on the given host and port.
"""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from . import problems
from .logs import get_logger
from .metrics import render

log = get_logger("bridge.edge")


class BodyTooLarge(Exception):
    """The request body is over the limit (the caller answers 413)."""


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The raw body, refused as soon as it passes `limit` bytes (before it is all in memory).

    Read from the ASGI messages themselves (Starlette's stream and header objects cost more
    than the rest of reading on ingest's hot path)."""
    declared = next((v for k, v in request.scope["headers"] if k == b"content-length"), b"")
    declared = declared.strip()
    # isascii: "²".isdigit() is True, and int("²") raises.
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = b""
    # The declared length may be absent (chunked) or wrong: count what actually arrives.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk: bytes = message.get("body", b"")
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
        if not message.get("more_body", False):
            return body


@dataclass(frozen=True)
class Readiness:
    """A readiness check's answer: 200 with `body` when ready, else a 503 problem (not-ready)
    carrying `body["failed"]` (each unavailable dependency: why)."""

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

    @app.get(
        "/readyz",
        responses=problems.openapi_responses({503: "a dependency is unavailable (`failed`)"}),
    )
    async def readyz() -> JSONResponse:
        state = await ready()
        if state.ready:
            return JSONResponse(state.body)
        failed = state.body.get("failed", {})
        detail = f"not ready: {', '.join(failed) or 'starting'} unavailable"
        return problem_response(problems.NOT_READY, 503, detail, failed=failed)

    @app.get("/metrics", response_class=PlainTextResponse)  # the document says text/plain
    async def metrics_endpoint() -> Response:
        payload, content_type = metrics()
        return Response(payload, media_type=content_type)


class ProblemResponse(JSONResponse):
    media_type = problems.MEDIA_TYPE


def problem_response(
    kind: problems.ProblemType,
    status: int,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> ProblemResponse:
    body = problems.problem(kind, status, detail, **extensions)
    return ProblemResponse(body, status_code=status, headers=headers)


def add_problem_handlers(app: FastAPI) -> None:
    """FastAPI's own error answers (unknown path, wrong method, invalid parameters, an
    unhandled exception) as problem details, like every answer the routes give."""

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        return problem_response(
            problems.for_status(exc.status_code), exc.status_code, str(exc.detail), exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        # Where and why only: the offending input is not echoed (it may be a secret).
        errors = [
            {"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
        return problem_response(problems.INVALID_REQUEST, 422, detail, errors=errors)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        return internal_error(request.url.path, exc)


def internal_error(path: str, exc: Exception) -> ProblemResponse:
    """An unhandled exception: logged, answered 500 with nothing of it in the answer."""
    log.error("unhandled_exception", path=path, error=repr(exc))
    return problem_response(problems.INTERNAL_ERROR, 500, "internal error")


class EdgeApp(FastAPI):
    """A FastAPI app with layers in front of everything (`front`) and one hot route served
    ahead of FastAPI's whole stack (`direct`).

    Ingest's webhooks go through neither FastAPI's own middleware (error, telemetry and
    body-limit layers), nor its routing, parameter solving and exit stacks: together more
    than the rest of a webhook's handling. The front layers (trace context, concurrency cap)
    see every request, the direct route's and the others alike.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._edge: ASGIApp = super().__call__

    def direct(self, prefix: str, endpoint: Callable[[str, Request], Awaitable[Response]]) -> None:
        """`POST <prefix><name>` answered by `endpoint(name, request)`. The same endpoint
        stays declared as a route, which documents it (OpenAPI); what is not a `POST` of one
        path segment after the prefix (another method, a trailing slash) goes on to the
        router, with its 404, 405 and redirects. Call before `front`."""
        self._edge = _Direct(self._edge, self, prefix, endpoint)

    def front(self, layer: Callable[[ASGIApp], ASGIApp]) -> None:
        """Put `layer` in front of every request; the last one put is the outermost."""
        self._edge = layer(self._edge)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._edge(scope, receive, send)


class _Direct:
    def __init__(
        self,
        app: ASGIApp,
        owner: FastAPI,
        prefix: str,
        endpoint: Callable[[str, Request], Awaitable[Response]],
    ) -> None:
        self.app = app
        self.owner = owner
        self.prefix = prefix
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            name = path[len(self.prefix) :] if path.startswith(self.prefix) else ""
            if name and "/" not in name:
                scope["app"] = self.owner  # what FastAPI sets: `request.app`
                try:
                    response = await self.endpoint(name, Request(scope, receive))
                except ClientDisconnect:
                    return  # gone before its body arrived: nobody to answer
                except Exception as exc:
                    # What FastAPI's error layer would answer, which this route skips.
                    response = internal_error(path, exc)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def serve(app: Any, host: str, port: int, **uvicorn_options: Any) -> None:
    """Run `app` (an ASGI app, or an import string / factory as uvicorn takes them, with
    `factory=True` for a factory) on `host`:`port` until SIGINT/SIGTERM. Access logs are off
    unless asked for (each service logs its own requests); other options go to uvicorn as
    given, e.g. ingest's `proxy_headers=False`; with `workers`, each worker accepts on a
    socket of its own (bridge.workers). uvicorn's error and access loggers keep the
    process's logging set-up (`bridge.logs`: JSON lines) rather than installing its own."""
    import uvicorn  # only the HTTP services need it

    from .workers import run_workers

    # The start-up heap (modules, schemas, phone metadata, the app) lives as long as the
    # process: frozen out of the cyclic collector, so that its collections, which requests
    # in flight trigger all the time, stop traversing it (GC took about a third of ingest's
    # CPU under bench.ceiling's load, a tenth since). Refcounting still frees it as before.
    gc.freeze()
    options = {"access_log": False, "log_config": None} | uvicorn_options
    if options.get("workers", 1) > 1:
        # Each worker on a socket of its own, so that a burst is spread over them.
        run_workers(app, host, port, **options)
        return
    uvicorn.run(app, host=host, port=port, **options)
