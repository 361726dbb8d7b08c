"""Serve an ASGI app with uvicorn on a free port, in the test's own event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn

from tests.conftest import free_port


@asynccontextmanager
async def running(app: Any, **config: Any) -> AsyncIterator[str]:
    """Serve `app` (its lifespan run) until the block ends; yield its base URL. `config` goes
    to uvicorn.Config."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **config
        )
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            server.should_exit = True
            await task
            pytest.fail(f"{type(app).__name__} did not start (is the stack up?)")
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
