"""Prometheus metrics: every name the services export, in one place for dashboards."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

WEBHOOKS_RECEIVED = Counter(
    "bridge_webhooks_received_total", "Provider webhooks by outcome", ["provider", "outcome"]
)
INGEST_LATENCY = Histogram(
    "bridge_ingest_seconds",
    "Webhook receipt to Kafka acknowledgement",
    ["provider"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_PROCESSED = Counter(
    "bridge_events_processed_total", "Dispatcher outcomes per event", ["type", "outcome"]
)
SITETI_CALLS = Counter(
    "bridge_siteti_calls_total", "Calls to Siteti by operation and status", ["operation", "status"]
)
SITETI_LATENCY = Histogram("bridge_siteti_seconds", "Siteti call latency", ["operation"])
SITETI_KEY_SWITCHES = Counter(
    "bridge_siteti_api_key_switches_total",
    "Moves to the next key of SITETI_API_KEYS after Siteti answered invalid_api_key",
)
EVENT_TO_SEND = Histogram(
    "bridge_event_to_send_seconds",
    "Canonical event time on Kafka to Siteti acceptance",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
GOVERNOR_WAIT = Histogram(
    "bridge_governor_wait_seconds",
    "Time a Siteti call waited for its slot under the shared rate limit",
    ["priority"],
    buckets=(0.001, 0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
DEAD_LETTERS = Counter(
    "bridge_dead_letters_total", "Events sent to the dead-letter store", ["reason"]
)
RECEIPTS = Counter(
    "bridge_receipts_total", "Siteti delivery webhooks by type and outcome", ["type", "outcome"]
)
OUTBOX_LAG = Gauge("bridge_outbox_pending", "Audit outbox rows not yet on Kafka")


# Issue 7, edge defences: requests refused before they are trusted (reason: bad_signature,
# ip_not_allowed, rate_limited, unknown_provider, too_large), and the defences' own health.
SECURITY_REJECTIONS = Counter(
    "bridge_security_rejections_total",
    "Requests refused by an edge defence",
    ["service", "provider", "reason"],
)
RATE_LIMITER_ERRORS = Counter(
    "bridge_rate_limiter_errors_total",
    "Rejection-counter calls that failed (Redis unreachable): the limit then fails open",
    ["service"],
)
REQUESTS_IN_FLIGHT = Gauge(
    "bridge_requests_in_flight", "Requests a process is handling, against its cap", ["service"]
)
REQUESTS_SHED = Counter(
    "bridge_requests_shed_total",
    "Requests answered 503 because the process was at its concurrency cap",
    ["service"],
)


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
