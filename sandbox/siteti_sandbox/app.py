"""The sandbox ASGI app: the Siteti v2.6 API under `/v2.6/accounts/<account_id>`, the
`/_sandbox/` control API, and health and metrics endpoints, all on one port.

`app.state.sandbox` (SandboxState) and `app.state.webhooks` (WebhookSender) are exposed for
in-process tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST

from bridge.edge import add_probes

from .config import SandboxConfig
from .control import control_router
from .messaging_control import messaging_router
from .metrics import Metrics
from .pipeline import Pipeline
from .state import SandboxState
from .webhooks import WebhookSender


def create_app(config: SandboxConfig | None = None) -> FastAPI:
    """Build a sandbox; without a config it is read from the environment."""
    config = config if config is not None else SandboxConfig.from_env()
    state = SandboxState(config)
    metrics = Metrics()
    sender = WebhookSender(state, metrics)
    pipeline = Pipeline(state, sender, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await sender.aclose()  # cancel queued webhooks, close the shared client

    app = FastAPI(title="Siteti sandbox (API v2.6)", lifespan=lifespan)
    app.state.sandbox = state
    app.state.webhooks = sender

    # One catch-all route so the pipeline sees every call (unknown paths and wrong accounts
    # included) with its raw body and raw path, which the signature covers.
    app.add_api_route(
        "/v2.6/{rest:path}",
        pipeline.handle,
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
    )
    app.include_router(control_router(state, sender))
    app.include_router(messaging_router(state, sender))

    # No dependencies: ready as soon as it answers. Metrics from the app's own registry.
    add_probes(app, metrics=lambda: (metrics.render(), CONTENT_TYPE_LATEST))

    return app
