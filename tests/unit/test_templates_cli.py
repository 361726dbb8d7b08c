"""`bridge templates check|explain` through Typer's runner, and scripts/sandbox_templates.py
against the sandbox app. No Kafka, Redis or database."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import textwrap
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from typer.testing import CliRunner

from bridge.events import Customer, EventData, new_event
from bridge_cli.templates import app
from dispatcher.rules import load_rules
from siteti_sandbox import SandboxConfig, create_app
from siteti_sandbox.testing import serve_app

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE_ENV = "TEMPLATE_RULES_FILE"  # Settings.template_rules_file
runner = CliRunner()


def load_script() -> ModuleType:
    path = ROOT / "scripts" / "sandbox_templates.py"
    spec = importlib.util.spec_from_file_location("sandbox_templates", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _no_configured_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RULES_FILE_ENV, raising=False)


def rules_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def write_event(tmp_path: Path, kind: str, **fields: object) -> Path:
    values: dict[str, object] = {
        "provider": "paystack",
        "transaction_reference": "qTPrJoy9Bx",
        "amount": Decimal("5000"),
        "customer": Customer(email="ngozi@example.com", name="Ngozi Eze"),
        **fields,
    }
    event = new_event(EventData.model_validate(values), kind)
    path = tmp_path / "event.json"
    path.write_bytes(event.to_json())
    return path


# --- check ------------------------------------------------------------------------------------


def test_check_the_shipped_file() -> None:
    result = runner.invoke(app, ["check"])
    rules = load_rules()
    assert result.exit_code == 0, result.output
    assert result.output == f"OK: {len(rules.rules)} rules, {len(rules.templates)} templates\n"


def test_check_through_the_bridge_command() -> None:
    from bridge_cli.main import app as bridge

    result = runner.invoke(bridge, ["templates", "check"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: ")


def test_check_reads_the_configured_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = rules_file(
        tmp_path,
        """
        version: 1
        templates: {t: [amount]}
        rules:
          - {name: all, template: t}
        """,
    )
    monkeypatch.setenv(RULES_FILE_ENV, str(path))
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert result.output == "OK: 1 rules, 1 templates\n"


CHECK_ERRORS = {
    "unknown field": (
        """
        version: 1
        templates: {t: [amount]}
        rules:
          - {name: first, when: {type: payment.successful, tierr: first_time}, template: t}
        """,
        "error: rule first: when.tierr: Extra inputs are not permitted",
    ),
    "unknown top-level field": (
        """
        version: 1
        templates: {t: [amount]}
        rules: []
        defaults: {}
        """,
        "error: defaults: Extra inputs are not permitted",
    ),
    "unknown template": (
        """
        version: 1
        templates: {t: [amount]}
        rules:
          - {name: all, template: t}
          - {name: typo, when: {type: payment.failed}, template: tpl_failed_generik}
        """,
        "error: rule typo: template tpl_failed_generik is not in templates",
    ),
    "unreachable (type only first)": (
        """
        version: 1
        templates: {t: [amount]}
        rules:
          - {name: failed_generic, when: {type: payment.failed}, template: t}
          - name: failed_network
            when: {type: payment.failed, reason_contains: [network]}
            template: t
        """,
        "error: rule failed_network: unreachable: earlier rule failed_generic matches every"
        " event it matches",
    ),
    "unreachable (identical)": (
        """
        version: 1
        templates: {t: [amount]}
        rules:
          - {name: a, when: {type: payment.failed, tier: returning}, template: t}
          - {name: b, when: {type: payment.failed, tier: returning}, template: t}
        """,
        "error: rule b: unreachable: earlier rule a has the same condition",
    ),
    "required variable the type may lack": (
        """
        version: 1
        templates: {t: [customer_name, next_due_date]}
        rules:
          - {name: due, when: {type: payment.successful}, template: t}
        """,
        "error: rule due: template t needs next_due_date, which payment.successful events may"
        " lack (mark it optional: next_due_date?)",
    ),
    "not YAML": ("version: 1\ntemplates: {t: [amount]\n", "is not valid YAML"),
}


@pytest.mark.parametrize(("text", "expected"), CHECK_ERRORS.values(), ids=CHECK_ERRORS.keys())
def test_check_errors_exit_1(tmp_path: Path, text: str, expected: str) -> None:
    result = runner.invoke(app, ["check", str(rules_file(tmp_path, text))])
    assert result.exit_code == 1, result.output
    assert expected in result.output
    assert "OK:" not in result.output


def test_check_warnings_exit_0(tmp_path: Path) -> None:
    path = rules_file(
        tmp_path,
        """
        version: 1
        templates:
          t: [amount, "property?"]
          unused: [amount]
        rules:
          - {name: pay, when: {type: payment.successful}, template: t}
        """,
    )
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert (
        "warning: rule pay: template t uses details.property, which payment.successful events"
        " never carry"
    ) in lines
    assert "warning: template unused is used by no rule" in lines
    assert (
        "warning: no rule for payment.failed events (they dead-letter as no_template_rule)"
    ) in lines
    warnings = sum(line.startswith("warning:") for line in lines)
    assert lines[-1] == f"OK: 1 rules, 2 templates ({warnings} warnings)"


def test_check_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2


# --- explain ----------------------------------------------------------------------------------


def test_explain_a_matching_rule(tmp_path: Path) -> None:
    path = write_event(
        tmp_path,
        "payment.successful",
        provider="openmarket",
        currency="XOF",
        details={"order_id": "ORDER123ABC"},
    )
    result = runner.invoke(app, ["explain", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert (
        lines[0]
        == "event: payment.successful openmarket:qTPrJoy9Bx (XOF 5,000.00, provider openmarket)"
    )
    assert lines[1].startswith("customer: tier first_time, late_payments 0")
    rule_lines = [line.strip() for line in lines if line[:6].strip().rstrip(".").isdigit()]
    assert rule_lines[0].split() == ["1.", "openmarket_order", "MATCH"]
    assert rule_lines[1].split()[:3] == ["2.", "first_time_payment", "matches"]
    assert "chosen: rule openmarket_order -> template tpl_order_confirmation" in lines
    variables = lines[lines.index("variables:") + 1 :]
    assert variables == [
        "  customer_name = Ngozi Eze",
        "  amount = XOF 5,000.00",
        "  trans_ref = qTPrJoy9Bx",
        "  order_id = ORDER123ABC",
    ]


def test_explain_says_why_a_rule_does_not_match(tmp_path: Path) -> None:
    path = write_event(tmp_path, "payment.failed", reason="bank network timeout")
    result = runner.invoke(
        app, ["explain", str(path), "--customer-tier", "returning", "--late-payments", "2"]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "customer: tier returning, late_payments 2" in out
    assert "first_time_payment         no: type is payment.failed, not payment.successful" in out
    assert (
        "failed_insufficient_funds  no: reason ('bank network timeout') contains none of:"
        " insufficient funds"
    ) in out
    assert "failed_bank_network        MATCH" in out
    assert "failed_generic             matches too, but rule 6 comes first" in out
    assert "chosen: rule failed_bank_network -> template tpl_failed_bank_network" in out


def test_explain_tier_flags(tmp_path: Path) -> None:
    path = write_event(tmp_path, "payment.successful", next_due_date="2026-02-20")
    late = runner.invoke(
        app, ["explain", str(path), "--customer-tier", "returning", "--late-payments", "1"]
    )
    assert "returning_good_standing    no: late_payments is 1, not eq 0" in late.output
    assert "template tpl_returning_late" in late.output
    assert "  next_due_date = 2026-02-20" in late.output
    named = runner.invoke(app, ["explain", str(path), "--customer-name", "Ngozi E."])
    assert "  customer_name = Ngozi E." in named.output
    bad = runner.invoke(app, ["explain", str(path), "--customer-tier", "vip"])
    assert bad.exit_code == 2


def test_explain_lists_optional_variables_left_out(tmp_path: Path) -> None:
    path = write_event(tmp_path, "rent.overdue", provider="filedrop")
    result = runner.invoke(app, ["explain", str(path)])
    assert result.exit_code == 0, result.output
    assert "not sent (optional, unknown for this event): due_date, property, unit" in (
        result.output
    )


@pytest.mark.parametrize(
    ("templates", "rule", "fields", "expected"),
    [
        pytest.param(
            "[amount]",
            "{name: only_ngn, when: {currency: NGN}, template: t}",
            {"currency": "XOF"},
            [
                "only_ngn  no: currency is XOF, not NGN",
                "no rule matches: the dispatcher dead-letters this event as no_template_rule",
            ],
            id="no_rule_matches",
        ),
        pytest.param(
            "[amount, next_due_date]",
            "{name: due, template: t}",
            {},
            ["error: rule due: no value for next_due_date"],
            id="a_missing_required_variable",
        ),
    ],
)
def test_explain_exits_1(
    tmp_path: Path, templates: str, rule: str, fields: dict[str, object], expected: list[str]
) -> None:
    """No rule matches the event, or the matching rule's template lacks a value."""
    rules = rules_file(tmp_path, f"version: 1\ntemplates: {{t: {templates}}}\nrules:\n  - {rule}\n")
    path = write_event(tmp_path, "payment.successful", **fields)
    result = runner.invoke(app, ["explain", str(path), "--rules", str(rules)])
    assert result.exit_code == 1
    for line in expected:
        assert line in result.output


def test_explain_a_dead_letter_message(tmp_path: Path) -> None:
    event = json.loads(write_event(tmp_path, "transfer.reversed", reason="reversed").read_text())
    message = {"id": 7, "reason": "no_template_rule", "status": "manual_review", "error": "x"}
    path = tmp_path / "dead-letter.json"
    path.write_text(json.dumps({**message, "event": event}))
    result = runner.invoke(app, ["explain", str(path)])
    assert result.exit_code == 0, result.output
    assert "template tpl_transfer_reversed" in result.output


def test_explain_rejects_what_is_not_an_event(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"type": "payment.successful"}))
    result = runner.invoke(app, ["explain", str(path)])
    assert result.exit_code == 1
    assert "is not a canonical event" in result.output
    path.write_text("{not json")
    assert runner.invoke(app, ["explain", str(path)]).exit_code == 1


# --- scripts/sandbox_templates.py --------------------------------------------------------------


def test_sandbox_payloads_cover_every_template_of_the_file() -> None:
    script = load_script()
    rules = load_rules()
    payloads = script.template_payloads(rules)
    assert list(payloads) == list(rules.templates)
    assert payloads["tpl_returning_good"] == {
        "status": "APPROVED",
        "variables": ["customer_name", "amount", "trans_ref", "next_due_date?"],
    }
    assert payloads["tpl_rent_overdue"]["variables"] == [
        "customer_name",
        "amount",
        "due_date?",
        "property?",
        "unit?",
    ]
    assert script.sandbox_variables(["details.property?", "details.order_id"]) == [
        "property?",
        "order_id",
    ]


def test_sandbox_templates_prints_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_script().main([]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["id"] for line in lines] == list(load_rules().templates)
    assert all(line["status"] == "APPROVED" for line in lines)


async def test_sandbox_templates_registers_every_template_in_a_running_sandbox() -> None:
    script = load_script()
    rules = load_rules()
    async with serve_app(create_app(SandboxConfig())) as url, httpx.AsyncClient() as client:
        answer = await client.put(
            f"{url}/_sandbox/templates/tpl_refund_processed", json={"status": "PENDING"}
        )
        assert answer.status_code == 200
        # The script is synchronous: run it beside the server's event loop, as from a shell.
        assert await asyncio.to_thread(script.main, ["--sandbox", url]) == 0
        known = {t["id"]: t for t in (await client.get(f"{url}/_sandbox/templates")).json()}
    for template_id, payload in script.template_payloads(rules).items():
        assert known[template_id]["status"] == "APPROVED"
        assert known[template_id]["variables"] == payload["variables"]


def test_sandbox_templates_unreachable_sandbox_exits_1() -> None:
    assert load_script().main(["--sandbox", "http://127.0.0.1:9"]) == 1
