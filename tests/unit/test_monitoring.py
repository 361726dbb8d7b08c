"""The monitoring files (issue 10): alert rules and their promtool unit tests, runbooks, the
Grafana dashboard, the Prometheus configurations. No stack needed; promtool must be installed
(Debian's `prometheus` package, which scripts/stack/up.sh installs)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from bridge import metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/alerts.yml"
RULE_TESTS = ROOT / "deploy/prometheus/alerts.test.yml"
COMPOSE_PROMETHEUS = ROOT / "deploy/prometheus/prometheus.yml"
DASHBOARD = ROOT / "deploy/grafana/dashboards/siteti-bridge-overview.json"
DASHBOARD_SCHEMA = ROOT / "deploy/grafana/dashboard.schema.json"
RUNBOOKS = ROOT / "docs/runbooks.md"
BRIDGE_JOBS = {"ingest", "receipts", "dispatcher", "poller", "filedrop"}

# Series a metrics family is exported as, by type (prometheus_client names a counter's family
# without its `_total`).
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}
# Prometheus's own series the rules may use.
PROMETHEUS_SERIES = {"up"}
# Grafana's interval variables, replaced by a value so that promtool can parse the query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def promtool(*args: str | Path) -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is missing: it comes with Debian's `prometheus` package, which "
            "`make stack-up` (scripts/stack/up.sh) installs",
            pytrace=False,
        )
    done = subprocess.run(
        [path, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"promtool {' '.join(map(str, args))}:\n{done.stdout}{done.stderr}")
    return done.stdout


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_targets() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


# --- metric names ----------------------------------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# Not inside a number or duration (0.95, 5e3, 30m).
_IDENTIFIER = re.compile(r"(?<![\w.:])[a-zA-Z_:][\w:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}


def series_names(expr: str) -> set[str]:
    """The series an expression selects: identifiers left once strings, label matchers,
    ranges and grouping clauses are gone, other than functions (followed by a parenthesis)
    and keywords."""
    text = expr
    for pattern in (_STRINGS, _MATCHERS, _RANGES, _GROUPING):
        text = pattern.sub(" ", text)
    names = set()
    for found in _IDENTIFIER.finditer(text):
        if text[found.end() :].lstrip().startswith("("):
            continue
        if found.group().lower() not in _KEYWORDS:
            names.add(found.group())
    return names


def exported_series() -> set[str]:
    """Every series name shared/bridge/metrics.py exports."""
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def unknown_series(exprs: Iterable[str]) -> dict[str, set[str]]:
    known = exported_series() | PROMETHEUS_SERIES | {r["record"] for r in rules() if "record" in r}
    unknown = {expr: series_names(expr) - known for expr in exprs}
    return {expr: names for expr, names in unknown.items() if names}


def test_the_series_name_check_catches_a_typo_and_knows_every_suffix() -> None:
    typo = "sum(rate(bridge_webhook_received_total[5m]))"
    assert unknown_series([typo]) == {typo: {"bridge_webhook_received_total"}}
    known = [
        'histogram_quantile(0.9, sum by (le) (rate(bridge_ingest_seconds_bucket{a="b"}[5m])))',
        "bridge_ingest_seconds_sum / bridge_ingest_seconds_count",
        "max(bridge_outbox_pending) > 5 and on () up offset 30m",
        "bridge:siteti_success:ratio_rate5m < 0.95",
    ]
    assert unknown_series(known) == {}
    tricky = 'sum by (provider) (rate(x_total{a="b"}[1d] offset 30m)) * 1800 >= 5e3'
    assert series_names(tricky) == {"x_total"}


def test_every_series_of_the_rules_and_the_dashboard_is_exported() -> None:
    exprs = [rule["expr"] for rule in rules()] + [t["expr"] for _, t in dashboard_targets()]
    unknown = unknown_series(exprs)
    assert not unknown, (
        "series not defined in shared/bridge/metrics.py (nor a recording rule of alerts.yml):\n"
        + "\n".join(f"  {sorted(names)} in {expr.strip()}" for expr, names in unknown.items())
    )


# --- rules -----------------------------------------------------------------------------------


def test_rules_pass_promtool_check() -> None:
    assert "SUCCESS" in promtool("check", "rules", RULES)


def test_rule_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", RULE_TESTS)


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = [case for test in load_yaml(RULE_TESTS)["tests"] for case in test["alert_rule_test"]]
    for alert in alerts():
        name = alert["alert"]
        outcomes = {bool(case["exp_alerts"]) for case in cases if case["alertname"] == name}
        assert outcomes == {True, False}, f"{name}: needs a test where it fires and one where not"


def runbook_sections() -> dict[str, str]:
    """GitHub's anchor of each `## ` heading of docs/runbooks.md, and the section's text."""
    sections: dict[str, str] = {}
    for part in re.split(r"^## ", RUNBOOKS.read_text(), flags=re.MULTILINE)[1:]:
        heading, _, body = part.partition("\n")
        anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        sections[anchor] = body
    return sections


def test_every_alert_has_severity_annotations_and_a_runbook_section() -> None:
    sections = runbook_sections()
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning"}, name
        annotations = alert["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook_url"] == f"docs/runbooks.md#{name.lower()}", name
        body = sections.get(name.lower())
        assert body is not None, f"docs/runbooks.md has no section `## {name}`"
        for part in ("**Meaning.**", "**Check.**", "**Act.**"):
            assert part in body, f"docs/runbooks.md, {name}: no {part}"


# --- dashboard -------------------------------------------------------------------------------


def test_dashboard_matches_its_schema() -> None:
    schema = json.loads(DASHBOARD_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(dashboard()), key=lambda e: e.path
    )
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_dashboard_lint() -> None:
    """What the schema cannot say: unique ids, panels that do not overlap, and ranges on
    $__rate_interval, or a fixed window the panel's title names."""
    panels = dashboard()["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, f"{panel['title']}: wider than the grid"
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
    for panel, target in dashboard_targets():
        for window in re.findall(r"\[([^\]]+)\]", target["expr"]):
            assert window == "$__rate_interval" or f"({window})" in panel["title"], (
                f"{panel['title']}: [{window}] is neither $__rate_interval nor in the title"
            )


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    recorded = []
    for panel, target in dashboard_targets():
        expr = target["expr"]
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{panel['title']}: unknown variable in {target['expr']}"
        recorded.append({"record": f"dashboard:panel{panel['id']}:{target['refId']}", "expr": expr})
    rules_file = tmp_path / "dashboard.rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    assert f"SUCCESS: {len(recorded)} rules found" in promtool("check", "rules", rules_file)


def test_grafana_provisioning_finds_the_dashboard_and_prometheus() -> None:
    compose = load_yaml(ROOT / "docker-compose.yml")["services"]
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in compose["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == "/var/lib/grafana/dashboards"
    provisioning = ROOT / "deploy/grafana/provisioning"
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = load_yaml(provisioning / "dashboards/siteti-bridge.yml")["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    (source,) = load_yaml(provisioning / "datasources/prometheus.yml")["datasources"]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    for service in ("prometheus", "grafana"):
        assert compose[service]["profiles"] == ["monitoring"]
        for volume in compose[service]["volumes"]:
            if volume.startswith("./"):
                assert (ROOT / volume.split(":")[0]).exists(), f"{service}: {volume}"


# --- Prometheus configurations ---------------------------------------------------------------


def scrape_jobs(config: Path) -> dict[str, Any]:
    return {job["job_name"]: job for job in load_yaml(config)["scrape_configs"]}


def test_compose_prometheus_config_scrapes_every_service() -> None:
    assert "SUCCESS" in promtool("check", "config", COMPOSE_PROMETHEUS)
    assert set(scrape_jobs(COMPOSE_PROMETHEUS)) == BRIDGE_JOBS


def test_local_prometheus_config_follows_the_running_processes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("dispatcher-1", "dispatcher-2", "poller"):
        (run / f"{name}.pid").write_text("1\n")
    env = {**os.environ, "STACK_DIR": str(tmp_path), "DISPATCHER_METRICS_PORT": "9302"}
    env.pop("INGEST_PORT", None)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        subprocess.run(
            ["bash", str(ROOT / "scripts/prometheus.sh"), "config"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert "SUCCESS" in promtool("check", "config", config)
    targets = {
        name: job["static_configs"][0]["targets"] for name, job in scrape_jobs(config).items()
    }
    assert targets == {
        "ingest": ["127.0.0.1:8000"],
        "receipts": ["127.0.0.1:8001"],
        "dispatcher": ["127.0.0.1:9302", "127.0.0.1:9303"],
        "poller": ["127.0.0.1:8084"],
    }
    assert load_yaml(config)["rule_files"] == [str(RULES)]
