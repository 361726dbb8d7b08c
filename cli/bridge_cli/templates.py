"""`bridge templates`: check the template rule file, and explain the rule an event gets.

Both read the rule file operations edit: FILE / --rules when given, else `TEMPLATE_RULES_FILE`,
else the shipped `dispatcher/rules.yaml`. Neither needs Kafka, Redis or the database.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
import yaml
from pydantic import ValidationError

from bridge.config import Settings
from bridge.events import CanonicalEvent
from dispatcher.customers import CustomerRecord
from dispatcher.rules.checker import Problem, check_rules
from dispatcher.rules.engine import MissingVariable, fill, format_amount, why_not
from dispatcher.rules.model import (
    RuleSet,
    configured_rules_file,
    parse_rules,
    shipped_rules_text,
)

from .output import JsonOpt, print_json

app = typer.Typer(no_args_is_help=True, help="Template rules (which template an event gets).")

RulesOption = Annotated[
    Path | None,
    typer.Option(
        "--rules",
        exists=True,
        dir_okay=False,
        readable=True,
        help="Rule file (default: TEMPLATE_RULES_FILE, else the shipped rules.yaml).",
    ),
]


def _read(path: Path | None) -> tuple[str, str]:
    """(label, text) of the rule file to use."""
    path = path or configured_rules_file(Settings().template_rules_file)
    if path is None:
        return "shipped rules (dispatcher/rules.yaml)", shipped_rules_text()
    try:
        return str(path), path.read_text(encoding="utf-8")
    except OSError as exc:
        typer.echo(f"error: cannot read {path}: {exc.strerror or exc}", err=True)
        raise typer.Exit(code=2) from exc


def _validation_problems(raw: Any, exc: ValidationError) -> list[str]:
    """Pydantic's errors, each named by its rule when it is inside one."""
    rules = raw.get("rules") if isinstance(raw, dict) else None
    lines = []
    for error in exc.errors():
        loc = list(error["loc"])
        where = ".".join(str(part) for part in loc)
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            entry = rules[loc[1]] if isinstance(rules, list) and loc[1] < len(rules) else None
            name = entry.get("name") if isinstance(entry, dict) else None
            label = f"rule {name}" if name else f"rule #{loc[1] + 1}"
            where = f"{label}: " + (".".join(str(part) for part in loc[2:]) or "(the rule)")
        lines.append(f"{where}: {error['msg']}")
    return lines


def _report(label: str, rules: RuleSet | None, problems: Sequence[Problem], as_json: bool) -> int:
    """Print `check`'s verdict; returns how many problems are errors."""
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    if as_json:
        print_json(
            {
                "file": label,
                "valid": not errors,
                "rules": len(rules.rules) if rules else None,
                "templates": len(rules.templates) if rules else None,
                "errors": errors,
                "warnings": warnings,
                "problems": [asdict(p) for p in problems],
            }
        )
    else:
        for problem in problems:
            typer.echo(str(problem))
        if rules is None:
            typer.echo(f"{label}: not a valid rule file")
        elif errors:
            typer.echo(f"{label}: {errors} error(s), {warnings} warning(s)")
        else:
            tail = f" ({warnings} warning{'s' if warnings != 1 else ''})" if warnings else ""
            typer.echo(f"OK: {len(rules.rules)} rules, {len(rules.templates)} templates{tail}")
    return errors


def _parse(label: str, text: str, as_json: bool = False) -> RuleSet:
    """The rule set; when the file is not one, what is wrong (as `check` reports) and exit 1."""
    try:
        raw = yaml.safe_load(text)
        return parse_rules(text)
    except yaml.YAMLError as exc:
        lines = [f"{label} is not valid YAML: {exc}"]
    except ValidationError as exc:
        lines = _validation_problems(raw, exc)
    _report(label, None, [Problem("error", None, line) for line in lines], as_json)
    raise typer.Exit(code=1)


@app.command("check")
def check(
    file: Annotated[
        Path | None,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="Rule file (default: TEMPLATE_RULES_FILE, else the shipped rules.yaml).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate a rule file: fields, template names, unreachable rules, variables, coverage."""
    label, text = _read(file)
    rules = _parse(label, text, as_json)
    if _report(label, rules, check_rules(rules), as_json):
        raise typer.Exit(code=1)


def _load_event(path: Path) -> CanonicalEvent:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        typer.echo(f"error: cannot read {path} as JSON: {exc}")
        raise typer.Exit(code=1) from exc
    # A dead-letter message ({"id", "reason", "status", "error", "event"}) explains its event.
    if isinstance(raw, dict) and "specversion" not in raw and isinstance(raw.get("event"), dict):
        raw = raw["event"]
    try:
        return CanonicalEvent.model_validate(raw)
    except ValidationError as exc:
        typer.echo(f"error: {path} is not a canonical event:")
        for error in exc.errors():
            typer.echo(f"  {'.'.join(str(p) for p in error['loc'])}: {error['msg']}")
        raise typer.Exit(code=1) from exc


@app.command("explain")
def explain(
    event_file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            metavar="EVENT.json",
            help="A canonical event as on bridge.events.v1 (or a dead-letter message).",
        ),
    ],
    customer_tier: Annotated[
        Literal["first_time", "returning"],
        typer.Option(help="The customer's tier, as the directory would say."),
    ] = "first_time",
    late_payments: Annotated[
        int, typer.Option(min=0, help="The customer's late payments, as the directory would say.")
    ] = 0,
    customer_name: Annotated[
        str | None,
        typer.Option(help="The directory's name for the customer (default: the event's)."),
    ] = None,
    rules_file: RulesOption = None,
) -> None:
    """Show, rule by rule, why an event gets its template, and the variables it would send."""
    event = _load_event(event_file)
    label, text = _read(rules_file)
    rules = _parse(label, text)
    data = event.data
    customer = CustomerRecord(
        id=None,
        account_number=data.customer.account_number,
        email=data.customer.email,
        phone=data.customer.phone,
        name=customer_name,
        tier=customer_tier,
        late_payments=late_payments,
        contact_id=None,
    )
    typer.echo(
        f"event: {event.type} {event.reference}"
        f" ({format_amount(data.amount, data.currency)}, provider {data.provider})"
    )
    typer.echo(
        f"customer: tier {customer_tier}, late_payments {late_payments}"
        " (from the options; the directory is not consulted)"
    )
    typer.echo(f"rules: {label} (the first match wins)")
    width = max((len(rule.name) for rule in rules.rules), default=0)
    chosen: int | None = None
    for number, rule in enumerate(rules.rules, start=1):
        reason = why_not(rule.when, event, customer)
        if reason is not None:
            verdict = f"no: {reason}"
        elif chosen is None:
            chosen = number
            verdict = "MATCH"
        else:
            verdict = f"matches too, but rule {chosen} comes first"
        typer.echo(f"  {number:>3}. {rule.name:<{width}}  {verdict}")
    if chosen is None:
        typer.echo("no rule matches: the dispatcher dead-letters this event as no_template_rule")
        raise typer.Exit(code=1)
    rule = rules.rules[chosen - 1]
    typer.echo(f"chosen: rule {rule.name} -> template {rule.template}")
    specs = rules.templates.get(rule.template)
    if specs is None:
        typer.echo(f"error: template {rule.template} is not in the file's templates")
        raise typer.Exit(code=1)
    try:
        variables, left_out = fill(rule, specs, event, customer)
    except MissingVariable as exc:
        typer.echo(f"error: {exc}")
        typer.echo("the dispatcher dead-letters this event as no_template_rule")
        raise typer.Exit(code=1) from exc
    typer.echo("variables:")
    for name, value in variables.items():
        typer.echo(f"  {name} = {value}")
    if not variables:
        typer.echo("  (none)")
    if left_out:
        typer.echo(f"not sent (optional, unknown for this event): {', '.join(left_out)}")
