"""Erasure's pure parts: the subject, whose rows, the plan, and file-drop copies rewritten
without the customer's rows."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from bridge.protect import DataKeys, new_key_entry
from dispatcher.dedupe import Dedupe
from dispatcher.erasure import (
    DirectoryRow,
    Found,
    SubjectError,
    customer_hashes,
    plan,
    redis_candidates,
    subject_of,
    wanted_of,
)
from dispatcher.erasure_files import FileRewrite, Wanted, strip_rows
from ingest.sources.filedrop_reader import FiledropConfig, read_csv

KEYS = DataKeys.parse([new_key_entry("unit")], base64.b64encode(os.urandom(32)).decode())
PHONE = "2348031234567"
CONFIG = FiledropConfig()


def row(**values: object) -> DirectoryRow:
    base: dict[str, object] = {
        "id": 1,
        "account_number": "0123456789",
        "phone": PHONE,
        "phone_index": KEYS.phone_index(PHONE),
        "email_index": KEYS.email_index("ada@example.com"),
        "contact_id": "ct_1",
    }
    return DirectoryRow(**{**base, **values})  # type: ignore[arg-type]


def test_subject_normalises_the_number_and_hashes_it() -> None:
    for raw in ("08031234567", "0803 123 4567", "+234 803 123 4567", "2348031234567"):
        subject = subject_of("phone", raw, KEYS, "NG")
        assert (subject.value, subject.hash) == (PHONE, KEYS.phone_index(PHONE))
    account = subject_of("account", " 0123456789 ", KEYS, "NG")
    assert account.hash == KEYS.index("0123456789", "account") and account.kind == "account"
    with pytest.raises(SubjectError):
        subject_of("phone", "not a number", KEYS, "NG")
    with pytest.raises(SubjectError):
        subject_of("account", "  ", KEYS, "NG")
    # Found by fuzzing POST /erasures: a control character was a 500, not a 400.
    with pytest.raises(SubjectError, match="control characters"):
        subject_of("account", "01\x97\x01", KEYS, "NG")


def test_every_key_the_customers_events_may_carry() -> None:
    subject = subject_of("phone", PHONE, KEYS, "NG")
    hashes = customer_hashes(subject, [row()], KEYS)
    assert set(hashes) == {
        KEYS.index("0123456789", "account"),
        KEYS.phone_index(PHONE),
        KEYS.email_index("ada@example.com"),
    }
    # No directory record: the subject's own hash still finds the events keyed by it.
    assert customer_hashes(subject, [], KEYS) == [subject.hash]


def test_wanted_joins_the_subject_and_the_records() -> None:
    by_account = wanted_of(subject_of("account", "999", KEYS, "NG"), [row()], "NG")
    assert by_account.accounts == {"999", "0123456789"} and by_account.phones == {PHONE}
    by_phone = wanted_of(subject_of("phone", "08051112222", KEYS, "NG"), [], "NG")
    assert by_phone.accounts == frozenset() and by_phone.phones == {"2348051112222"}


def test_redis_candidates_cover_every_event_type_and_the_cache() -> None:
    keys = redis_candidates([row()], ["p:REF-1:payment.successful"], ["p:REF-2"])
    assert Dedupe.key("p:REF-1:payment.successful") in keys
    assert Dedupe.key("p:REF-2:payment.successful") in keys
    assert Dedupe.key("p:REF-2:rent.overdue") in keys
    assert "bridge:customer:acct:0123456789" in keys
    assert f"bridge:customer:email:{KEYS.email_index('ada@example.com')}" in keys


def test_plan_counts_and_names_hashes_only() -> None:
    subject = subject_of("account", "0123456789", KEYS, "NG")
    found = Found(
        customers=(row(), row(id=2, contact_id="ct_1"), row(id=3, contact_id=None)),
        hashes=("h1", "h2"),
        dead_letters=(7, 8),
        audit_rows=(1, 2, 3),
        outbox_rows=(4,),
        redis_keys=(Dedupe.key("p:R:payment.successful"), "bridge:customer:acct:0123456789"),
        files=(FileRewrite(Path("a.csv"), 2, b""), FileRewrite(Path("b.xml"), 1, b"")),
        unreadable_files=1,
    )
    p = plan(subject, found)
    assert p.customer_ids == (1, 2, 3) and p.contact_ids == ("ct_1",)
    assert p.removed == {
        "directory_records": 3,
        "siteti_contacts": 1,
        "dead_letters": 2,
        "audit_rows_scrubbed": 3,
        "outbox_rows": 1,
        "dedupe_keys": 1,
        "cache_keys": 1,
        "files_rewritten": 2,
        "file_rows": 3,
        "files_unreadable": 1,
        "customer_hashes": ["h1", "h2"],
    }
    assert not p.nothing and (p.subject_kind, p.subject_hash) == ("account", subject.hash)
    assert PHONE not in repr(p.removed) and "0123456789" not in repr(p.removed)
    empty = plan(subject, Found(hashes=(subject.hash,), unreadable_files=1))
    assert empty.nothing and empty.contact_ids == ()


CSV = (
    "record_id;tenant_account;name;phone;amount_due;status\r\n"
    "R-1;0123456789;Ada Obi;08031234567;450000;overdue\r\n"
    'R-2;0234567890;"Tunde\r\nBakare";0803 234 5678;380000;due_soon\r\n'
    "\r\n"
    "R-3;0345678901;Kemi;+234 803 123 4567;1200000;paid\r\n"
    "R-4;0456789012;Bisi;;1000;overdue\r\n"
)


def test_csv_rows_go_by_account_or_number_and_the_rest_stays_byte_for_byte() -> None:
    data = CSV.encode()
    wanted = Wanted(frozenset({"0123456789"}), frozenset({PHONE}), "NG")
    out, removed = strip_rows(data, "csv", CONFIG, wanted)
    assert removed == 2  # R-1 by account, R-3 by the same number in another form
    assert out == (
        b"record_id;tenant_account;name;phone;amount_due;status\r\n"
        b'R-2;0234567890;"Tunde\r\nBakare";0803 234 5678;380000;due_soon\r\n'
        b"\r\n"
        b"R-4;0456789012;Bisi;;1000;overdue\r\n"
    )
    # A multi-line row goes whole; the file still reads.
    only_tunde = Wanted(frozenset(), frozenset({"2348032345678"}), "NG")
    out, removed = strip_rows(data, "csv", CONFIG, only_tunde)
    assert removed == 1 and b"Tunde" not in out and b"Bakare" not in out
    records, bad = read_csv(out)
    assert [r.fields["record_id"] for r in records] == ["R-1", "R-3", "R-4"] and bad == []
    nobody = Wanted(frozenset({"none"}), frozenset(), "NG")
    assert strip_rows(data, "csv", CONFIG, nobody) == (data, 0)


def test_csv_keeps_its_byte_order_mark_or_its_absence() -> None:
    wanted = Wanted(frozenset({"0123456789"}), frozenset(), "NG")
    with_bom = b"\xef\xbb\xbf" + CSV.encode()
    assert strip_rows(with_bom, "csv", CONFIG, wanted)[0].startswith(b"\xef\xbb\xbfrecord_id")
    assert strip_rows(CSV.encode(), "csv", CONFIG, wanted)[0].startswith(b"record_id")


XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<records>
  <record id="X-1"><tenant_account>0567890123</tenant_account><phone>08031234567</phone>
    <amount_due>1</amount_due><status>overdue</status></record>
  <record><record_id>X-2</record_id><tenant_account>0789012345</tenant_account>
    <amount_due>2</amount_due><status>overdue</status></record>
  <record><record_id>X-3</record_id><tenant_account>0123456789</tenant_account>
    <amount_due>3</amount_due><status>overdue</status></record>
</records>
"""


def test_xml_records_go_by_account_or_number() -> None:
    wanted = Wanted(frozenset({"0123456789"}), frozenset({PHONE}), "NG")
    out, removed = strip_rows(XML, "xml", CONFIG, wanted)
    assert removed == 2
    assert b"X-2" in out and b"X-1" not in out and b"X-3" not in out
    assert b"08031234567" not in out and b"0123456789" not in out
    assert out.startswith(b"<?xml")
