"""An event's JSON is written by pydantic-core: the same bytes orjson writes over
`model_dump(mode="json")`, what every consumer and stored event was written as before."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.events import TEXT_PATTERN, CanonicalEvent, Customer, EventData, new_event

_TEXT = re.compile(TEXT_PATTERN)
texts = st.text(max_size=40).filter(lambda t: bool(_TEXT.match(t)))


@settings(max_examples=500)
@given(
    name=texts,
    amount=st.decimals(min_value=0, max_value=10**11, places=3, allow_nan=False),
    offset_minutes=st.integers(-720, 720),
    microsecond=st.integers(0, 999_999),
    details=st.dictionaries(st.from_regex(r"[a-z_]{1,10}", fullmatch=True), texts, max_size=3),
)
def test_to_json_is_orjson_over_the_json_dump(
    name: str, amount: Decimal, offset_minutes: int, microsecond: int, details: dict[str, str]
) -> None:
    zone = timezone(timedelta(minutes=offset_minutes))
    data = EventData(
        provider="moniepoint",
        transaction_reference="MNP-1",
        amount=amount,
        customer=Customer(account_number="3000000001", name=name or None),
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, microsecond, tzinfo=zone),
        details=details,
    )
    event = new_event(data, "payment.successful")
    written = event.to_json()
    assert written == orjson.dumps(event.model_dump(mode="json"))
    assert CanonicalEvent.from_json(written) == event
