"""The pure part of retention: the cutoff, the rules and their SQL, which files go, the report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dispatcher.retention import RULES, Report, Rule, expired_files, plan

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_cutoff_is_now_minus_the_days() -> None:
    assert plan(NOW, 90).cutoff == datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert plan(NOW, 1).cutoff == NOW - timedelta(days=1)


@pytest.mark.parametrize("days", [0, -5])
def test_fewer_than_one_day_is_refused(days: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan(NOW, days)


def test_a_naive_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan(NOW.replace(tzinfo=None), 90)


def test_each_table_is_judged_by_its_own_time_and_only_settled_rows_go() -> None:
    by_table = {rule.table: rule for rule in plan(NOW, 90).rules}
    assert {table: rule.column for table, rule in by_table.items()} == {
        "audit_log": "recorded_at",
        "dead_letters": "updated_at",
        "siteti_webhook_events": "received_at",
        "filedrop_files": "finished_at",
        "poller_tracking": "updated_at",
        "number_confirmations": "requested_at",
        "sent_messages": "updated_at",
        "flagged_numbers": "flagged_at",
    }
    assert by_table["number_confirmations"].settled == "status <> 'requested'"
    assert by_table["dead_letters"].settled == "status IN ('completed', 'failed')"
    assert by_table["filedrop_files"].settled == "status IN ('processed', 'failed')"
    assert by_table["poller_tracking"].settled == "status IN ('emitted', 'failed')"
    # Never touched: the legal record, the directory, the outbox.
    assert not {"erasures", "customers", "outbox"} & set(by_table)


def test_delete_sql_is_one_locked_batch_by_key() -> None:
    rule = Rule("poller_tracking", "updated_at", key="ctid", settled="status = 'emitted'")
    assert rule.delete_sql() == (
        "DELETE FROM poller_tracking WHERE ctid = ANY(ARRAY("
        "SELECT ctid FROM poller_tracking WHERE updated_at < $1 AND status = 'emitted'"
        " LIMIT $2 FOR UPDATE SKIP LOCKED))"
    )
    assert Rule("audit_log", "recorded_at").count_sql() == (
        "SELECT count(*) FROM audit_log WHERE recorded_at < $1"
    )


def test_tables_without_a_single_column_key_are_batched_by_ctid() -> None:
    keys = {rule.table: rule.key for rule in RULES}
    assert keys["siteti_webhook_events"] == "ctid"  # text primary key
    assert keys["poller_tracking"] == "ctid"  # composite primary key
    assert keys["audit_log"] == keys["dead_letters"] == keys["filedrop_files"] == "id"


def test_a_file_and_its_report_go_together_once_both_are_old() -> None:
    cutoff = NOW - timedelta(days=90)
    old = (cutoff - timedelta(days=1)).timestamp()
    new = (cutoff + timedelta(days=1)).timestamp()
    entries = [
        ("rent.csv", old),
        ("rent.csv.report.json", old),
        # the legacy system wrote it long ago, it was read recently: kept
        ("late.csv", old),
        ("late.csv.report.json", new),
        ("orphan.report.json", old),
        ("recent.xml", new),
        ("recent.xml.report.json", new),
        ("at-the-cutoff.csv", cutoff.timestamp()),  # strictly older goes
    ]
    assert expired_files(entries, cutoff) == [
        "orphan.report.json",
        "rent.csv",
        "rent.csv.report.json",
    ]
    assert expired_files([], cutoff) == []


def test_report_lines_name_the_cutoff_every_table_and_the_open_dead_letters() -> None:
    report = Report(
        cutoff=datetime(2026, 1, 31, 12, 0, tzinfo=UTC),
        dry_run=True,
        rows={"audit_log": 12000, "dead_letters": 3},
        files=None,
        open_dead_letters=4,
    )
    assert report.lines() == [
        "cutoff 2026-01-31T12:00:00+00:00 (dry run)",
        "would delete audit_log        12000",
        "would delete dead_letters         3",
        "would delete files                -  (FILEDROP_DIR not found)",
        "kept 4 open dead letters older than the cutoff (pending, processing, manual_review):"
        " resolve or close them",
    ]
    done = Report(report.cutoff, False, {"audit_log": 1}, 7, 0)
    assert done.lines()[0] == "cutoff 2026-01-31T12:00:00+00:00"
    assert done.lines()[1:3] == ["deleted audit_log         1", "deleted files             7"]
    assert done.summary() == {
        "cutoff": "2026-01-31T12:00:00+00:00",
        "dry_run": False,
        "rows": {"audit_log": 1},
        "files": 7,
        "open_dead_letters": 0,
    }
