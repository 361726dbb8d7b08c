"""console.health: the services' /metrics text (or Prometheus's answers) as the health
page's figures."""

from __future__ import annotations

from console.health import (
    Rate,
    Reading,
    duration,
    health_from_prometheus,
    health_from_readings,
    parse_metrics,
    prometheus_queries,
)

DISPATCHER = """\
# HELP bridge_events_processed_total Dispatcher outcomes per event
# TYPE bridge_events_processed_total counter
bridge_events_processed_total{outcome="sent",type="payment.successful"} 10.0
bridge_events_processed_total{outcome="dead_lettered",type="payment.successful"} 2.0
bridge_events_processed_created{outcome="sent",type="payment.successful"} 1.7e9
# HELP bridge_dead_letter_depth Dead letters by status and reason
# TYPE bridge_dead_letter_depth gauge
bridge_dead_letter_depth{reason="missing_contact",status="manual_review"} 3.0
bridge_dead_letter_depth{reason="siteti_unavailable",status="pending"} 4.0
bridge_dead_letter_depth{reason="no_template_rule",status="manual_review"} 1.0
# TYPE bridge_consumer_lag gauge
bridge_consumer_lag{partition="0",topic="bridge.events"} 5.0
bridge_consumer_lag{partition="1",topic="bridge.events"} 7.0
# TYPE bridge_dead_letter_oldest_pending_seconds gauge
bridge_dead_letter_oldest_pending_seconds 3700.0
"""
RECEIPTS = """\
# TYPE bridge_outbox_pending gauge
bridge_outbox_pending 2.0
# TYPE bridge_receipts_total counter
bridge_receipts_total{outcome="stored",type="message.delivered"} 8.0
"""


def test_figures_from_one_reading() -> None:
    health = health_from_readings(None, Reading(100.0, parse_metrics([DISPATCHER, RECEIPTS])))
    assert health.depth == {"manual_review": 4.0, "pending": 4.0}
    assert health.lag == [("bridge.events", "0", 5.0), ("bridge.events", "1", 7.0)]
    assert health.lag_total == 12.0
    assert health.oldest_pending_seconds == 3700.0
    assert health.outbox_pending == 2.0
    # No earlier reading: totals without rates; `_created` timestamps are not totals.
    assert Rate("Events processed", "sent", 10.0, None) in health.rates
    assert Rate("Delivery receipts", "message.delivered", 8.0, None) in health.rates
    assert all(r.total < 1e9 for r in health.rates)


def test_rates_between_two_readings() -> None:
    before = Reading(100.0, parse_metrics([DISPATCHER]))
    after_text = DISPATCHER.replace('"payment.successful"} 10.0', '"payment.successful"} 40.0')
    health = health_from_readings(before, Reading(130.0, parse_metrics([after_text])))
    assert Rate("Events processed", "sent", 40.0, 60.0) in health.rates  # 30 in 30 s
    assert Rate("Events processed", "dead_lettered", 2.0, 0.0) in health.rates


def test_a_counter_reset_or_a_stale_reading_gives_no_rate() -> None:
    before = Reading(0.0, parse_metrics([DISPATCHER]))
    reset = DISPATCHER.replace('"payment.successful"} 10.0', '"payment.successful"} 1.0')
    health = health_from_readings(before, Reading(30.0, parse_metrics([reset])))
    assert Rate("Events processed", "sent", 1.0, None) in health.rates
    stale = health_from_readings(before, Reading(3600.0, parse_metrics([DISPATCHER])))
    assert all(r.per_minute is None for r in stale.rates)


def test_counters_add_up_across_processes_and_global_gauges_do_not() -> None:
    # Two dispatchers; the outbox backlog exported by receipts and as 0 by ingest.
    ingest = "# TYPE bridge_outbox_pending gauge\nbridge_outbox_pending 0.0\n"
    values = parse_metrics([DISPATCHER, DISPATCHER, RECEIPTS, ingest])
    health = health_from_readings(None, Reading(0.0, values))
    assert Rate("Events processed", "sent", 20.0, None) in health.rates
    assert health.depth == {"manual_review": 4.0, "pending": 4.0}
    assert health.outbox_pending == 2.0
    assert health.lag_total == 12.0


def test_missing_metrics_are_missing_figures() -> None:
    health = health_from_readings(None, Reading(0.0, parse_metrics([""])))
    assert (health.rates, health.depth, health.lag) == ([], {}, [])
    assert health.lag_total is None and health.oldest_pending_seconds is None


def test_figures_from_prometheus() -> None:
    queries = prometheus_queries()
    assert queries["rate:bridge_events_processed_total"] == (
        "sum by (outcome) (rate(bridge_events_processed_total[5m])) * 60"
    )
    health = health_from_prometheus(
        {
            "total:bridge_events_processed_total": [
                {"metric": {"outcome": "sent"}, "value": [1.0, "40"]}
            ],
            "rate:bridge_events_processed_total": [
                {"metric": {"outcome": "sent"}, "value": [1.0, "12.5"]}
            ],
            "depth": [{"metric": {"status": "pending"}, "value": [1.0, "4"]}],
            "lag": [{"metric": {"topic": "t", "partition": "0"}, "value": [1.0, "9"]}],
            "oldest": [{"metric": {}, "value": [1.0, "60"]}],
        }
    )
    assert health.rates == [Rate("Events processed", "sent", 40.0, 12.5)]
    assert health.depth == {"pending": 4.0}
    assert health.lag_total == 9.0
    assert health.oldest_pending_seconds == 60.0
    assert health.outbox_pending is None


def test_durations_for_people() -> None:
    assert duration(None) == "—"
    assert duration(0) == "0s"
    assert duration(45) == "45s"
    assert duration(3700) == "1h 1m"
    assert duration(90061) == "1d 1h"
