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
from bridge.events import CanonicalEvent


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
    event = str(payload.get(event_key) or "")
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


@contextmanager
def payload_fields() -> Iterator[None]:
    """Turn a field of the wrong type (pydantic's ValidationError while building the
    canonical event) into PayloadError, answered 422 like any other unusable payload."""
    try:
        yield
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise PayloadError(f"unusable field value ({problems})") from exc


def json_object(request: WebhookRequest) -> Mapping[str, Any]:
    """The parsed body, which must be a JSON object."""
    payload = request.json()
    if not isinstance(payload, Mapping):
        raise PayloadError("body must be a JSON object")
    return payload


_MAX_AMOUNT = Decimal(10) ** 15
_MAX_DECIMALS = 20


def to_decimal(value: Any, field: str) -> Decimal:
    """A non-negative amount from a JSON number or numeric string, exactly (no float detour
    beyond the one the JSON parser made: `str(5000.1)` is `"5000.1"`)."""
    if isinstance(value, bool):
        raise PayloadError(f"{field} is not a number: {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise PayloadError(f"{field} is not a number: {value!r}") from exc
    if not amount.is_finite() or amount < 0:
        raise PayloadError(f"{field} must be a non-negative number")
    # Bounded, so that writing it out in full ("f") stays small: 1e999999 is not an amount.
    exponent = amount.as_tuple().exponent
    if amount >= _MAX_AMOUNT or (isinstance(exponent, int) and exponent < -_MAX_DECIMALS):
        raise PayloadError(f"{field} is out of range: {value!r}")
    return amount


_CENTS = Decimal("0.01")


def minor_to_decimal(value: Any, field: str) -> Decimal:
    """An amount in minor units (kobo, cents) as major units with two decimals:
    500000 -> Decimal("5000.00")."""
    minor = to_decimal(value, field)
    if minor != minor.to_integral_value():
        raise PayloadError(f"{field} is in minor units and must be a whole number: {value!r}")
    return (minor / 100).quantize(_CENTS)


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
        seconds = value / 1000 if value > 1e11 else value
        try:
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
