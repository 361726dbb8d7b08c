"""Issue 12: the double-fire rule (dispatcher.doublefire), pure: no Redis needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from bridge.events import CanonicalEvent, Customer, EventData, new_event
from dispatcher.doublefire import Fire, earlier_fire, fingerprint, fire_of, is_double_fire

WHEN = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)


def event(
    reference: str = "TX-1",
    amount: Decimal = Decimal("5000"),
    *,
    provider: str = "moniepoint",
    kind: str = "payment.successful",
    currency: str = "NGN",
    occurred_at: datetime | None = WHEN,
) -> CanonicalEvent:
    data = EventData(
        provider=provider,
        transaction_reference=reference,
        amount=amount,
        currency=currency,
        customer=Customer(account_number="0123456789"),
        occurred_at=occurred_at,
    )
    return new_event(data, kind, received_at=WHEN + timedelta(minutes=5))


times = st.floats(min_value=1e9, max_value=2e9, allow_nan=False)
windows = st.floats(min_value=0, max_value=3600, allow_nan=False)


@given(times, times, windows)
def test_two_events_are_fires_of_one_payment_only_within_the_window(
    first: float, second: float, window: float
) -> None:
    a, b = Fire("evt-a", "p:A", first), Fire("evt-b", "p:B", second)
    expected = window > 0 and abs(first - second) <= window
    assert is_double_fire(a, b, window) is expected
    assert is_double_fire(b, a, window) is expected  # whichever came first


@given(times, windows)
def test_an_event_is_never_a_double_fire_of_itself(at: float, window: float) -> None:
    # A redelivery of the same event (same id) is the dedupe key's business, not this rule's.
    assert not is_double_fire(Fire("evt-a", "p:A", at), Fire("evt-a", "p:A", at), window)


def test_a_zero_window_turns_the_check_off() -> None:
    assert not is_double_fire(Fire("a", "p:A", 100.0), Fire("b", "p:B", 100.0), 0)


def test_the_repeated_fire_is_the_nearest_in_time() -> None:
    seen = [Fire("far", "p:F", 1000.0), Fire("near", "p:N", 1090.0), Fire("out", "p:O", 5000.0)]
    fire = Fire("new", "p:X", 1100.0)
    assert earlier_fire(seen, fire, 120) == seen[1]
    assert earlier_fire(seen, fire, 5) is None
    assert earlier_fire([], fire, 120) is None
    assert earlier_fire([fire], fire, 120) is None  # itself, read back after a redelivery


@given(
    st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=4),
)
def test_one_amount_written_any_way_is_one_fingerprint(amount: Decimal, zeros: int) -> None:
    padded = amount.quantize(Decimal(1).scaleb(-(2 + zeros)))  # 5000.00 → 5000.0000
    assert fingerprint(event(amount=amount), "cust") == fingerprint(event(amount=padded), "cust")


def test_the_fingerprint_is_provider_type_customer_amount_and_currency() -> None:
    base = fingerprint(event(), "cust")
    assert fingerprint(event("TX-2"), "cust") == base  # another reference: the point of it
    assert fingerprint(event(occurred_at=WHEN + timedelta(hours=1)), "cust") == base
    others = [
        fingerprint(event(provider="paystack"), "cust"),
        fingerprint(event(kind="transfer.completed"), "cust"),
        fingerprint(event(), "someone-else"),
        fingerprint(event(amount=Decimal("5000.01")), "cust"),
        fingerprint(event(currency="USD"), "cust"),
    ]
    assert base not in others and len(set(others)) == len(others)


def test_the_providers_time_is_compared_else_the_edges() -> None:
    assert fire_of(event()).at == WHEN.timestamp()
    unstamped = event(occurred_at=None)
    assert fire_of(unstamped).at == (WHEN + timedelta(minutes=5)).timestamp()
    assert (fire_of(unstamped).event_id, fire_of(unstamped).reference) == (
        unstamped.id,
        "moniepoint:TX-1",
    )
