"""console.filters and console.jobs.parse_ids: the list's form as the admin API's query."""

from __future__ import annotations

import pytest

from console.filters import LIST_LIMIT, ListFilters
from console.jobs import MAX_ENTRIES, parse_ids
from dispatcher.dlq import Filters


def test_default_is_every_open_entry() -> None:
    assert ListFilters.from_form({}).query() == {
        "limit": str(LIST_LIMIT),
        "status": "pending,manual_review",
    }


def test_every_filter_becomes_its_query_parameter() -> None:
    chosen = ListFilters.from_form(
        {
            "status": "manual_review",
            "reason": " missing_contact ",
            "provider": "moniepoint",
            "age": "older_than:1d",
        }
    )
    assert chosen.query() == {
        "limit": str(LIST_LIMIT),
        "status": "manual_review",
        "reason": "missing_contact",
        "provider": "moniepoint",
        "older_than": "1d",
    }


def test_any_status_and_recent_entries() -> None:
    query = ListFilters.from_form({"status": "", "age": "newer_than:1h"}).query()
    assert query == {"limit": str(LIST_LIMIT), "newer_than": "1h"}


@pytest.mark.parametrize(
    "form", [{"status": "nope"}, {"age": "older_than:1y"}, {"reason": "x" * 201}]
)
def test_choices_the_form_does_not_offer_are_refused(form: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        ListFilters.from_form(form)


def test_the_form_round_trips() -> None:
    chosen = ListFilters(status="failed", reason="r", provider="p", age="older_than:7d")
    assert ListFilters.from_form(chosen.form()) == chosen


def test_entry_ids_from_checkboxes() -> None:
    assert parse_ids(["3", "1", "3"]) == [3, 1]
    for bad in ([], ["x"], ["１"], ["-1"], [str(i) for i in range(MAX_ENTRIES + 1)]):
        with pytest.raises(ValueError):
            parse_ids(bad)


def test_the_admin_api_filters_by_reference() -> None:
    # The story page lists one transaction's dead letters: GET /dlq?reference=…
    chosen = Filters.parse(reference="moniepoint:MNP-1")
    assert chosen.reference == "moniepoint:MNP-1" and chosen.narrowing
    assert Filters.parse(reference="").reference is None
