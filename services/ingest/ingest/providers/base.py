"""The provider adapter interface: adding a provider is one module that implements it.

An adapter is pure: `verify` checks authenticity on the raw bytes, `parse` turns the payload
into canonical events. The HTTP edge (`ingest.app`) does the I/O around them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Protocol, runtime_checkable

import httpx
import orjson
from pydantic import ValidationError

from bridge.config import Settings
from bridge.events import CanonicalEvent, amount_problem, describe


class PayloadError(ValueError):
    """The body is authentic but not something we can turn into an event (answered 422)."""


class ConfirmationUnavailable(httpx.HTTPError):
    """The provider's API could not be asked to confirm a transaction (network error, 5xx,
    our own credentials refused or missing). Not evidence of forgery: answer 503 so the
    provider retries later. An httpx.HTTPError, so one `except httpx.HTTPError` covers it."""


@dataclass(frozen=True)
class WebhookRequest:
    body: bytes
    headers: Mapping[str, str]  # lower-case names
    now: float = field(default_factory=time.time)

    def json(self) -> Any:
        """The parsed body; malformed JSON raises orjson.JSONDecodeError (answered 400)."""
        return orjson.loads(self.body)


@dataclass(frozen=True)
class Handshake:
    """A provider's endpoint check: answer `response` with 200 and emit nothing."""

    response: dict[str, Any]


@dataclass(frozen=True)
class Ignored:
    """Authentic, understood, and deliberately not turned into an event (answered 200)."""

    reason: str


Outcome = list[CanonicalEvent] | Handshake | Ignored


class Provider(Protocol):
    name: ClassVar[str]
    #: the Settings field holding this provider's comma-separated secrets
    secrets_setting: ClassVar[str]
    #: the status for a bad or missing signature (401 unless the provider's convention differs)
    bad_signature_status: ClassVar[int]

    def verify(self, request: WebhookRequest, secrets: Sequence[str]) -> None:
        """Raise bridge.signing.SignatureError unless the request is authentic."""

    def parse(self, request: WebhookRequest) -> Outcome:
        """Turn the verified payload into canonical events (raise PayloadError when unusable)."""


@runtime_checkable
class Confirming(Protocol):
    """A provider whose API must confirm a transaction before it is processed (Flutterwave's
    "verify before process"). The ingest app calls `confirm` after `parse`, before publishing."""

    async def confirm(
        self, events: list[CanonicalEvent], client: httpx.AsyncClient, settings: Settings
    ) -> None:
        """Raise bridge.signing.SignatureError (log a security alert) when the provider's API
        does not confirm every event; ConfirmationUnavailable when it cannot be asked."""


@runtime_checkable
class Configurable(Protocol):
    """A provider whose configuration can be wrong in ways worth refusing at start-up."""

    def check_configuration(self, secrets: Sequence[str]) -> None:
        """Raise ValueError naming the setting to fix."""


@dataclass(frozen=True)
class Envelope:
    """A verified `{"<event key>": name, "<data key>": {...}}` body, its event understood."""

    payload: Mapping[str, Any]
    event: str  # the provider's own event name
    canonical: str  # the canonical type it maps to
    data: Mapping[str, Any]


def open_envelope(
    payload: Mapping[str, Any],
    event_map: Mapping[str, str],
    provider: str,
    *,
    event_key: str = "event",
    data_key: str = "data",
) -> Envelope | Ignored:
    """The event of an envelope-shaped body, or Ignored for one the bridge sends nothing for."""
    event = text_field(payload, event_key, event_key) or ""
    canonical = event_map.get(event)
    if canonical is None:
        return Ignored(f"{provider} {event!r} is not a notifiable event")
    data = require(payload, data_key)
    if not isinstance(data, Mapping):
        raise PayloadError(f"{data_key} must be an object")
    return Envelope(payload, event, canonical, data)


def require(mapping: Mapping[str, Any], *path: str) -> Any:
    """`mapping[path[0]][path[1]]…`, or PayloadError naming the missing field."""
    current: Any = mapping
    for depth, part in enumerate(path):
        if not isinstance(current, Mapping) or current.get(part) in (None, ""):
            raise PayloadError(f"missing field {'.'.join(path[: depth + 1])}")
        current = current[part]
    return current


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value == "")


def object_field(mapping: Mapping[str, Any], key: str, label: str) -> Mapping[str, Any]:
    """The JSON object at `mapping[key]`, or PayloadError naming `label` (the field's full
    name in the provider's payload, e.g. `data.customer`)."""
    value = mapping.get(key)
    if _missing(value):
        raise PayloadError(f"missing field {label}")
    if not isinstance(value, Mapping):
        raise PayloadError(f"{label} must be an object")
    return value


def text_field(mapping: Mapping[str, Any], key: str, label: str) -> str | None:
    """An optional string field: None when absent, null or empty; PayloadError naming `label`
    when it is anything but a string (never `str()` of a list or an object)."""
    value = mapping.get(key)
    if _missing(value):
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{label} must be a string, not {_json_type(value)}")
    return value


def required_text(mapping: Mapping[str, Any], key: str, label: str) -> str:
    """A required string field (PayloadError naming `label` when missing or not a string)."""
    value = text_field(mapping, key, label)
    if value is None:
        raise PayloadError(f"missing field {label}")
    return value


def currency_field(mapping: Mapping[str, Any], label: str, *, default: str | None = "NGN") -> str:
    """`mapping["currency"]` in capitals; `default` when absent (None: the field is required).
    The canonical model checks it is an ISO 4217 code."""
    value = text_field(mapping, "currency", label)
    if value is None:
        if default is None:
            raise PayloadError(f"missing field {label}")
        return default
    return value.upper()


def reference_field(mapping: Mapping[str, Any], key: str, label: str) -> str:
    """A required reference or account number: a string, or an integer (Flutterwave's ids are
    JSON numbers). Anything else is PayloadError: `{"a": 1}` is not a reference."""
    value = mapping.get(key)
    if _missing(value):
        raise PayloadError(f"missing field {label}")
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= 10**40:  # no reference is that long; str() of 10**5000 raises
            raise PayloadError(f"{label} is too large a number to be a reference")
        return str(value)
    if not isinstance(value, str):
        raise PayloadError(f"{label} must be a string or an integer, not {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


@contextmanager
def payload_fields() -> Iterator[None]:
    """Turn a value the canonical model refuses (wrong type, control characters, too long,
    out of range: pydantic's ValidationError while building the event) into PayloadError,
    answered 422 like any other unusable payload."""
    try:
        yield
    except ValidationError as exc:
        raise PayloadError(f"unusable field value ({describe(exc)})") from exc


def json_object(request: WebhookRequest) -> Mapping[str, Any]:
    """The parsed body, which must be a JSON object."""
    payload = request.json()
    if not isinstance(payload, Mapping):
        raise PayloadError("body must be a JSON object")
    return payload


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(value: Any, field: str) -> Decimal:
    """A JSON number or numeric string as a Decimal, exactly (no float detour beyond the one
    the JSON parser made: `str(5000.1)` is `"5000.1"`)."""
    # Only these: str() of a list or of a 1,000-level nesting is not a number (or a crash).
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise PayloadError(f"{field} is not a number ({_json_type(value)})")
    try:
        return Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise PayloadError(f"{field} is not a number: {_shown(value)}") from exc


def _amount(amount: Decimal, value: Any, field: str) -> Decimal:
    """`amount` when the canonical model takes it (bounds: bridge.events), else PayloadError."""
    problem = amount_problem(amount)
    if problem:
        raise PayloadError(f"{field} {problem}: {_shown(value)}")
    return amount


def to_decimal(value: Any, field: str) -> Decimal:
    """A non-negative amount from a JSON number or numeric string, within the canonical
    model's bounds (`bridge.events.amount_problem`)."""
    return _amount(_number(value, field), value, field)


_CENTS = Decimal("0.01")


def minor_to_decimal(value: Any, field: str) -> Decimal:
    """An amount in minor units (kobo, cents) as major units with two decimals:
    500000 -> Decimal("5000.00")."""
    minor = _number(value, field)
    if minor.is_finite() and minor != minor.to_integral_value():
        raise PayloadError(f"{field} is in minor units and must be a whole number: {_shown(value)}")
    if not minor.is_finite() or abs(minor) >= Decimal(10) ** 30:  # do not divide a 1e999999
        return _amount(minor, value, field)
    return _amount((minor / 100).quantize(_CENTS), value, field)


#: West Africa Time (Africa/Lagos, no daylight saving): the zone of Nigerian providers'
#: timestamps that carry no offset.
WAT = timezone(timedelta(hours=1), "WAT")

_DAY_FIRST_FORMATS = ("%d/%m/%Y %I:%M:%S %p", "%d/%m/%Y %H:%M:%S")


def to_datetime(value: Any, *, default_tz: tzinfo = UTC) -> datetime | None:
    """A provider timestamp as an aware datetime, or None when absent or unreadable.

    Accepts ISO 8601 (`Z`, `+0000`, a space instead of `T`), Monnify's `17/03/2021 6:00:05 AM`
    and Unix seconds or milliseconds. A timestamp is informational here, so an unreadable one
    does not reject the event (the event time falls back to the time of receipt).
    """
    if value is None or isinstance(value, bool) or value == "":
        return None
    parsed: datetime | None = None
    if isinstance(value, int | float):
        try:
            seconds = value / 1000 if value > 1e11 else value
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        for fmt in _DAY_FIRST_FORMATS:
            try:
                parsed = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=default_tz)


_PHONE_FORMATTING = re.compile(r"[\s\-().]")


def phone_digits(value: Any) -> str | None:
    """An international number (`+254 712-345678`, `00254712345678`) as digits without `+`
    (`254712345678`), the form Siteti takes. Anything else (a national number, free text)
    gives None: without a country it cannot be made international safely."""
    if not isinstance(value, str):
        return None
    text = _PHONE_FORMATTING.sub("", value.strip())
    if text.startswith("+"):
        digits = text[1:]
    elif text.startswith("00"):
        digits = text[2:]
    else:
        return None
    if not (digits.isascii() and digits.isdigit()) or not 8 <= len(digits) <= 15:
        return None
    if digits.startswith("0"):
        return None
    return digits


def customer_name(*parts: Any) -> str | None:
    """Join the non-empty name parts (`first_name`, `last_name`), or None."""
    words = [str(part).strip() for part in parts if isinstance(part, str) and part.strip()]
    return " ".join(words) or None
