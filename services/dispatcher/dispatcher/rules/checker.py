"""Static checks of a rule file, for `bridge templates check`: unknown types and templates,
unreachable rules, template variables some events cannot fill, event types no rule covers.

A rule's condition is a box: one region per dimension (type, tier, late payments, reason,
amount, currency, provider), and it matches exactly the events inside every region. A rule is
unreachable when the boxes of the rules before it cover its own box; that is decided exactly
by subtracting the earlier boxes one by one and seeing whether anything is left.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Literal, Protocol, Self

from bridge.contract import type_facts
from bridge.events import EVENT_TYPES

from ..customers import TIERS
from .model import ALWAYS_KNOWN, Comparison, Condition, Rule, RuleSet, Variable


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
                f"unreachable: earlier rules {', '.join(names)} together match every event"
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
                    f"template {rule.template} needs {shown}, which {', '.join(lacking)} events"
                    f" may lack (mark it optional: {variable.name}?)",
                )
            )
        if never:
            problems.append(
                Problem(
                    "error" if required else "warning",
                    rule.name,
                    f"template {rule.template} {verb} {shown}, which {', '.join(never)} events"
                    " never carry"
                    + (" (every such message would dead-letter)" if required else ""),
                )
            )
        if columns:
            problems.append(
                Problem(
                    "warning",
                    rule.name,
                    f"template {rule.template} needs {shown}: every {', '.join(columns)} row of"
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
    # The number-confirmation rules, a first-match list of their own, are checked alike.
    groups = (rules.rules, rules.confirmation_rules)
    for group, index, rule in ((g, i, r) for g in groups for i, r in enumerate(g)):
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
        why = _unreachable(group, index)
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
