from __future__ import annotations

import pytest

from bridge.phones import to_siteti
from dispatcher.directory import parse_row


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("08031234567", "2348031234567"),
        ("0803 123 4567", "2348031234567"),
        ("+234 803 123 4567", "2348031234567"),
        ("2348031234567", "2348031234567"),
        ("0803-123-4567", "2348031234567"),
        ("09017890123", "2349017890123"),
        ("07012345678", "2347012345678"),
        ("", None),
        ("   ", None),
        (None, None),
        ("12345", None),
        ("0123456789", None),  # an account number, not a phone
        ("not a phone", None),
        ("01 234 5678", None),  # a Lagos landline: no WhatsApp
    ],
)
def test_nigerian_forms(raw: str | None, expected: str | None) -> None:
    assert to_siteti(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+254712345678", "254712345678"),
        ("+22961234567", "22961234567"),
        ("+99912", None),
        ("+1", None),
    ],
)
def test_trusted_international(raw: str, expected: str | None) -> None:
    assert to_siteti(raw, trusted=True) == expected


def row(**overrides: str) -> dict[str, str]:
    base = {
        "account_number": "0123456789",
        "email": "A@Example.com",
        "phone": "08031234567",
        "name": "Ada",
        "tier": "first_time",
        "late_payments": "0",
    }
    return {**base, **overrides}


def test_parse_row_normalises() -> None:
    values, problem = parse_row(row(), "NG")
    assert problem is None and values is not None
    assert values["phone"] == "2348031234567" and values["email"] == "a@example.com"


def test_empty_phone_is_imported_without_number() -> None:
    values, problem = parse_row(row(phone=""), "NG")
    assert problem is None and values is not None and values["phone"] is None


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"phone": "12345"}, "phone is not a valid mobile number"),
        ({"tier": "vip"}, "tier must be one of first_time, returning"),
        ({"late_payments": "two"}, "late_payments must be a whole number"),
        ({"account_number": "", "email": ""}, "needs an account_number or an email"),
    ],
)
def test_bad_rows_are_reported(overrides: dict[str, str], problem: str) -> None:
    values, why = parse_row(row(**overrides), "NG")
    assert values is None and why == problem
