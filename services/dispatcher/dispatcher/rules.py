"""Template selection: the first matching rule of the YAML rule file wins. Pure functions.

The rule file (`rules.yaml` here, or the file `TEMPLATE_RULES_FILE` names) is operations'
configuration; `bridge templates check` runs `check_rules` over it and `bridge templates
explain` shows `why_not` for every rule.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal, Protocol, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.events import EVENT_TYPES, CanonicalEvent

from .directory import TIERS, CustomerRecord

RULES_FILE_ENV = "TEMPLATE_RULES_FILE"

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
CURRENCY_SYMBOLS = {"NGN": "₦"}

# Variables every event of every type fills. `customer_name` comes from the customer directory
# (or the event); an event whose customer has no name at all is dead-lettered at run time.
ALWAYS_KNOWN = frozenset({"customer_name", "amount", "trans_ref", "currency", "provider"})


@dataclass(frozen=True)
class TypeFacts:
    """What the contract promises about one event type's optional facts.

    `fields`: optional EventData fields every event of the type carries (failed types always
    carry `reason`). `details`: the `data.details` keys its sources document (none is promised
    on every event). `open_details`: the details are whatever columns an operator's query or
    file has (the database poller, the file drop), so any key may be there.
    """

    fields: frozenset[str] = frozenset()
    details: frozenset[str] = frozenset()
    open_details: bool = False


# The `data.details` keys each type's webhook sources set (Open Market's order id, WasaaPay's
# biller) or, for the sources without webhooks, the columns their exports are documented to
# have. docs/events.md and schemas/v1 list them (scripts/gen_schemas.py reads this table).
EVENT_DETAILS: dict[str, frozenset[str]] = {
    "payment.successful": frozenset({"order_id"}),
    "bill.completed": frozenset({"biller"}),
    "bill.failed": frozenset({"biller"}),
    "order.completed": frozenset({"order_id"}),
    "order.shipped": frozenset({"order_id", "carrier", "tracking_number"}),
    "rent.overdue": frozenset({"property", "unit", "due_date"}),
    "rent.reminder": frozenset({"property", "unit", "due_date"}),
}
# Types whose events come from the database poller or the file drop: every column of the row
# that is not an EventData field becomes a details key (ingest.sources).
OPEN_DETAILS_TYPES = frozenset(
    {
        "order.completed",
        "order.shipped",
        "booking.confirmed",
        "loan.approved",
        "rent.overdue",
        "rent.reminder",
    }
)


def type_facts(event_type: str) -> TypeFacts:
    fields = frozenset({"reason"}) if event_type.endswith(".failed") else frozenset()
    return TypeFacts(
        fields, EVENT_DETAILS.get(event_type, frozenset()), event_type in OPEN_DETAILS_TYPES
    )


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


@dataclass(frozen=True)
class Choice:
    rule: str
    template_id: str
    variables: dict[str, str]


class NoRuleMatched(Exception):
    pass


class MissingVariable(Exception):
    pass


def configured_rules_file() -> Path | None:
    """The operators' rule file (`TEMPLATE_RULES_FILE`), or None for the shipped one."""
    value = os.environ.get(RULES_FILE_ENV, "").strip()
    return Path(value) if value else None


def shipped_rules_text() -> str:
    return files("dispatcher").joinpath("rules.yaml").read_text(encoding="utf-8")


def parse_rules(text: str) -> RuleSet:
    """Raise yaml.YAMLError or pydantic.ValidationError when the text is not a rule file."""
    return RuleSet.model_validate(yaml.safe_load(text))


def load_rules(path: Path | None = None) -> RuleSet:
    return parse_rules(path.read_text(encoding="utf-8") if path else shipped_rules_text())


def format_amount(amount: Decimal, currency: str) -> str:
    """`₦500,000.00` for naira; `XOF 5,000.00` for other currencies."""
    text = f"{amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,.2f}"
    symbol = CURRENCY_SYMBOLS.get(currency.upper())
    return f"{symbol}{text}" if symbol else f"{currency.upper()} {text}"


def _listing(values: Iterable[str]) -> str:
    return ", ".join(values)


def why_not(condition: Condition, event: CanonicalEvent, customer: CustomerRecord) -> str | None:
    """None when the condition holds; otherwise the first condition that fails, in words."""
    data = event.data
    if condition.type is not None and event.type not in condition.type:
        return f"type is {event.type}, not {_listing(condition.type)}"
    if condition.tier is not None and customer.tier != condition.tier:
        return f"tier is {customer.tier}, not {condition.tier}"
    if condition.late_payments is not None and not condition.late_payments.holds(
        Decimal(customer.late_payments)
    ):
        return (
            f"late_payments is {customer.late_payments}, not {condition.late_payments.describe()}"
        )
    if condition.reason_contains is not None:
        reason = (data.reason or "").lower()
        if not any(word.lower() in reason for word in condition.reason_contains):
            shown = repr(data.reason) if data.reason else "empty"
            return f"reason ({shown}) contains none of: {_listing(condition.reason_contains)}"
    if condition.amount is not None and not condition.amount.holds(data.amount):
        return f"amount is {data.amount}, not {condition.amount.describe()}"
    if condition.currency is not None and data.currency.upper() not in condition.currency:
        return f"currency is {data.currency.upper()}, not {_listing(condition.currency)}"
    if condition.provider is not None and data.provider not in condition.provider:
        return f"provider is {data.provider}, not {_listing(condition.provider)}"
    return None


def matches(condition: Condition, event: CanonicalEvent, customer: CustomerRecord) -> bool:
    return why_not(condition, event, customer) is None


def variable_values(event: CanonicalEvent, customer: CustomerRecord) -> dict[str, str | None]:
    data = event.data
    return {
        "customer_name": customer.name or data.customer.name,
        "amount": format_amount(data.amount, data.currency),
        "trans_ref": data.transaction_reference,
        "next_due_date": data.next_due_date,
        "reason": data.reason,
        "currency": data.currency,
        "provider": data.provider,
        "description": data.description,
    }


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


def fill(
    rule: Rule, specs: Sequence[str], event: CanonicalEvent, customer: CustomerRecord
) -> tuple[dict[str, str], list[str]]:
    """The variables to send, and the optional ones left out because the event lacks them.
    Raises MissingVariable when a required one has no value."""
    values = variable_values(event, customer)
    variables: dict[str, str] = {}
    left_out: list[str] = []
    for spec in specs:
        variable = Variable(spec)
        value = variable.value(values, event.data.details)
        if value:
            variables[variable.name] = value
        elif variable.optional:
            left_out.append(variable.name)
        else:
            raise MissingVariable(
                f"rule {rule.name}: no value for {variable.name}"
                f" (template {rule.template}, {event.type} event)"
            )
    return variables, left_out


def choose(rules: RuleSet, event: CanonicalEvent, customer: CustomerRecord) -> Choice:
    for rule in rules.rules:
        if matches(rule.when, event, customer):
            variables, _ = fill(rule, rules.templates.get(rule.template, []), event, customer)
            return Choice(rule.name, rule.template, variables)
    raise NoRuleMatched(f"no template rule matches a {event.type} event")


# --- static checks (`bridge templates check`) -----------------------------------------------
#
# A rule's condition is a box: one region per dimension (type, tier, late payments, reason,
# amount, currency, provider), and it matches exactly the events inside every region. A rule is
# unreachable when the boxes of the rules before it cover its own box; that is decided exactly
# by subtracting the earlier boxes one by one and seeing whether anything is left.


class _Region(Protocol):
    def __and__(self, other: Self) -> Self: ...
    def __sub__(self, other: Self) -> Self: ...
    def empty(self) -> bool: ...


@dataclass(frozen=True)
class _Set:
    """A set of strings: `items`, or (cofinite) everything but `items`."""

    items: frozenset[str]
    cofinite: bool = False

    def __and__(self, other: _Set) -> _Set:
        if self.cofinite and other.cofinite:
            return _Set(self.items | other.items, True)
        if self.cofinite:
            return _Set(other.items - self.items)
        if other.cofinite:
            return _Set(self.items - other.items)
        return _Set(self.items & other.items)

    def __sub__(self, other: _Set) -> _Set:
        return self & _Set(other.items, not other.cofinite)

    def empty(self) -> bool:
        return not self.cofinite and not self.items


@dataclass(frozen=True)
class _Interval:
    lo: Decimal | None  # None: unbounded
    lo_closed: bool
    hi: Decimal | None
    hi_closed: bool

    def __and__(self, other: _Interval) -> _Interval:
        lo, lo_closed = self.lo, self.lo_closed
        if other.lo is not None and (lo is None or other.lo > lo):
            lo, lo_closed = other.lo, other.lo_closed
        elif other.lo is not None and other.lo == lo:
            lo_closed = lo_closed and other.lo_closed
        hi, hi_closed = self.hi, self.hi_closed
        if other.hi is not None and (hi is None or other.hi < hi):
            hi, hi_closed = other.hi, other.hi_closed
        elif other.hi is not None and other.hi == hi:
            hi_closed = hi_closed and other.hi_closed
        return _Interval(lo, lo_closed, hi, hi_closed)

    def empty(self) -> bool:
        if self.lo is None or self.hi is None:
            return False
        return self.lo > self.hi or (self.lo == self.hi and not (self.lo_closed and self.hi_closed))

    def complement(self) -> list[_Interval]:
        parts = []
        if self.lo is not None:
            parts.append(_Interval(None, False, self.lo, not self.lo_closed))
        if self.hi is not None:
            parts.append(_Interval(self.hi, not self.hi_closed, None, False))
        return parts


@dataclass(frozen=True)
class _Range:
    """A union of intervals of numbers (`integers`: of whole numbers)."""

    parts: tuple[_Interval, ...]
    integers: bool = False

    def _normal(self, parts: Iterable[_Interval]) -> _Range:
        kept = []
        for part in parts:
            if self.integers:
                lo, hi = part.lo, part.hi
                if lo is not None:
                    whole = lo.to_integral_value(rounding=ROUND_FLOOR)
                    lo = whole if part.lo_closed and whole == lo else whole + 1
                if hi is not None:
                    whole = hi.to_integral_value(rounding=ROUND_CEILING)
                    hi = whole if part.hi_closed and whole == hi else whole - 1
                part = _Interval(lo, True, hi, True)
            if not part.empty():
                kept.append(part)
        return _Range(tuple(kept), self.integers)

    def __and__(self, other: _Range) -> _Range:
        return self._normal(a & b for a in self.parts for b in other.parts)

    def __sub__(self, other: _Range) -> _Range:
        result = self
        for part in other.parts:
            result = result & self._normal(part.complement())
        return result

    def empty(self) -> bool:
        return not self.parts


@dataclass(frozen=True)
class _Text:
    """Reasons that contain a word of each clause and none of the `excluded` words."""

    clauses: frozenset[frozenset[str]] = frozenset()
    excluded: frozenset[str] = frozenset()
    nothing: bool = False

    def __and__(self, other: _Text) -> _Text:
        return _Text(
            self.clauses | other.clauses,
            self.excluded | other.excluded,
            self.nothing or other.nothing,
        )

    def __sub__(self, other: _Text) -> _Text:
        if other.nothing:
            return self
        if not other.clauses:
            return _Text(nothing=True)
        if len(other.clauses) == 1 and not other.excluded:
            (clause,) = other.clauses
            return _Text(self.clauses, self.excluded | clause, self.nothing)
        raise NotImplementedError("only a single condition's reason is subtracted")

    def empty(self) -> bool:
        # A reason containing w contains every part of w: a clause is unsatisfiable when each
        # of its words contains an excluded word.
        return self.nothing or any(
            all(any(bad in word for bad in self.excluded) for word in clause)
            for clause in self.clauses
        )


_NON_NEGATIVE = (_Interval(Decimal(0), True, None, False),)


def _comparison_range(comparison: Comparison | None, integers: bool) -> _Range:
    whole = _Range(_NON_NEGATIVE, integers)
    if comparison is None:
        return whole
    bound = _Interval(None, False, None, False)
    for op, value in (
        ("eq", comparison.eq),
        ("gt", comparison.gt),
        ("gte", comparison.gte),
        ("lt", comparison.lt),
        ("lte", comparison.lte),
    ):
        if value is None:
            continue
        bound = (
            bound
            & {
                "eq": _Interval(value, True, value, True),
                "gt": _Interval(value, False, None, False),
                "gte": _Interval(value, True, None, False),
                "lt": _Interval(None, False, value, False),
                "lte": _Interval(None, False, value, True),
            }[op]
        )
    return whole & _Range((bound,), integers)


_Box = tuple[_Region, ...]


def _box(condition: Condition) -> _Box:
    everything = _Set(frozenset(), cofinite=True)

    def names(values: list[str] | None) -> _Set:
        return everything if values is None else _Set(frozenset(values))

    reason = (
        _Text()
        if condition.reason_contains is None
        else _Text(frozenset({frozenset(w.lower() for w in condition.reason_contains)}))
    )
    return (
        names(condition.type),
        _Set(frozenset(TIERS) if condition.tier is None else frozenset({condition.tier})),
        _comparison_range(condition.late_payments, integers=True),
        reason,
        _comparison_range(condition.amount, integers=False),
        names(condition.currency),
        names(condition.provider),
    )


def _box_empty(box: _Box) -> bool:
    return any(region.empty() for region in box)


def _subtract(box: _Box, other: _Box) -> list[_Box]:
    """`box` minus `other`, as disjoint boxes."""
    pieces: list[_Box] = []
    inside = list(box)
    for i, region in enumerate(box):
        outside = region - other[i]
        if not outside.empty():
            pieces.append((*inside[:i], outside, *box[i + 1 :]))
        inside[i] = region & other[i]
        if inside[i].empty():
            break
    return pieces


_MAX_PIECES = 20_000


def _overlaps(box: _Box, other: _Box) -> bool:
    return not _box_empty(tuple(a & b for a, b in zip(box, other, strict=True)))


def _unreachable(rules: Sequence[Rule], index: int) -> str | None:
    """Why rule `index` can never be the first match, or None when it can."""
    box = _box(rules[index].when)
    if _box_empty(box):
        return "can never match: its conditions contradict each other"
    earlier = [(rule, _box(rule.when)) for rule in rules[:index]]
    for rule, other in earlier:
        if not _subtract(box, other):
            same = rule.when == rules[index].when
            how = "has the same condition" if same else "matches every event it matches"
            return f"unreachable: earlier rule {rule.name} {how}"
    left = [box]
    for _, other in earlier:
        left = [piece for part in left for piece in _subtract(part, other)]
        if not left:
            names = [rule.name for rule, other in earlier if _overlaps(box, other)]
            return (
                f"unreachable: earlier rules {_listing(names)} together match every event"
                " it matches"
            )
        if len(left) > _MAX_PIECES:
            return None
    return None


@dataclass(frozen=True)
class Problem:
    severity: Literal["error", "warning"]
    rule: str | None
    message: str

    def __str__(self) -> str:
        where = f"rule {self.rule}: " if self.rule else ""
        return f"{self.severity}: {where}{self.message}"


def _variable_problems(rule: Rule, specs: Sequence[str], types: Sequence[str]) -> list[Problem]:
    problems = []
    for spec in specs:
        variable = Variable(spec)
        key = variable.details_key
        lacking: list[str] = []  # types whose events may lack a required variable
        never: list[str] = []  # types whose events never carry the details key
        columns: list[str] = []  # types whose details are the source's columns
        for event_type in types:
            facts = type_facts(event_type)
            if key is None:
                known = (
                    variable.name in ALWAYS_KNOWN
                    or variable.name in facts.fields
                    or (variable.name == "reason" and bool(rule.when.reason_contains))
                )
                if not known and not variable.optional:
                    lacking.append(event_type)
            elif facts.open_details:
                if not variable.optional:
                    columns.append(event_type)
            elif key not in facts.details:
                never.append(event_type)
            elif not variable.optional:
                lacking.append(event_type)
        shown = variable.name if key is None else f"details.{key}"
        required = not variable.optional
        verb = "needs" if required else "uses"
        if lacking:
            problems.append(
                Problem(
                    "error",
                    rule.name,
                    f"template {rule.template} needs {shown}, which {_listing(lacking)} events"
                    f" may lack (mark it optional: {variable.name}?)",
                )
            )
        if never:
            problems.append(
                Problem(
                    "error" if required else "warning",
                    rule.name,
                    f"template {rule.template} {verb} {shown}, which {_listing(never)} events"
                    " never carry"
                    + (" (every such message would dead-letter)" if required else ""),
                )
            )
        if columns:
            problems.append(
                Problem(
                    "warning",
                    rule.name,
                    f"template {rule.template} needs {shown}: every {_listing(columns)} row of"
                    f" the source must have a {key} column (rows without one dead-letter)",
                )
            )
    return problems


def check_rules(rules: RuleSet, event_types: Iterable[str] = EVENT_TYPES) -> list[Problem]:
    """Every problem with a rule set: errors (the file must not ship) and warnings."""
    known = sorted(set(event_types))
    problems: list[Problem] = []
    seen: set[str] = set()
    used: set[str] = set()
    for index, rule in enumerate(rules.rules):
        if rule.name in seen:
            problems.append(Problem("error", rule.name, "another rule has the same name"))
        seen.add(rule.name)
        for event_type in rule.when.type or []:
            if event_type not in known:
                close = difflib.get_close_matches(event_type, known, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                problems.append(
                    Problem(
                        "warning",
                        rule.name,
                        f"type {event_type} is not a canonical event type{hint}",
                    )
                )
        why = _unreachable(rules.rules, index)
        if why is not None:
            problems.append(Problem("error", rule.name, why))
        if rule.template not in rules.templates:
            problems.append(
                Problem("error", rule.name, f"template {rule.template} is not in templates")
            )
            continue
        used.add(rule.template)
        problems.extend(
            _variable_problems(rule, rules.templates[rule.template], rule.when.type or known)
        )
    for template, specs in rules.templates.items():
        names = [Variable(spec).name for spec in specs]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(
                Problem("error", None, f"template {template} lists {name} more than once")
            )
        if template not in used:
            problems.append(Problem("warning", None, f"template {template} is used by no rule"))
    for event_type in known:
        if not any(rule.when.type is None or event_type in rule.when.type for rule in rules.rules):
            problems.append(
                Problem(
                    "warning",
                    None,
                    f"no rule for {event_type} events (they dead-letter as no_template_rule)",
                )
            )
    return problems
