"""The dead-letter tools' pure parts: durations, filters, backoff, results, API auth."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.access import Tokens
from bridge.retry import RetryPolicy
from dispatcher import dlq
from dispatcher.admin import DISABLED, AdminAPI
from dispatcher.outcomes import Status
from dispatcher.recovery import RetryOutcome, RetryResult


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("30m", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("1w", 604800),
        ("1h30m", 5400),
        (" 2H ", 7200),
        ("1.5h", 5400),
    ],
)
def test_parse_age(text: str, seconds: int) -> None:
    assert dlq.parse_age(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "h", "2x", "two hours", "2h and 3m", "-2h"])
def test_parse_age_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        dlq.parse_age(text)


def test_filters_parse_text_options() -> None:
    filters = dlq.Filters.parse(
        status="pending, manual_review",
        reason="siteti_unavailable",
        provider="moniepoint",
        older_than="2h",
        newer_than="1d",
        limit="20",
    )
    assert filters.statuses == ("pending", "manual_review")
    assert filters.older_than == timedelta(hours=2)
    assert filters.newer_than == timedelta(days=1)
    assert filters.limit == 20
    assert filters.narrowing
    assert not dlq.Filters.parse(limit=5).narrowing
    assert dlq.Filters.parse(status=["pending", "failed"]).statuses == ("pending", "failed")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "stuck"}, "unknown status"),
        ({"limit": "lots"}, "whole number"),
        ({"limit": 0}, "at least 1"),
        ({"older_than": "soon"}, "duration"),
    ],
)
def test_filters_reject_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dlq.Filters.parse(**kwargs)


def test_backoff_doubles_from_a_minute_and_caps_at_an_hour() -> None:
    waits = [dlq.backoff_seconds(n) for n in range(10)]
    assert waits == [0, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert dlq.backoff_seconds(10_000) == 3600  # no overflow for absurd counts
    fast = RetryPolicy(base_seconds=0.5, factor=3, max_seconds=10, max_retries=3)
    assert [dlq.backoff_seconds(n, fast) for n in range(5)] == [0, 0.5, 1.5, 4.5, 10]
    assert dlq.DLQ_RETRY_POLICY.max_retries == 10


def _entry(**overrides: Any) -> dlq.Entry:
    now = datetime(2026, 1, 20, 14, 30, tzinfo=UTC)
    values: dict[str, Any] = {
        "id": 7,
        "dedupe_key": "moniepoint:MNP-1:payment.successful",
        "reference": "moniepoint:MNP-1",
        "provider": "moniepoint",
        "event_type": "payment.successful",
        "payload": {"subject": "moniepoint:MNP-1"},
        "status": "pending",
        "reason": "siteti_unavailable",
        "retry_count": 2,
        "last_error": "503 maintenance: back soon",
        "next_attempt_at": now + timedelta(minutes=4),
        "created_at": now,
        "updated_at": now,
        "template_id": "tpl_first_time",
    }
    values.update(overrides)
    return dlq.Entry(**values)


def test_entry_summary_keeps_the_interface_names() -> None:
    summary = _entry().summary()
    for name in ("id", "reference", "status", "reason", "retry_count"):
        assert name in summary
    for name in ("provider", "event_type", "last_error", "created_at", "updated_at"):
        assert name in summary
    assert summary["reference"] == "moniepoint:MNP-1"
    assert summary["created_at"] == "2026-01-20T14:30:00+00:00"
    assert "payload" not in summary and _entry().detail()["payload"]["subject"]


def test_json_safe_turns_datetimes_into_text() -> None:
    when = datetime(2026, 1, 20, tzinfo=UTC)
    assert dlq.json_safe({"a": [when], "b": {"c": when}, "d": 1}) == {
        "a": [when.isoformat()],
        "b": {"c": when.isoformat()},
        "d": 1,
    }


@pytest.mark.parametrize(
    ("outcome", "ok", "words"),
    [
        ("sent", True, "sent"),
        ("already_sent", True, "already been sent"),
        ("not_retryable:completed", True, "already completed"),
        ("not_retryable:processing", False, "processing"),
        ("busy", False, "another worker"),
        ("unknown", False, "no such entry"),
        ("dead_lettered:siteti_unavailable", False, "failed again (siteti_unavailable)"),
        ("gave_up:siteti_unavailable", False, "retries used up"),
    ],
)
def test_retry_results_read_well(outcome: str, ok: bool, words: str) -> None:
    kind, _, detail = outcome.partition(":")
    result = RetryResult(7, RetryOutcome(kind, detail), _entry())  # type: ignore[arg-type]
    assert result.outcome.label == outcome
    assert result.ok is ok
    assert words in result.describe()


async def _no_runtime() -> Any:
    raise AssertionError("auth must be decided before any runtime is needed")


def test_admin_api_without_tokens_is_disabled() -> None:
    reply = AdminAPI(_no_runtime, Tokens.parse([], [])).authorize("Bearer anything")
    assert reply is not None and reply.status == 503 and reply.body["detail"] == DISABLED
    assert AdminAPI(_no_runtime, Tokens.parse([], [""])).authorize(None) is not None


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic t0k3n-a", "Bearer t0k3n", "Bearer t0k3n-a-longer"],
)
def test_admin_api_rejects_missing_or_wrong_tokens(header: str | None) -> None:
    reply = AdminAPI(_no_runtime, Tokens.parse([], ["t0k3n-a", "t0k3n-b"])).authorize(header)
    assert reply is not None and reply.status == 401


@pytest.mark.parametrize("header", ["Bearer t0k3n-a", "bearer t0k3n-b", "Bearer  t0k3n-b "])
def test_admin_api_accepts_any_configured_token(header: str) -> None:
    assert AdminAPI(_no_runtime, Tokens.parse([], ["t0k3n-a", "t0k3n-b"])).authorize(header) is None


async def test_admin_api_rejects_bad_filters_before_touching_the_store() -> None:
    api = AdminAPI(_no_runtime, Tokens.parse([], ["t"]))
    assert (await api.list_entries({"status": "nope"})).status == 400
    assert (await api.bulk_retry({}, {})).status == 400  # a bulk retry needs a filter
    assert (await api.bulk_retry({}, {"reason": "x", "limit": 100_000})).status == 400
    assert (await api.bulk_retry({}, ["not", "an", "object"])).status == 400
    assert (await api.get_entry("0")).status == 404
    assert (await api.resolve("12", {})).status == 400  # a note is required
    assert (await api.close("12", {"note": "  "})).status == 400


@pytest.mark.parametrize(
    ("reason", "status", "max_retries", "expected"),
    [
        # A pending entry retried for the first time waits base (60 s) before the next.
        ("siteti_unavailable", "pending", 10, (1, 0, "pending", 60.0)),
        # The last allowed retry failed: failed for good, nothing scheduled.
        ("siteti_unavailable", "pending", 1, (1, 0, "failed", None)),
        # A refusal burns the key generation the retry used.
        ("template_not_approved", "pending", 10, (1, 1, "pending", 60.0)),
        # Back in manual review: counted, not scheduled, never "failed" by the count.
        ("missing_contact", "manual_review", 1, (1, 0, "manual_review", None)),
        ("unprocessable", "manual_review", None, (1, 0, "manual_review", None)),
    ],
)
def test_a_failed_retry_is_counted_and_scheduled_in_python(
    reason: str, status: Status, max_retries: int | None, expected: tuple[object, ...]
) -> None:
    after = dlq.after_retry(
        _entry(retry_count=0, key_generation=0),
        reason=reason,
        status=status,
        policy=dlq.DLQ_RETRY_POLICY,
        max_retries=max_retries,
    )
    wait = after.wait.total_seconds() if after.wait is not None else None
    assert (after.retry_count, after.key_generation, after.status, wait) == expected


def test_the_backoff_grows_with_each_retry_of_an_entry() -> None:
    waits = []
    entry = _entry(retry_count=0)
    for _ in range(4):
        after = dlq.after_retry(entry, reason="siteti_unavailable", status="pending")
        assert after.wait is not None
        waits.append(after.wait.total_seconds())
        entry = replace(entry, retry_count=after.retry_count)
    assert waits == [60, 120, 240, 480]


def test_a_retry_that_still_waits_for_a_number_confirmation_is_no_failed_attempt() -> None:
    entry = _entry(reason="awaiting_number_confirmation", retry_count=3)
    after = dlq.after_retry(
        entry, reason="awaiting_number_confirmation", status="pending", max_retries=3
    )
    # Not counted, not failed, and no backoff: it keeps the request's expiry (wait None).
    assert after == dlq.AfterRetry(3, 0, "pending", None)
