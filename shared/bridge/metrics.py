"""Prometheus metrics: every name the services export, in one place for dashboards."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

# Set (to an empty directory) for a service run as several worker processes (ingest with
# INGEST_WORKERS > 1): each worker writes its values there and `/metrics`, whichever worker
# answers it, adds them up. Read before any metric exists: it decides how values are kept.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

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
# Issue 12 (pacing): per-number spacing and provider double-fires (dispatcher).
PAIR_PACING_WAIT = Histogram(
    "bridge_pair_pacing_wait_seconds",
    "Time a message waited for its number's slot (PAIR_MIN_INTERVAL_SECONDS after the last)",
    buckets=(0.001, 0.5, 1, 2, 3, 4, 5, 6, 10, 30, 60),
)
DOUBLE_FIRES = Counter(
    "bridge_double_fires_suspected_total",
    "Events held for review as a provider's second fire of a transaction",
    ["provider"],
)
DEAD_LETTERS = Counter(
    "bridge_dead_letters_total", "Events sent to the dead-letter store", ["reason"]
)
# Issue 12: customers' replies the dispatcher read for a number confirmation (dispatcher.replies).
CONFIRMATION_REPLIES = Counter(
    "bridge_number_confirmation_replies_total",
    "Replies read from the replies topic, by what they did to a number confirmation",
    ["outcome"],
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
    "bridge_requests_in_flight",
    "Requests a process is handling, against its cap",
    ["service"],
    multiprocess_mode="livesum",  # several ingest workers: what they handle together
)
REQUESTS_SHED = Counter(
    "bridge_requests_shed_total",
    "Requests answered 503 because the process was at its concurrency cap",
    ["service"],
)

# Issue 10, operations. Gauges marked GLOBAL describe shared state (PostgreSQL, Redis): every
# dispatcher reports the same value every METRICS_REFRESH_SECONDS (dispatcher.gauges), so
# dashboards take max() across instances, never sum().
DEAD_LETTER_DEPTH = Gauge(
    "bridge_dead_letter_depth",
    "GLOBAL: open dead letters (pending, processing, manual_review) by status and reason",
    ["status", "reason"],
)
DEAD_LETTER_OLDEST = Gauge(
    "bridge_dead_letter_oldest_pending_seconds",
    "GLOBAL: age of the oldest open dead letter (0 when none)",
)
OUTBOX_OLDEST = Gauge(
    "bridge_outbox_oldest_seconds", "GLOBAL: age of the oldest audit outbox row (0 when empty)"
)
ERASURES_PENDING = Gauge("bridge_erasures_pending", "GLOBAL: erasure requests not yet done")
GOVERNOR_PAUSE_REMAINING = Gauge(
    "bridge_governor_pause_remaining_seconds",
    "GLOBAL: what is left of the cluster-wide Siteti pause (0 when none)",
)
METRICS_REFRESH_FAILURES = Counter(
    "bridge_metrics_refresh_failures_total",
    "Refreshes of the dispatcher's gauges that failed, by what was read",
    ["source"],
)
# Per instance: the partitions this dispatcher owns (dashboards sum()).
CONSUMER_LAG = Gauge(
    "bridge_consumer_lag",
    "Records of an owned partition not yet committed (highwater minus committed offset)",
    ["topic", "partition"],
)
GOVERNOR_PAUSES = Counter(
    "bridge_governor_pauses_total",
    "Cluster-wide Siteti pauses this instance started or extended, by cause",
    ["reason"],
)
MESSAGES_SENT = Counter(
    "bridge_messages_sent_total", "WhatsApp messages Siteti accepted, by event type", ["type"]
)
MESSAGES_DELIVERED = Counter(
    "bridge_messages_delivered_total", "message.delivered receipts stored (first copy only)"
)
PROVIDER_TO_ACCEPTED = Histogram(
    "bridge_provider_to_accepted_seconds",
    "The provider's own event time to Kafka acknowledgement (when the provider gives one)",
    ["provider"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600),
)
SEND_TO_DELIVERED = Histogram(
    "bridge_send_to_delivered_seconds",
    "Siteti's acceptance of a message (audit stage dispatched) to its delivered receipt",
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600),
)
POLLER_POLLS = Counter("bridge_poller_polls_total", "Database poller polls by outcome", ["outcome"])
POLLER_ROWS = Counter("bridge_poller_rows_total", "Polled rows by what became of them", ["outcome"])
POLLER_LAST_SUCCESS = Gauge(
    "bridge_poller_last_success_timestamp_seconds", "Unix time the last successful poll ended"
)
FILEDROP_FILES = Counter(
    "bridge_filedrop_files_total", "File-drop files handled, by outcome", ["outcome"]
)
FILEDROP_ROWS = Counter(
    "bridge_filedrop_rows_total", "File-drop rows by what became of them", ["outcome"]
)
FILEDROP_PENDING = Gauge(
    "bridge_filedrop_pending_files", "Inbox files not yet handled at the last scan"
)
RETENTION_DELETED = Counter(
    "bridge_retention_deleted_total", "Rows (and files) deleted by retention", ["table"]
)


def elapsed_seconds(start: datetime, end: datetime) -> float:
    """`end - start` in seconds, never negative: the two times may come from different clocks
    (a provider's, Siteti's, ours)."""
    return max(0.0, (end - start).total_seconds())


def observe_provider_delay(provider: str, times: Iterable[datetime | None]) -> None:
    """Time each event that carries the provider's own timestamp, up to now (its Kafka ack)."""
    now = datetime.now(UTC)
    for moment in times:
        if moment is not None:
            PROVIDER_TO_ACCEPTED.labels(provider).observe(elapsed_seconds(moment, now))


def render() -> tuple[bytes, str]:
    if os.environ.get(MULTIPROCESS_DIR):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def serve_metrics(host: str, port: int) -> Callable[[], None]:
    """`/metrics` for a process without an HTTP server of its own (the poller, the file
    drop), in a thread; returns its stop. Port 0 serves nothing. Raises OSError when the
    port is taken."""
    if not port:
        return lambda: None
    server, thread = start_http_server(port, addr=host)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
