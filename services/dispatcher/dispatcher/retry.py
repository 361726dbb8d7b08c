"""Retry policy for Siteti calls: exponential backoff with full jitter. Pure."""

from __future__ import annotations

import random
from dataclasses import dataclass

# Siteti error codes that no retry will fix.
PERMANENT_CODES = frozenset(
    {
        "template_not_found",
        "template_not_approved",
        "invalid_phone",
        "validation_error",
        "idempotency_key_reused",
        "invalid_api_key",
        "invalid_signature",
        "outside_session_window",
        "contact_not_found",
    }
)


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 1.0
    factor: float = 2.0
    max_seconds: float = 60.0
    max_retries: int = 5

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry` (0-based): full jitter over the cap."""
        # The exponent is bounded so that a long outage's count never overflows a float.
        ceiling = min(self.max_seconds, self.base_seconds * self.factor ** min(retry, 64))
        return (rng or random).uniform(0, ceiling)


def is_transient(status: int | None, code: str | None) -> bool:
    """Timeouts and connection errors (no status), 429, and 5xx are worth another try."""
    if code in PERMANENT_CODES:
        return False
    return status is None or status == 429 or status >= 500
