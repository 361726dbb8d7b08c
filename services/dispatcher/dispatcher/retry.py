"""Which Siteti answers are worth another try. Pure. (How long to wait: bridge.retry.)"""

from __future__ import annotations

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


def is_transient(status: int | None, code: str | None) -> bool:
    """Timeouts and connection errors (no status), 429, and 5xx are worth another try."""
    if code in PERMANENT_CODES:
        return False
    return status is None or status == 429 or status >= 500
