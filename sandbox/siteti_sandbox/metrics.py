"""Prometheus metrics. Each app has its own registry, so tests can build several apps in one
process without "duplicated timeseries" errors."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "siteti_sandbox_calls",
            "Siteti API calls received, by path template and status",
            ["method", "path", "status"],
            registry=self.registry,
        )
        self.webhooks = Counter(
            "siteti_sandbox_webhook_attempts",
            "Outbound webhook delivery attempts",
            ["type", "outcome"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
