"""The dead-letter list's filter form as the admin API's query (GET /dlq). No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# The form's status choices: "open" is what still waits for something (the retrier or an
# operator); "failed" entries were given up (retries exhausted, or closed).
STATUS_CHOICES: dict[str, str] = {
    "": "any status",
    "open": "open (pending, manual review)",
    "pending": "pending",
    "manual_review": "manual review",
    "processing": "processing",
    "failed": "failed",
    "completed": "completed",
}
_STATUS_QUERY = {"open": "pending,manual_review"}

# Age choices: (query name, age) as the API takes them.
AGE_CHOICES: dict[str, tuple[str, str] | None] = {
    "": None,
    "newer_than:1h": ("newer_than", "1h"),
    "newer_than:1d": ("newer_than", "1d"),
    "older_than:1h": ("older_than", "1h"),
    "older_than:1d": ("older_than", "1d"),
    "older_than:7d": ("older_than", "7d"),
}
AGE_LABELS: dict[str, str] = {
    "": "any age",
    "newer_than:1h": "last hour",
    "newer_than:1d": "last day",
    "older_than:1h": "older than an hour",
    "older_than:1d": "older than a day",
    "older_than:7d": "older than a week",
}
LIST_LIMIT = 200
_MAX_TEXT = 200


@dataclass(frozen=True)
class ListFilters:
    status: str = "open"
    reason: str = ""
    provider: str = ""
    age: str = ""

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> ListFilters:
        """From the page's query string; ValueError for a choice the form does not offer."""
        status = form.get("status", "open").strip()
        age = form.get("age", "").strip()
        if status not in STATUS_CHOICES:
            raise ValueError(f"unknown status {status[:40]!r}")
        if age not in AGE_CHOICES:
            raise ValueError(f"unknown age {age[:40]!r}")
        reason, provider = form.get("reason", "").strip(), form.get("provider", "").strip()
        if len(reason) > _MAX_TEXT or len(provider) > _MAX_TEXT:
            raise ValueError(f"reason and provider are at most {_MAX_TEXT} characters")
        return cls(status=status, reason=reason, provider=provider, age=age)

    def query(self) -> dict[str, str]:
        """GET /dlq's query parameters."""
        params = {"limit": str(LIST_LIMIT)}
        if self.status:
            params["status"] = _STATUS_QUERY.get(self.status, self.status)
        if self.reason:
            params["reason"] = self.reason
        if self.provider:
            params["provider"] = self.provider
        age = AGE_CHOICES[self.age]
        if age is not None:
            params[age[0]] = age[1]
        return params

    def form(self) -> dict[str, str]:
        """The page's own query string for these filters (to come back to the same list)."""
        return {"status": self.status, "reason": self.reason, "provider": self.provider} | (
            {"age": self.age} if self.age else {}
        )
