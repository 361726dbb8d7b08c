"""The console process's state: its Redis stores, the backends it calls, and the health
page's last metrics reading."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any

import httpx

from bridge.access import Tokens
from bridge.cache import new_redis
from bridge.config import Settings

from .backend import Backend, BackendError
from .health import (
    Health,
    Reading,
    health_from_prometheus,
    health_from_readings,
    parse_metrics,
    prometheus_queries,
)
from .jobs import JobStore
from .sessions import SessionStore


async def attempt(call: Awaitable[Any]) -> Any:
    """The call's answer, or the BackendError it raised (for pages showing what they can)."""
    try:
        return await call
    except BackendError as exc:
        return exc


class Console:
    """The process's state: Redis stores, the backends, the last metrics reading."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.tokens = Tokens.from_settings(settings)
        self.redis = new_redis(settings.redis_url)
        self.sessions = SessionStore(self.redis, int(settings.console_session_hours * 3600))
        self.jobs = JobStore(self.redis)
        self.admin = Backend("dispatcher admin API", settings.console_admin_url, http)
        self.receipts = Backend("receipts audit API", settings.console_receipts_url, http)
        self.ingest = Backend("ingest", settings.console_ingest_url, http)
        self.prometheus = (
            Backend("Prometheus", settings.prometheus_url, http)
            if settings.prometheus_url
            else None
        )
        self.last_reading: Reading | None = None

    async def health(self) -> Health:
        if self.prometheus is not None:
            return await self._prometheus_health(self.prometheus)
        pages = await asyncio.gather(
            *(b.text("/metrics") for b in (self.admin, self.receipts, self.ingest)),
            return_exceptions=True,
        )
        texts = [p for p in pages if isinstance(p, str)]
        problems = [p.message for p in pages if isinstance(p, BackendError)]
        reading = Reading(time.monotonic(), parse_metrics(texts))
        # The reading before this one gives the rates; a first look shows totals only.
        previous, self.last_reading = self.last_reading, reading
        return replace(health_from_readings(previous, reading), problems=problems)

    async def _prometheus_health(self, prometheus: Backend) -> Health:
        queries = prometheus_queries()
        answers = await asyncio.gather(
            *(
                prometheus.call("GET", "/api/v1/query", None, params={"query": q})
                for q in queries.values()
            ),
            return_exceptions=True,
        )
        results = {
            name: a["data"]["result"]
            for name, a in zip(queries, answers, strict=True)
            if isinstance(a, dict) and isinstance(a.get("data"), dict)
        }
        problems = sorted({a.message for a in answers if isinstance(a, BackendError)})
        return replace(health_from_prometheus(results), problems=problems)
