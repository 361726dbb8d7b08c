"""Reading a provider's payload: typed field readers that name the field in their
PayloadError (answered 422), amounts, times, phone numbers, and the one builder of
`EventData` (`event_data`, with the currency default).

Provider modules import it as a namespace: `from . import fields as f`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, TypedDict, Unpack

from pydantic import ValidationError

from bridge.events import Customer, EventData, amount_problem, describe


class PayloadError(ValueError):
    """The body is authentic but not something we can turn into an event (answered 422)."""


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


def currency_field(mapping: Mapping[str, Any], label: str, *, required: bool = False) -> str | None:
    """`mapping["currency"]` in capitals, or None when absent (`event_data` then uses
    DEFAULT_CURRENCY); PayloadError when `required`. The canonical model checks the code."""
    value = text_field(mapping, "currency", label)
    if value is None:
        if required:
            raise PayloadError(f"missing field {label}")
        return None
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


def email_customer(customer: Mapping[str, Any], label: str) -> Customer:
    """The customer of an object with a required `email` and an optional `name` (`label`:
    the object's full name, e.g. `data.customer`)."""
    return Customer(
        email=required_text(customer, "email", f"{label}.email"),
        name=text_field(customer, "name", f"{label}.name"),
    )


def contact_customer(
    mapping: Mapping[str, Any], label: str, *, phone: str, email: str, name: str, missing: str
) -> Customer:
    """A customer reached by an international phone number (`mapping[phone]`) or found by
    email; PayloadError `missing` when neither is given. `label`: the object's full name,
    "" at the top level."""

    def named(key: str) -> str:
        return f"{label}.{key}" if label else key

    number = phone_digits(text_field(mapping, phone, named(phone)))
    address = text_field(mapping, email, named(email))
    if not number and not address:
        raise PayloadError(missing)
    return Customer(phone=number, email=address, name=text_field(mapping, name, named(name)))


def failure_reason(
    mapping: Mapping[str, Any], label: str, *keys: str, default: str, failed: bool = True
) -> str | None:
    """On a failed event, the first of `mapping[keys]` given (`label`: the object's full
    name), else `default`; None on any other event."""
    if not failed:
        return None
    for key in keys:
        value = text_field(mapping, key, f"{label}.{key}")
        if value:
            return value
    return default


#: the currency of an event whose payload names none (the Nigerian providers' own)
DEFAULT_CURRENCY = "NGN"


class EventFields(TypedDict, total=False):
    """`EventData`'s optional fields, as `event_data` takes them."""

    reason: str | None
    description: str | None
    channel: str | None
    occurred_at: datetime | None
    next_due_date: str | None


def event_data(
    provider: str,
    reference: str,
    amount: Decimal,
    customer: Customer,
    *,
    currency: str | None = None,
    **fields: Unpack[EventFields],
) -> EventData:
    """The canonical event data; `currency=None` (the payload names none) is DEFAULT_CURRENCY.
    A value the canonical model refuses raises pydantic's ValidationError: build it inside
    `payload_fields()` (the adapters' `parse` does) so that it is answered 422."""
    return EventData(
        provider=provider,
        transaction_reference=reference,
        amount=amount,
        currency=currency or DEFAULT_CURRENCY,
        customer=customer,
        **fields,
    )
