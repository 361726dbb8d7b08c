"""The rule file's shape (`rules.yaml`: templates, and rules of conditions) and reading it.

The rule file is operations' configuration: the shipped `dispatcher/rules.yaml`, or the file
the `template_rules_file` setting (`TEMPLATE_RULES_FILE`) names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

# Variables every event can fill (None when the event does not carry the fact). Any other
# template variable is read from `data.details`: `property` (or explicitly `details.property`)
# is `data.details["property"]`, sent to Siteti as `property`.
VARIABLES = (
    "customer_name",
    "amount",
    "trans_ref",
    "next_due_date",
    "reason",
    "currency",
    "provider",
    "description",
)
DETAILS_PREFIX = "details."

# Variables every event of every type fills. `customer_name` comes from the customer directory
# (or the event); an event whose customer has no name at all is dead-lettered at run time.
ALWAYS_KNOWN = frozenset({"customer_name", "amount", "trans_ref", "currency", "provider"})


class Comparison(BaseModel):
    model_config = ConfigDict(extra="forbid")
    eq: Decimal | None = None
    gt: Decimal | None = None
    gte: Decimal | None = None
    lt: Decimal | None = None
    lte: Decimal | None = None

    def holds(self, value: Decimal) -> bool:
        return (
            (self.eq is None or value == self.eq)
            and (self.gt is None or value > self.gt)
            and (self.gte is None or value >= self.gte)
            and (self.lt is None or value < self.lt)
            and (self.lte is None or value <= self.lte)
        )

    def describe(self) -> str:
        parts = [
            f"{op} {value}"
            for op, value in (
                ("eq", self.eq),
                ("gt", self.gt),
                ("gte", self.gte),
                ("lt", self.lt),
                ("lte", self.lte),
            )
            if value is not None
        ]
        return " and ".join(parts) or "anything"


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _upper_list(value: Any) -> Any:
    value = _as_list(value)
    if isinstance(value, list):
        return [v.upper() if isinstance(v, str) else v for v in value]
    return value


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: list[str] | None = None
    tier: Literal["first_time", "returning"] | None = None
    late_payments: Comparison | None = None
    reason_contains: list[str] | None = None
    amount: Comparison | None = None
    currency: list[str] | None = None
    provider: list[str] | None = None

    _lists = field_validator("type", "reason_contains", "provider", mode="before")(_as_list)
    # Currency codes compare upper-case: `currency: ngn` matches an NGN event.
    _currency = field_validator("currency", mode="before")(_upper_list)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    when: Condition = Field(default_factory=Condition)
    template: str


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Literal[1]
    templates: dict[str, list[str]]
    rules: list[Rule]
    # Which template asks a customer to confirm a candidate number (dispatcher.confirmation),
    # chosen like a message's, from the event that waits. None matching: the event goes to
    # manual review as `missing_contact`, as when there is no number at all.
    confirmation_rules: list[Rule] = Field(default_factory=list)


@dataclass(frozen=True)
class Variable:
    """One entry of a template's variable list: `name`, `name?`, `details.key`, `key?`…"""

    spec: str

    @property
    def optional(self) -> bool:
        return self.spec.endswith("?")

    @property
    def name(self) -> str:
        """The name Siteti sees (without `?` and without a `details.` prefix)."""
        return self.spec.rstrip("?").removeprefix(DETAILS_PREFIX)

    @property
    def builtin(self) -> bool:
        return not self.spec.startswith(DETAILS_PREFIX) and self.name in VARIABLES

    @property
    def details_key(self) -> str | None:
        return None if self.builtin else self.name

    def value(self, values: Mapping[str, str | None], details: Mapping[str, str]) -> str | None:
        key = self.details_key
        return values.get(self.name) if key is None else details.get(key)


def configured_rules_file(setting: str) -> Path | None:
    """The operators' rule file as the `template_rules_file` setting names it, or None for
    the shipped one."""
    value = setting.strip()
    return Path(value) if value else None


def shipped_rules_text() -> str:
    return files("dispatcher").joinpath("rules.yaml").read_text(encoding="utf-8")


def parse_rules(text: str) -> RuleSet:
    """Raise yaml.YAMLError or pydantic.ValidationError when the text is not a rule file."""
    return RuleSet.model_validate(yaml.safe_load(text))


def load_rules(path: Path | None = None) -> RuleSet:
    return parse_rules(path.read_text(encoding="utf-8") if path else shipped_rules_text())
