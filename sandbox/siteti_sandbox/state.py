"""In-memory state of the sandbox: templates, contacts, messages, logs, rate limiter,
idempotency store and injected failures. Nothing here does I/O, so the request pipeline can
read-check-write without awaiting in between (no races between concurrent requests)."""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from .config import SandboxConfig
from .messaging import MessagingControls

TemplateStatus = Literal["APPROVED", "PENDING", "REJECTED"]
FailureMode = Literal["error_5xx", "rate_limit_storm", "maintenance", "timeout"]

RATE_WINDOW_SECONDS = 60
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
SESSION_WINDOW_SECONDS = 24 * 3600

_PAYMENT_VARS = ["customer_name", "amount", "trans_ref"]
# A trailing "?" marks an optional variable (templates.md writes `next_due_date?`).
DEFAULT_TEMPLATES: dict[str, list[str]] = {
    "tpl_first_time": _PAYMENT_VARS,
    "tpl_returning_good": [*_PAYMENT_VARS, "next_due_date?"],
    "tpl_returning_late": [*_PAYMENT_VARS, "next_due_date?"],
    "tpl_failed_insufficient_funds": _PAYMENT_VARS,
    "tpl_failed_bank_network": _PAYMENT_VARS,
    "tpl_failed_generic": _PAYMENT_VARS,
    "tpl_transfer_completed": _PAYMENT_VARS,
    "tpl_transfer_failed": _PAYMENT_VARS,
    # Asks the customer to confirm a number the business is not sure of (issue 12).
    "tpl_confirm_number": ["customer_name"],
}


def iso(ts: float, timespec: str = "milliseconds") -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


@dataclass
class Template:
    id: str
    status: TemplateStatus
    variables: list[str]  # names, optional ones suffixed with "?"

    @property
    def names(self) -> list[str]:
        return [v.removesuffix("?") for v in self.variables]

    @property
    def required(self) -> list[str]:
        return [v for v in self.variables if not v.endswith("?")]

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "variables": self.names}


@dataclass
class Contact:
    contact_id: str
    phone: str
    name: str | None
    attributes: dict[str, Any]
    segments: list[str]
    created_at: str
    updated_at: str

    def public(self) -> dict[str, Any]:
        return dict(self.__dict__)


def contact_id_for(phone: str) -> str:
    # Derived from the phone so ids are stable across resets and restarts (handy in demos).
    return "ct_" + hashlib.sha256(phone.encode()).hexdigest()[:16]


@dataclass
class Message:
    message_id: str
    template_id: str | None  # None for a free-form POST /messages
    to: str
    contact_id: str
    variables: dict[str, Any] | None
    text: str | None
    reference: str | None
    at: str
    # Meta's error when a delivery failure was injected: {"code": 131026, "title": "…"}.
    error: dict[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RateDecision:
    limit: int
    remaining: int
    reset_at: int  # unix seconds at which the window ends
    retry_after: int
    limited: bool

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }


class RateLimiter:
    """Fixed window per account. The window starts at the first call after the previous one
    ended (rather than on minute boundaries) so a test never sees it roll over mid-burst."""

    def __init__(self) -> None:
        self.window_start: float | None = None
        self.count = 0

    def hit(self, now: float, limit: int) -> RateDecision:
        if self.window_start is None or now >= self.window_start + RATE_WINDOW_SECONDS:
            self.window_start, self.count = now, 0
        self.count += 1  # every authenticated call counts, including replays and 429s
        end = self.window_start + RATE_WINDOW_SECONDS
        return RateDecision(
            limit=limit,
            remaining=max(0, limit - self.count),
            reset_at=math.ceil(end),
            retry_after=max(1, math.ceil(end - now)),
            limited=self.count > limit,
        )


@dataclass(frozen=True)
class StoredResponse:
    fingerprint: str
    status: int
    body: bytes
    headers: dict[str, str]
    stored_at: float


class IdempotencyStore:
    def __init__(self) -> None:
        self._items: dict[str, StoredResponse] = {}

    def get(self, key: str, now: float) -> StoredResponse | None:
        # Lazy expiry from the oldest end (items are kept in the order stored): a scan of the
        # whole store on every call made a benchmark's burst quadratic in the sandbox.
        while self._items:
            oldest = next(iter(self._items))
            if now - self._items[oldest].stored_at <= IDEMPOTENCY_TTL_SECONDS:
                break
            del self._items[oldest]
        stored = self._items.get(key)
        # The sandbox's clock may be set back, so an expired item can sit behind a live one.
        if stored is None or now - stored.stored_at > IDEMPOTENCY_TTL_SECONDS:
            return None
        return stored

    def put(self, key: str, response: StoredResponse) -> None:
        self._items.pop(key, None)  # to the newest end
        self._items[key] = response

    def clear(self) -> None:
        self._items.clear()


@dataclass
class FailureRule:
    id: str
    mode: FailureMode
    share: float
    expires_at: float | None
    remaining: int | None
    retry_after: int
    status: int
    timeout_seconds: float
    paths: list[str]
    after_processing: bool
    rng: random.Random = field(repr=False)

    def fires(self, path: str, now: float) -> bool:
        if self.expires_at is not None and now >= self.expires_at:
            return False
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.paths and not any(p in path for p in self.paths):
            return False
        if self.rng.random() >= self.share:
            return False
        if self.remaining is not None:
            self.remaining -= 1  # `count` counts failures actually injected
        return True

    def public(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "rng"}
        out["expires_at"] = iso(self.expires_at) if self.expires_at is not None else None
        return out


class FailureInjector:
    def __init__(self) -> None:
        self.rules: list[FailureRule] = []
        self._seq = 0

    def add(self, now: float, spec: dict[str, Any]) -> FailureRule:
        self._seq += 1
        duration = spec.get("duration_seconds")
        paths = spec.get("paths")
        rule = FailureRule(
            id=f"flt_{self._seq}",
            mode=spec["mode"],
            share=spec.get("share", 1.0),
            expires_at=now + duration if duration is not None else None,
            remaining=spec.get("count"),
            retry_after=spec.get("retry_after", 5),
            status=spec.get("status", 500),
            timeout_seconds=spec.get("timeout_seconds", 30.0),
            paths=[paths] if isinstance(paths, str) else list(paths or []),
            after_processing=spec.get("after_processing", False),
            rng=random.Random(spec.get("seed")),  # noqa: S311 - test double, not crypto
        )
        self.rules.append(rule)
        return rule

    def pick(self, path: str, now: float) -> FailureRule | None:
        return next((r for r in self.rules if r.fires(path, now)), None)

    def clear(self) -> None:
        self.rules.clear()


class SandboxState:
    def __init__(self, config: SandboxConfig) -> None:
        self.initial = config
        self.config = config
        self.templates: dict[str, Template] = {}
        self.contacts: dict[str, Contact] = {}  # by contact_id
        self.contacts_by_phone: dict[str, str] = {}
        self.messages: list[Message] = []
        self.calls: list[dict[str, Any]] = []
        self.webhook_log: list[dict[str, Any]] = []
        self.sessions: dict[str, float] = {}  # contact id or phone -> when the window opened
        self.bsuids: dict[str, str] = {}  # contact id -> the WhatsApp username id last seen
        self.idempotency = IdempotencyStore()
        self.limiter = RateLimiter()
        self.failures = FailureInjector()
        self.messaging = MessagingControls()
        self.reset()

    def now(self) -> float:
        return self.config.clock()

    def reset(self) -> None:
        self.config = self.initial
        self.templates = {
            tid: Template(tid, "APPROVED", list(vs)) for tid, vs in DEFAULT_TEMPLATES.items()
        }
        self.contacts.clear()
        self.contacts_by_phone.clear()
        self.messages.clear()
        self.calls.clear()
        self.webhook_log.clear()
        self.sessions.clear()
        self.bsuids.clear()
        self.idempotency.clear()
        self.limiter = RateLimiter()
        self.failures.clear()
        self.messaging.clear()

    def update_config(self, **changes: Any) -> None:
        self.config = replace(self.config, **changes)

    def add_api_key(self, key: str) -> None:
        """Accept `key` beside the keys already active, as Siteti does during a rotation."""
        if key not in self.config.api_keys:
            self.update_config(api_keys=(*self.config.api_keys, key))

    def revoke_api_key(self, key: str) -> bool:
        """Refuse `key` from now on (`invalid_api_key`); False when it was not active."""
        if key not in self.config.api_keys:
            return False
        self.update_config(api_keys=tuple(k for k in self.config.api_keys if k != key))
        return True

    def open_sessions(self, ids: list[str]) -> None:
        now = self.now()
        self.sessions = {i: self.sessions.get(i, now) for i in ids}

    def note_inbound(self, contact_id: str | None, phone: str | None) -> None:
        """A customer wrote: their 24 h service window (re)opens now."""
        key = contact_id or phone
        if key:
            self.sessions[key] = self.now()

    def session_opened_at(self, contact_id: str | None, phone: str | None) -> float | None:
        """When the 24 h service window opened, or None when it is closed."""
        opened = self.sessions.get(contact_id or "", self.sessions.get(phone or ""))
        if opened is None or self.now() - opened > SESSION_WINDOW_SECONDS:
            return None
        return opened

    def message(self, message_id: str) -> Message | None:
        return next((m for m in reversed(self.messages) if m.message_id == message_id), None)

    def log_call(self, entry: dict[str, Any]) -> None:
        entry["seq"] = len(self.calls) + 1
        self.calls.append(entry)

    def stats(self) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        for call in self.calls:
            by_status[str(call["status"])] = by_status.get(str(call["status"]), 0) + 1
        ok = [w for w in self.webhook_log if w["status_code"] and 200 <= w["status_code"] < 300]
        return {
            "calls": len(self.calls),
            "by_status": by_status,
            "messages": len(self.messages),
            "replays": sum(1 for c in self.calls if c["replayed"]),
            "webhooks_sent": len(ok),
            "webhooks_failed": len(self.webhook_log) - len(ok),
            "webhooks_gave_up": sum(1 for w in self.webhook_log if w.get("gave_up")),
            "contacts": len(self.contacts),
        }
