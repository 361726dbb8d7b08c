"""How long to wait before trying again: exponential backoff with full jitter. Pure.

One policy type for every retry loop in the project (Siteti calls, dead-letter retries,
dependency outages); `OUTAGE_BACKOFF` is the one for waiting out PostgreSQL, Redis or Kafka.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


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


# Between attempts while a dependency is away: short at first (a blip), capped low so that
# work resumes within seconds of its return; never gives up (max_retries is unused).
OUTAGE_BACKOFF = RetryPolicy(base_seconds=0.5, factor=2.0, max_seconds=5.0, max_retries=0)
