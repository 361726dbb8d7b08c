"""bridge.protect: sealed values, keyed hashes, the edge's sealed records."""

from __future__ import annotations

import base64
import os
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.events import CanonicalEvent, Customer, EventData, new_event
from bridge.protect import (
    DataKeys,
    KeyConfigError,
    SealError,
    customer_key,
    is_sealed,
    key_entries,
    last_four,
    new_key_entry,
    sealed_by,
    sealed_record,
)

INDEX = base64.b64encode(os.urandom(32)).decode()
OLD, NEW = new_key_entry("old"), new_key_entry("new")


def keys(*entries: str) -> DataKeys:
    return DataKeys.parse(list(entries), INDEX)


@given(st.text(max_size=300))
@settings(max_examples=200)
def test_any_text_seals_and_opens(value: str) -> None:
    ring = keys(OLD)
    sealed = ring.seal(value, "name")
    assert is_sealed(sealed) and sealed_by(sealed) == "old"
    assert ring.open(sealed, "name") == value
    if len(value) >= 6:
        assert value not in sealed


def test_a_seal_is_fresh_each_time_and_bound_to_its_kind() -> None:
    ring = keys(OLD)
    first, second = ring.seal("2348031234567", "phone"), ring.seal("2348031234567", "phone")
    assert first != second  # a random nonce: equal numbers do not look equal at rest
    with pytest.raises(SealError):
        ring.open(first, "email")


def test_the_first_key_seals_every_listed_key_opens() -> None:
    sealed_old = keys(OLD).seal("2348031234567", "phone")
    ring = keys(NEW, OLD)
    assert ring.open(sealed_old, "phone") == "2348031234567"
    resealed = ring.reseal(sealed_old, "phone")
    assert sealed_by(resealed) == "new" and ring.open(resealed, "phone") == "2348031234567"
    assert ring.reseal(resealed, "phone") == resealed
    with pytest.raises(SealError, match="does not list"):
        keys(NEW).open(sealed_old, "phone")


def test_a_tampered_value_does_not_open() -> None:
    ring = keys(OLD)
    sealed = ring.seal("2348031234567", "phone")
    body = bytearray(base64.urlsafe_b64decode(sealed.split(":", 2)[2]))
    body[-1] ^= 1
    damaged = "enc:old:" + base64.urlsafe_b64encode(bytes(body)).decode()
    with pytest.raises(SealError):
        ring.open(damaged, "phone")


def test_clear_legacy_values_pass_through_open() -> None:
    assert keys(OLD).open("2348031234567", "phone") == "2348031234567"


def test_keyed_hashes_are_stable_and_depend_on_the_index_key() -> None:
    ring = keys(OLD)
    assert ring.phone_index("2348031234567") == keys(NEW).phone_index("2348031234567")
    other = DataKeys.parse([OLD], base64.b64encode(os.urandom(32)).decode())
    assert ring.phone_index("2348031234567") != other.phone_index("2348031234567")
    assert ring.email_index(" Ada@Example.com") == ring.email_index("ada@example.com")
    assert ring.index("123", "account") != ring.index("123", "phone")


@pytest.mark.parametrize(
    ("entries", "index", "problem"),
    [
        ([], INDEX, "BRIDGE_DATA_KEYS is not set"),
        (["nocolon"], INDEX, "cannot be read"),
        (["k1:" + base64.b64encode(b"short").decode()], INDEX, "AES-256 needs 32"),
        (["k 1:" + base64.b64encode(os.urandom(32)).decode()], INDEX, "id:base64key"),
        (["k1:%%%"], INDEX, "not base64"),
        ([OLD, OLD], INDEX, "twice"),
        ([OLD], "", "BRIDGE_INDEX_KEY is not set"),
        ([OLD], base64.b64encode(b"x" * 8).decode(), "at least 32"),
    ],
)
def test_bad_configuration_says_what_to_fix(entries: list[str], index: str, problem: str) -> None:
    with pytest.raises(KeyConfigError, match=problem) as caught:
        DataKeys.parse(entries, index)
    # The message never quotes key material.
    for entry in entries:
        assert entry.partition(":")[2] not in str(caught.value) or not entry.partition(":")[2]


def test_keys_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# current first\n{NEW}\n\n{OLD}\n")
    assert key_entries([str(path)]) == [NEW, OLD]
    assert DataKeys.parse([str(path)], INDEX).current_id == "new"


def test_last_four() -> None:
    assert last_four("2348031234567") == "•••4567"
    assert last_four(None) is None


def _event(customer: Customer) -> CanonicalEvent:
    data = EventData(
        provider="openmarket", transaction_reference="OM-1", amount=Decimal(5), customer=customer
    )
    return new_event(data, "payment.successful")


def test_the_edge_seals_the_number_and_hashes_the_key() -> None:
    ring = keys(OLD)
    event = _event(Customer(phone="+234 803 123 4567", name="Ada"))
    key, value = sealed_record(event, ring, "NG")
    assert b"8031234567" not in key + value
    published = CanonicalEvent.from_json(value)
    assert ring.open(published.data.customer.phone or "", "phone") == "+234 803 123 4567"
    # Any way of writing the number gives the same key: the customer's events stay together.
    same = sealed_record(_event(Customer(phone="08031234567")), ring, "NG")[0]
    assert key == same == ring.phone_index("2348031234567").encode()
    # A sealed event published again (a replay) keeps its seal and its key.
    assert sealed_record(published, ring, "NG") == (key, value)


def test_account_and_email_keys_are_hashed_too() -> None:
    ring = keys(OLD)
    by_account = _event(Customer(account_number="0123456789", phone="08031234567"))
    key, value = sealed_record(by_account, ring, "NG")
    assert key == ring.index("0123456789", "account").encode()
    assert b"0123456789" not in key
    assert orjson.loads(value)["data"]["customer"]["account_number"] == "0123456789"
    by_email = _event(Customer(email="Ada@Example.com"))
    assert customer_key(by_email, ring, "NG") == ring.email_index("ada@example.com")
