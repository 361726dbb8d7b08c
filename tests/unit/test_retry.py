from __future__ import annotations

import random

import pytest

from bridge.retry import RetryPolicy
from dispatcher.retry import is_transient


def test_full_jitter_stays_under_the_exponential_cap() -> None:
    policy = RetryPolicy(base_seconds=1, factor=2, max_seconds=60, max_retries=5)
    rng = random.Random(7)
    for retry, ceiling in enumerate([1, 2, 4, 8, 16, 32, 60, 60]):
        samples = [policy.delay(retry, rng) for _ in range(500)]
        assert all(0 <= s <= ceiling for s in samples)
        # Full jitter spreads over the whole range, not just near the top.
        assert min(samples) < ceiling * 0.1 and max(samples) > ceiling * 0.9


@pytest.mark.parametrize(
    ("status", "code", "transient"),
    [
        (None, "timeout", True),
        (None, "unreachable", True),
        (500, "http_500", True),
        (502, "bad_gateway", True),
        (503, "maintenance", True),
        (429, "rate_limited", True),
        (404, "template_not_found", False),
        (404, "template_not_approved", False),
        (422, "invalid_phone", False),
        (422, "validation_error", False),
        (409, "idempotency_key_reused", False),
        (401, "invalid_signature", False),
        (400, "http_400", False),
    ],
)
def test_transient_classification(status: int | None, code: str, transient: bool) -> None:
    assert is_transient(status, code) is transient
