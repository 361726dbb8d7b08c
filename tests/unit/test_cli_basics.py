"""The CLI's pure parts (no stack): --version, the import report, a transaction's story,
--json of `templates check`, and when a progress bar shows."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from bridge_cli.audit import story
from bridge_cli.customers import describe, line_ranges
from bridge_cli.main import app
from bridge_cli.output import wants_progress
from dispatcher import dlq
from dispatcher.directory import ImportReport

runner = CliRunner()


def test_version_is_the_package_version_alone() -> None:
    bridge = Path(sys.executable).with_name("bridge")
    done = subprocess.run([str(bridge), "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == (f"bridge {version('siteti-bridge')}\n", "")


def test_line_ranges() -> None:
    assert line_ranges([]) == ""
    assert line_ranges([7, 2, 3, 4, 9, 10]) == "2-4, 7, 9-10"


def test_a_dry_run_report_names_lines_and_says_nothing_was_written() -> None:
    report = ImportReport(
        dry_run=True,
        inserted=[3, 4, 5],
        updated=[2],
        without_phone=1,
        rejected=[(6, "tier must be one of first_time, returning")],
    )
    assert describe(report) == [
        "dry run: nothing was written",
        "3 would be inserted (lines 3-5)",
        "1 would be updated (line 2)",
        "1 without a WhatsApp number",
        "1 rejected",
        "  line 6: tier must be one of first_time, returning",
    ]
    assert describe(ImportReport(inserted=[2]))[:2] == ["1 inserted", "0 updated"]


def test_a_story_is_json_ready_with_numbers_masked() -> None:
    when = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    history = [
        {"stage": "received", "source": "ingest", "occurred_at": when, "recorded_at": when,
         "detail": {"type": "payment.successful"}},
        {"stage": "failed", "source": "receipts", "occurred_at": when, "recorded_at": when,
         "detail": {"error": {"title": "no WhatsApp at +234 803 123 4567"}, "to": "x"}},
    ]  # fmt: skip
    entry = dlq.Entry(
        id=7,
        dedupe_key="p:T1:payment.successful",
        reference="p:T1",
        provider="p",
        event_type="payment.successful",
        payload={},
        status="manual_review",
        reason="missing_contact",
        retry_count=0,
        last_error="Siteti refused 08031234567",
        next_attempt_at=None,
        created_at=when,
        updated_at=when,
    )
    told = story("p:T1", history, [entry])
    text = orjson.dumps(told).decode()
    assert "8031234567" not in text.replace(" ", "")
    assert told["status"] == "failed"
    assert told["events"][0]["occurred_at"] == "2026-11-24T09:30:00+00:00"
    assert told["events"][1]["detail"]["to"] == "***"
    assert told["dead_letters"][0]["last_error"] == "Siteti refused ***567"


def test_templates_check_json_for_a_file_that_is_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("version: 1\ntemplates: {t: [amount]\n")
    result = runner.invoke(app, ["templates", "check", str(path), "--json"])
    assert result.exit_code == 1
    verdict = orjson.loads(result.stdout)
    assert (verdict["valid"], verdict["rules"], verdict["errors"]) == (False, None, 1)
    assert verdict["problems"][0]["severity"] == "error"
    assert "is not valid YAML" in verdict["problems"][0]["message"]


@pytest.mark.parametrize(
    ("option", "as_json", "tty", "shown"),
    [
        (None, False, True, True),
        (None, False, False, False),
        (None, True, True, False),
        (True, True, False, True),
        (False, False, True, False),
    ],
)
def test_when_a_progress_bar_shows(
    monkeypatch: pytest.MonkeyPatch, option: bool | None, as_json: bool, tty: bool, shown: bool
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    assert wants_progress(option, as_json) is shown


def test_a_bulk_retry_in_json_must_not_ask() -> None:
    result = runner.invoke(app, ["dlq", "retry", "--status", "pending", "--json"])
    assert result.exit_code == 2
    assert "needs --yes" in result.output
