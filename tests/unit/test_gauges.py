"""The pure parts of the metrics: gauge readings from query rows and Kafka offsets
(dispatcher.gauges), the clamped latencies and the row counters (bridge.metrics, the sources)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from bridge.metrics import elapsed_seconds, observe_provider_delay
from dispatcher.gauges import (
    LabelledGauge,
    Partition,
    age_seconds,
    dead_letter_readings,
    partition_lag,
)
from ingest.sources.filedrop_metrics import count_rows
from ingest.sources.filedrop_reader import Plan
from ingest.sources.poller import PollReport

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_dead_letter_rows_become_depth_per_status_and_reason_and_the_oldest_age() -> None:
    rows = [
        {"now": NOW, "status": "pending", "reason": "missing_contact", "entries": 3,
         "oldest": NOW - timedelta(minutes=5)},
        {"now": NOW, "status": "manual_review", "reason": "missing_contact", "entries": 1,
         "oldest": NOW - timedelta(hours=2)},
        {"now": NOW, "status": "pending", "reason": "template_not_approved", "entries": 7,
         "oldest": NOW - timedelta(seconds=30)},
    ]  # fmt: skip
    reading = dead_letter_readings(rows)
    assert reading.depth == {
        ("pending", "missing_contact"): 3,
        ("manual_review", "missing_contact"): 1,
        ("pending", "template_not_approved"): 7,
    }
    assert reading.oldest_seconds == 7200


def test_no_open_dead_letter_reads_empty_and_zero() -> None:
    assert dead_letter_readings([]) == ({}, 0.0)


def test_ages_are_zero_when_nothing_is_there_and_never_negative() -> None:
    assert age_seconds(None, NOW) == 0
    assert age_seconds(NOW - timedelta(seconds=90), NOW) == 90
    # Another clock (the provider's, Siteti's) a little ahead of ours: 0, not negative.
    assert age_seconds(NOW + timedelta(seconds=3), NOW) == 0
    assert elapsed_seconds(NOW, NOW - timedelta(seconds=1)) == 0


def test_partition_lag_is_highwater_minus_committed_or_earliest_before_any_commit() -> None:
    p0, p1, p2 = (Partition("events", n) for n in range(3))
    lag = partition_lag(
        [p0, p1, p2],
        highwaters={p0: 120, p1: 40, p2: 7},
        committed={p0: 100, p1: -1},  # p1: the group never committed; p2: not even listed
        earliest={p0: 0, p1: 15, p2: 0},
    )
    assert lag == {("events", "0"): 20, ("events", "1"): 25, ("events", "2"): 7}


def test_partition_lag_never_reads_negative() -> None:
    p0 = Partition("events", 0)
    # A commit read after the highwater was (the two come from separate requests).
    assert partition_lag([p0], {p0: 10}, {p0: 12}, {p0: 0}) == {("events", "0"): 0}


def labelled(registry: CollectorRegistry, name: str) -> dict[tuple[str, ...], float]:
    return {
        tuple(s.labels.values()): s.value
        for metric in registry.collect()
        for s in metric.samples
        if s.name == name
    }


def test_a_depth_that_emptied_reads_zero_rather_than_its_last_value() -> None:
    registry = CollectorRegistry()
    gauge = LabelledGauge(
        Gauge("depth", "d", ["status", "reason"], registry=registry), absent="zero"
    )
    gauge.show({("pending", "a"): 2, ("manual_review", "b"): 1})
    gauge.show({("pending", "a"): 5})
    assert labelled(registry, "depth") == {("pending", "a"): 5, ("manual_review", "b"): 0}
    gauge.show({})
    assert labelled(registry, "depth") == {("pending", "a"): 0, ("manual_review", "b"): 0}


def test_a_partition_no_longer_owned_is_removed() -> None:
    registry = CollectorRegistry()
    gauge = LabelledGauge(
        Gauge("lag", "l", ["topic", "partition"], registry=registry), absent="remove"
    )
    gauge.show({("events", "0"): 3, ("events", "1"): 4})
    gauge.show({("events", "1"): 1, ("events", "2"): 0})
    assert labelled(registry, "lag") == {("events", "1"): 1, ("events", "2"): 0}
    gauge.show({})
    assert labelled(registry, "lag") == {}


def test_provider_delay_is_observed_only_for_events_with_a_provider_time() -> None:
    provider = "unit-test-provider"
    before = sample("bridge_provider_to_accepted_seconds_count", provider=provider)
    first = sample("bridge_provider_to_accepted_seconds_bucket", provider=provider, le="0.5")
    earlier = datetime.now(UTC) - timedelta(hours=2)
    observe_provider_delay(provider, [earlier, None, datetime.now(UTC) + timedelta(hours=1)])
    count = sample("bridge_provider_to_accepted_seconds_count", provider=provider)
    assert count - before == 2
    # The future one (a provider clock ahead) counts as 0 s, in the first bucket.
    bucket = sample("bridge_provider_to_accepted_seconds_bucket", provider=provider, le="0.5")
    assert bucket - first == 1
    assert sample("bridge_provider_to_accepted_seconds_sum", provider=provider) >= 7200


def test_poll_and_file_reports_count_their_rows_by_outcome() -> None:
    outcomes = ("emitted", "failed", "unpublished", "skipped")
    before = {o: sample("bridge_poller_rows_total", outcome=o) for o in outcomes}
    PollReport(rows=10, claimed=9, emitted=5, failed=2, unpublished=2, skipped=1).count()
    after = {o: sample("bridge_poller_rows_total", outcome=o) - before[o] for o in outcomes}
    assert after == {"emitted": 5, "failed": 2, "unpublished": 2, "skipped": 1}

    kinds = ("emitted", "skipped", "rejected")
    before = {o: sample("bridge_filedrop_rows_total", outcome=o) for o in kinds}
    plan = Plan(fmt="csv", events=[object()] * 3, skipped=[object()] * 2, bad=[object()])
    count_rows(plan)
    after = {o: sample("bridge_filedrop_rows_total", outcome=o) - before[o] for o in kinds}
    assert after == {"emitted": 3, "skipped": 2, "rejected": 1}
