"""The pure parts of the sources without webhooks: row → event mapping (poller and file
drop), CSV/XML reading, the file plan and report, and the schedule in Africa/Lagos."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ingest.sources import RowError, as_text, parse_amount, parse_time
from ingest.sources.filedrop import next_run, parse_schedule, zone
from ingest.sources.filedrop_reader import (
    FiledropConfig,
    FileFormatError,
    Record,
    Skipped,
    map_record,
    parse_columns,
    parse_status_types,
    plan_file,
    read_csv,
    read_xml,
    reference_prefix,
)
from ingest.sources.poller import map_row, prepare, row_hash

FIXTURES = Path(__file__).parents[1] / "fixtures" / "filedrop"
LAGOS = ZoneInfo("Africa/Lagos")
SHA = "ab" * 32


def order_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "source_id": "ORD-1:completed",
        "event_type": "order.completed",
        "transaction_reference": "ORD-1",
        "amount": Decimal("18500.00"),
        "currency": "ngn",
        "account_number": "0123456789",
        "email": "ada@example.com",
        "phone": None,
        "name": "Ada Obi",
        "occurred_at": datetime(2026, 1, 20, 9, 30, tzinfo=UTC),
        "items": 2,
        "carrier": None,
        "gift": True,
        "shipped_on": date(2026, 1, 21),
    }
    row.update(overrides)
    return row


# --- poller mapping ----------------------------------------------------------------------------


def test_row_maps_to_a_bulk_canonical_event() -> None:
    event = map_row(order_row(), "dbpoll")
    assert event.type == "order.completed"
    assert event.priority == "bulk"
    assert event.subject == "dbpoll:ORD-1"
    assert event.source == "/siteti-bridge/ingest/dbpoll"
    assert event.dedupe_key == "dbpoll:ORD-1:order.completed"
    data = event.data
    assert data.provider == "dbpoll"
    assert data.amount == Decimal("18500.00")
    assert data.currency == "NGN"
    assert data.customer.account_number == "0123456789"
    assert data.customer.email == "ada@example.com"
    assert data.customer.phone is None
    assert data.customer.name == "Ada Obi"
    assert data.occurred_at == datetime(2026, 1, 20, 9, 30, tzinfo=UTC)
    # Other columns become text details; NULLs are dropped; source_id is kept for tracing.
    assert data.details == {
        "source_id": "ORD-1:completed",
        "items": "2",
        "gift": "true",
        "shipped_on": "2026-01-21",
    }
    assert event.time == data.occurred_at


def test_the_event_id_is_deterministic_so_a_republish_is_deduped() -> None:
    first = map_row(order_row(), "dbpoll")
    again = map_row(order_row(occurred_at=None, items=3), "dbpoll")
    assert again.id == first.id
    assert again.dedupe_key == first.dedupe_key
    shipped = map_row(order_row(event_type="order.shipped"), "dbpoll")
    assert shipped.id != first.id


def test_reference_defaults_to_source_id_and_naive_times_are_wat() -> None:
    event = map_row(
        order_row(transaction_reference=None, occurred_at=datetime(2026, 1, 20, 9, 30)),
        "shop",
    )
    assert event.subject == "shop:ORD-1:completed"
    assert event.data.occurred_at == datetime(2026, 1, 20, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"amount": "12.5.0"}, "amount is not a number"),
        ({"amount": None}, "amount is missing"),
        ({"amount": Decimal("-1")}, "must not be negative"),
        ({"event_type": "order.teleported"}, "not a canonical event type"),
        ({"event_type": None}, "event_type is missing"),
        ({"account_number": None, "email": " ", "phone": None}, "no customer"),
        ({"currency": "naira"}, "not an ISO 4217 code"),
        ({"occurred_at": "yesterday"}, "occurred_at is not an ISO 8601"),
        ({"source_id": None}, "source_id is missing"),
    ],
)
def test_unmappable_rows_say_why(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(RowError, match=message):
        map_row(order_row(**overrides), "dbpoll")


def test_prepare_keeps_going_past_bad_rows_and_skips_repeats() -> None:
    rows = [
        order_row(),
        order_row(source_id="ORD-2:completed", transaction_reference="ORD-2", amount="abc"),
        order_row(),  # the same source_id again
        order_row(source_id=None),
        order_row(source_id=7, transaction_reference="ORD-7"),
    ]
    candidates, skipped = prepare(rows, "dbpoll")
    assert skipped == 2
    assert [c.source_id for c in candidates] == ["ORD-1:completed", "ORD-2:completed", "7"]
    assert candidates[0].event is not None and candidates[0].error is None
    assert candidates[1].event is None and "amount is not a number" in (candidates[1].error or "")
    assert candidates[2].event is not None


def test_row_hash_follows_the_content() -> None:
    assert row_hash(order_row()) == row_hash(order_row())
    assert row_hash(order_row()) != row_hash(order_row(amount=Decimal("18500.01")))


def test_values_as_text_and_amounts() -> None:
    assert as_text(Decimal("1.50")) == "1.50"
    assert as_text(False) == "false"
    assert as_text("  ") is None
    assert as_text({"a": 1}) == '{"a":1}'
    assert as_text(b"\x01\xff") == "01ff"
    assert parse_amount("12,500.00") == Decimal("12500.00")
    assert parse_amount(0.1) == Decimal("0.1")
    assert parse_amount(3) == Decimal(3)
    assert parse_time(date(2026, 1, 20)) == datetime(
        2026, 1, 20, tzinfo=timezone(timedelta(hours=1))
    )
    assert parse_time("") is None


# --- file drop: reading ------------------------------------------------------------------------


def test_csv_rows_with_normalised_headers_and_their_lines() -> None:
    records, bad = read_csv(FIXTURES.joinpath("rent_status.csv").read_bytes())
    assert bad == []
    assert [r.position for r in records] == ["L2", "L3", "L4"]
    assert records[0].fields["amount_due"] == "450,000.00"
    assert records[0].fields["tenant_account"] == "0123456789"


def test_csv_dialects_bom_and_structural_problems() -> None:
    data = (
        "\ufeffRecord ID;Tenant Account;Amount Due;Status\r\n"
        "1;0123456789;100;overdue;\r\n"  # a trailing delimiter is fine
        "2;0234567890;200\r\n"  # a field short
        "\r\n"
        "3;0345678901;300;overdue;extra\r\n"  # a field too many
    ).encode()
    records, bad = read_csv(data)
    assert [(r.position, dict(r.fields)) for r in records] == [
        (
            "L2",
            {
                "record_id": "1",
                "tenant_account": "0123456789",
                "amount_due": "100",
                "status": "overdue",
            },
        )
    ]
    assert [(b.row, b.reason) for b in bad] == [
        ("L3", "3 fields, the header has 4"),
        ("L5", "5 fields, the header has 4"),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"a,b,A\n1,2,3\n", "appears twice"),
        (b"name,amount\n\xff\xfe,1\n", "not utf-8-sig text"),
    ],
)
def test_unreadable_csv(data: bytes, message: str) -> None:
    with pytest.raises(FileFormatError, match=message):
        read_csv(data)


def test_xml_records_fields_and_attributes() -> None:
    records, bad = read_xml(FIXTURES.joinpath("rent_status.xml").read_bytes())
    assert bad == []
    assert [r.position for r in records] == ["R1", "R2"]
    assert records[0].fields["id"] == "X-1"
    assert records[0].fields["amount_due"] == "420000.00"
    assert records[1].fields["record_id"] == "X-2"
    assert records[1].line == 13


def test_xml_refuses_doctypes_and_reports_nested_fields() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]>'
        b"<records><record><name>&b;</name></record></records>"
    )
    with pytest.raises(FileFormatError, match="DOCTYPE"):
        read_xml(bomb)
    with pytest.raises(FileFormatError, match="malformed XML"):
        read_xml(b"<records><record><name>Ada</record></records>")
    records, bad = read_xml(
        b"<records><record><name>Ada</name><amount><v>1</v></amount></record>"
        b"<ns:record xmlns:ns='urn:x'><ns:name>Bo</ns:name></ns:record></records>"
    )
    assert [(b.row, b.reason) for b in bad] == [("R1", "field 'amount' has child elements")]
    assert [dict(r.fields) for r in records] == [{"name": "Bo"}]


# --- file drop: mapping ------------------------------------------------------------------------


def record(**fields: str) -> Record:
    return Record("L2", 2, fields)


RENT = {
    "record_id": "R-1",
    "tenant_account": "0123456789",
    "name": "Ada Obi",
    "phone": "08031234567",
    "email": "",
    "property": "Palm Court Lekki B4",
    "amount_due": "450,000.00",
    "currency": "NGN",
    "due_date": "2026-01-15",
    "status": "overdue",
}


def test_an_overdue_row_becomes_rent_overdue() -> None:
    event = map_record(
        record(**RENT), FiledropConfig(), reference_prefix="rent:abcdef0123", file_name="rent.csv"
    )
    assert not isinstance(event, Skipped)
    assert event.type == "rent.overdue"
    assert event.priority == "bulk"
    assert event.subject == "filedrop:rent:abcdef0123:R-1"
    assert event.data.amount == Decimal("450000.00")
    assert event.data.customer.account_number == "0123456789"
    assert event.data.customer.phone == "08031234567"
    assert event.data.customer.email is None
    assert event.data.next_due_date == "2026-01-15"
    # The contact stays out of details; the rest is there for templates and tracing.
    assert event.data.details == {
        "record_id": "R-1",
        "property": "Palm Court Lekki B4",
        "due_date": "2026-01-15",
        "status": "overdue",
        "source_file": "rent.csv",
        "source_row": "R-1",
    }


def test_status_mapping_skips_and_overrides() -> None:
    config = FiledropConfig()
    kwargs: dict[str, Any] = {"reference_prefix": "p:0", "file_name": "f.csv"}
    due = map_record(record(**{**RENT, "status": "Due Soon"}), config, **kwargs)
    assert not isinstance(due, Skipped) and due.type == "rent.reminder"
    assert map_record(record(**{**RENT, "status": "paid"}), config, **kwargs) == Skipped(
        "status 'paid' sends nothing"
    )
    with pytest.raises(RowError, match="status 'evicted' is not one of"):
        map_record(record(**{**RENT, "status": "evicted"}), config, **kwargs)
    typed = map_record(
        record(**{**RENT, "status": "", "event_type": "loan.approved"}), config, **kwargs
    )
    assert not isinstance(typed, Skipped) and typed.type == "loan.approved"
    # Without a record_id the row's position names it.
    positional = map_record(record(**{**RENT, "record_id": ""}), config, **kwargs)
    assert not isinstance(positional, Skipped) and positional.subject == "filedrop:p:0:L2"


def test_columns_and_statuses_are_configurable() -> None:
    config = FiledropConfig(
        columns=parse_columns("amount=Balance|amount_due, account_number=tenant_id"),
        status_types=parse_status_types("late=rent.overdue,ok="),
    )
    event = map_record(
        record(tenant_id="77", balance="10", status="LATE"),
        config,
        reference_prefix="p:0",
        file_name="f.csv",
    )
    assert not isinstance(event, Skipped)
    assert (event.type, event.data.amount, event.data.customer.account_number) == (
        "rent.overdue",
        Decimal(10),
        "77",
    )
    with pytest.raises(RowError, match="balance is not a number"):
        map_record(
            record(tenant_id="77", balance="ten", status="late"),
            config,
            reference_prefix="p:0",
            file_name="f.csv",
        )
    with pytest.raises(ValueError, match="not field=column"):
        parse_columns("colour=red")
    with pytest.raises(ValueError, match="not a canonical type"):
        parse_status_types("late=rent.late")


def test_a_file_with_a_bad_row_keeps_its_good_rows() -> None:
    data = FIXTURES.joinpath("rent_status_bad_rows.csv").read_bytes()
    plan = plan_file("rent_status_bad_rows.csv", data, SHA, FiledropConfig())
    assert not plan.failed
    assert plan.rows == 4
    assert [(r.position, e.type) for r, e in plan.events] == [
        ("L2", "rent.overdue"),
        ("L5", "rent.reminder"),
    ]
    assert [(b.row, b.line) for b in plan.bad] == [("L3", 3), ("L4", 4)]
    assert "amount_due is not a number" in plan.bad[0].reason
    assert "status 'evicted'" in plan.bad[1].reason
    prefix = reference_prefix("rent_status_bad_rows.csv", SHA)
    assert prefix == "rent_status_bad_rows:" + SHA[:10]
    assert plan.events[0][1].subject == f"filedrop:{prefix}:L2"


def test_file_level_failures() -> None:
    config = FiledropConfig()
    all_bad = b"tenant_account,amount_due,status\n1,x,overdue\n2,y,overdue\n"
    assert plan_file("a.csv", all_bad, SHA, config).failed
    missing = plan_file("b.csv", b"tenant_account,status\n1,overdue\n", SHA, config)
    assert missing.failed and "missing columns: amount" in (missing.error or "")
    other = plan_file("c.pdf", b"%PDF", SHA, config)
    assert other.failed and "unsupported file type" in (other.error or "")
    repeated = plan_file(
        "d.csv",
        b"record_id,tenant_account,amount_due,status\n1,a,1,overdue\n1,b,2,overdue\n",
        SHA,
        config,
    )
    assert not repeated.failed
    assert [b.reason for b in repeated.bad] == ["row id '1' repeats line 2"]
    # Paid tenants only: nothing to send, nothing wrong.
    paid = plan_file("e.csv", b"tenant_account,amount_due,status\n1,5,paid\n", SHA, config)
    assert not paid.failed and not paid.events and len(paid.skipped) == 1


def test_the_same_row_in_the_same_file_gives_the_same_event() -> None:
    data = FIXTURES.joinpath("rent_status.xml").read_bytes()
    first = plan_file("rent.xml", data, SHA, FiledropConfig())
    again = plan_file("rent.xml", data, SHA, FiledropConfig())
    assert [e.id for _, e in first.events] == [e.id for _, e in again.events]
    other_export = plan_file("rent.xml", data, "cd" * 32, FiledropConfig())
    assert {e.id for _, e in first.events}.isdisjoint(e.id for _, e in other_export.events)


# --- file drop: schedule -----------------------------------------------------------------------


def test_next_run_is_computed_in_lagos_time() -> None:
    eight = [time(8, 0)]
    # 06:59 UTC is 07:59 in Lagos: today's 08:00 WAT, which is 07:00 UTC.
    at = next_run(datetime(2026, 1, 20, 6, 59, tzinfo=UTC), eight, LAGOS)
    assert at == datetime(2026, 1, 20, 7, 0, tzinfo=UTC)
    assert at.utcoffset() == timedelta(hours=1)
    assert at.strftime("%H:%M") == "08:00"
    # Exactly on time runs now; a second later waits for tomorrow.
    assert next_run(datetime(2026, 1, 20, 7, 0, tzinfo=UTC), eight, LAGOS) == at
    assert next_run(datetime(2026, 1, 20, 7, 0, 1, tzinfo=UTC), eight, LAGOS) == datetime(
        2026, 1, 21, 7, 0, tzinfo=UTC
    )
    # 23:30 UTC on the 20th is already the 21st in Lagos.
    assert next_run(datetime(2026, 1, 20, 23, 30, tzinfo=UTC), eight, LAGOS) == datetime(
        2026, 1, 21, 7, 0, tzinfo=UTC
    )
    # Several times a day; `now` in another zone.
    new_york = ZoneInfo("America/New_York")
    twice = parse_schedule("14:30, 08:00")
    assert twice == [time(8, 0), time(14, 30)]
    assert next_run(datetime(2026, 1, 20, 5, 0, tzinfo=new_york), twice, LAGOS) == datetime(
        2026, 1, 20, 13, 30, tzinfo=UTC
    )
    # Month and year ends.
    assert next_run(datetime(2026, 12, 31, 12, 0, tzinfo=UTC), eight, LAGOS) == datetime(
        2027, 1, 1, 7, 0, tzinfo=UTC
    )


def test_schedule_validation_and_zone_fallback() -> None:
    assert parse_schedule("") == []
    with pytest.raises(ValueError, match="not HH:MM"):
        parse_schedule("8am")
    with pytest.raises(ValueError, match="not HH:MM"):
        parse_schedule("25:00")
    with pytest.raises(ValueError, match="aware"):
        next_run(datetime(2026, 1, 20, 8, 0), [time(8, 0)], LAGOS)
    assert zone("Africa/Lagos").utcoffset(datetime(2026, 6, 1)) == timedelta(hours=1)
