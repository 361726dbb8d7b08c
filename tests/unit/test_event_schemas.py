"""The canonical event contract: schemas/v1 is what scripts/gen_schemas.py makes of the model,
every adapter's event for every fixture validates against its type's schema, and the
examples in docs/events.md are real."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from decimal import Decimal
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from bridge.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    TOPICS,
    CanonicalEvent,
    Customer,
    EventData,
    new_event,
)
from bridge.inbound import MODELS as INBOUND_MODELS
from ingest.providers import PROVIDERS
from ingest.providers.base import WebhookRequest
from ingest.providers.moniepoint import Moniepoint
from ingest.sources.filedrop_reader import FiledropConfig, plan_file
from ingest.sources.poller import map_row
from tests.unit.test_provider_parsing import ADAPTERS, EXPECTED, FIXTURES, load

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
DOCS = ROOT / "docs" / "events.md"
EXAMPLE = ROOT / "docs" / "examples" / "consumer.py"
URN = "urn:siteti-bridge:schema:"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_schemas", ROOT / "scripts/gen_schemas.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = load_generator()


@cache
def validator(event_type: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"v{SCHEMA_VERSION}" / f"{event_type}.json").read_text())
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def errors(document: Any, event_type: str | None = None) -> list[str]:
    kind = event_type or document["type"]
    return [
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator(kind).iter_errors(document)
    ]


def wire(event: CanonicalEvent) -> Any:
    """The event exactly as it is on the topic."""
    return orjson.loads(event.to_json())


def minimal(event_type: str, **changes: Any) -> CanonicalEvent:
    data = EventData(
        provider="moniepoint",
        transaction_reference="MNP-1",
        amount=Decimal("5000.00"),
        customer=Customer(account_number="0123456789"),
        reason="insufficient funds" if event_type.endswith(".failed") else None,
    )
    return new_event(data.model_copy(update=changes), event_type)


# --- the committed schemas are the generator's output ----------------------------------------


def test_every_event_type_has_a_schema() -> None:
    # And the replies and conversations topics' events (bridge.inbound; test_inbound_topics).
    on_disk = {p.stem for p in (SCHEMAS / f"v{SCHEMA_VERSION}").glob("*.json")}
    assert on_disk == set(EVENT_TYPES) | set(INBOUND_MODELS)


def test_committed_schemas_equal_the_generator_output() -> None:
    assert GEN.differences() == [], "run: python scripts/gen_schemas.py"


def test_generator_is_deterministic() -> None:
    assert GEN.render() == GEN.render()
    for text in GEN.render().values():
        again = json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False)
        assert text == again + "\n"


def test_generator_check_mode_reports_drift(tmp_path: Path) -> None:
    assert GEN.write(tmp_path) == sorted(GEN.render())
    assert GEN.differences(tmp_path) == []
    first = sorted(GEN.render())[0]
    (tmp_path / first).write_text("{}\n")
    (tmp_path / f"v{SCHEMA_VERSION}" / "payment.teleported.json").write_text("{}\n")
    problems = GEN.differences(tmp_path)
    assert any(first in line and "differs" in line for line in problems)
    assert any("payment.teleported" in line and "stale" in line for line in problems)
    GEN.write(tmp_path)
    assert GEN.differences(tmp_path) == []


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_schema_is_valid_draft_2020_12_with_the_urn_as_id(event_type: str) -> None:
    schema = validator(event_type).schema
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    urn = f"urn:siteti-bridge:schema:{event_type}:v{SCHEMA_VERSION}"
    assert schema["$id"] == urn
    assert schema["properties"]["type"]["const"] == event_type
    assert schema["properties"]["dataschema"]["const"] == urn
    assert set(schema["required"]) >= {"specversion", "id", "source", "type", "data"}


# --- real events validate ---------------------------------------------------------------------


def fixture_events() -> list[tuple[str, str, CanonicalEvent]]:
    """(provider, fixture, event) for every event any fixture parses to, found on disk."""
    found = []
    for path in sorted(FIXTURES.glob("*/*.json")):
        provider, name = path.parent.name, path.stem
        outcome = ADAPTERS[provider].parse(WebhookRequest(load(provider, name), {}))
        if isinstance(outcome, list):
            found += [(provider, name, event) for event in outcome]
    return found


FIXTURE_EVENTS = fixture_events()


def test_fixture_events_cover_every_adapter_and_the_parsing_table() -> None:
    assert {(p, f) for p, f, _ in FIXTURE_EVENTS} == {(e.provider, e.fixture) for e in EXPECTED}
    assert {p for p, _, _ in FIXTURE_EVENTS} == set(ADAPTERS)
    assert set(ADAPTERS) | {Moniepoint.name} == set(PROVIDERS)


@pytest.mark.parametrize(
    ("provider", "fixture", "event"), FIXTURE_EVENTS, ids=[f"{p}-{f}" for p, f, _ in FIXTURE_EVENTS]
)
def test_every_fixture_event_validates_against_its_schema(
    provider: str, fixture: str, event: CanonicalEvent
) -> None:
    document = wire(event)
    assert document["dataschema"] == validator(event.type).schema["$id"]
    assert errors(document) == []


MONIEPOINT = [
    ("payment.successful", {}),
    ("payment.failed", {"reason": "insufficient funds"}),
    ("transfer.completed", {}),
    ("transfer.failed", {"reason": "bank network timeout"}),
]


# Moniepoint has no fixture directory: its payload is the one of the providers contract.
MONIEPOINT_PAYLOAD: dict[str, Any] = {
    "event": "payment.successful",
    "data": {
        "transactionReference": "MNP-20260120-889900",
        "amount": 5000.00,
        "currency": "NGN",
        "customer": {"accountNumber": "0123456789", "name": "Ada Obi", "email": "a@x.ng"},
        "timestamp": "2026-01-20T14:30:00Z",
        "description": "Office cleaning",
        "channel": "TRANSFER",
        "settlement": {"status": "PENDING"},
        "nextDueDate": "2026-02-20",
    },
}


@pytest.mark.parametrize(("kind", "extra"), MONIEPOINT, ids=[k for k, _ in MONIEPOINT])
def test_moniepoint_events_validate(kind: str, extra: dict[str, Any]) -> None:
    payload = {"event": kind, "data": {**MONIEPOINT_PAYLOAD["data"], **extra}}
    outcome = PROVIDERS["moniepoint"].parse(WebhookRequest(json.dumps(payload).encode(), {}))
    assert isinstance(outcome, list) and len(outcome) == 1
    assert errors(wire(outcome[0])) == []


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_a_minimal_event_of_every_type_validates(event_type: str) -> None:
    assert errors(wire(minimal(event_type))) == []


SOURCE_FILES = sorted(
    [*(ROOT / "samples" / "filedrop").glob("*.*"), *(ROOT / "tests/fixtures/filedrop").glob("*.*")]
)


@pytest.mark.parametrize("path", SOURCE_FILES, ids=lambda p: p.name)
def test_file_drop_events_validate(path: Path) -> None:
    data = path.read_bytes()
    plan = plan_file(path.name, data, hashlib.sha256(data).hexdigest(), FiledropConfig())
    assert plan.events
    for _, event in plan.events:
        assert errors(wire(event)) == []


ORDERS_VIEW_ROWS = [
    {"source_id": "ORD-1001:completed", "event_type": "order.completed",
     "transaction_reference": "ORD-1001", "amount": Decimal("18500.00"), "currency": "NGN",
     "account_number": "0123456789", "email": "ada@example.com", "name": "Ada Obi",
     "occurred_at": "2026-01-22T09:15:00", "order_id": "ORD-1001", "items": 2,
     "carrier": None, "tracking_number": None},
    {"source_id": "ORD-1002:shipped", "event_type": "order.shipped",
     "transaction_reference": "ORD-1002", "amount": Decimal("7250.50"), "currency": "NGN",
     "account_number": "0234567890", "email": "tunde@example.com", "name": "Tunde Bakare",
     "occurred_at": "2026-01-22T10:00:00+01:00", "order_id": "ORD-1002", "items": 1,
     "carrier": "GIG Logistics", "tracking_number": "GIG-55810"},
]  # fmt: skip


@pytest.mark.parametrize("row", ORDERS_VIEW_ROWS, ids=lambda r: r["event_type"])
def test_polled_rows_validate(row: dict[str, Any]) -> None:
    # The rows of samples/poller/orders.sql's view.
    assert errors(wire(map_row(row, "dbpoll"))) == []


# --- the schemas say no where the contract does ---------------------------------------------


def test_failed_types_require_a_reason() -> None:
    document = wire(minimal("payment.failed"))
    document["data"]["reason"] = None
    assert errors(document)
    document["data"]["reason"] = ""
    assert errors(document)
    ok = wire(minimal("payment.successful"))
    assert ok["data"]["reason"] is None and errors(ok) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("type",), "payment.failed"),
        (("dataschema",), "urn:siteti-bridge:schema:payment.failed:v1"),
        (("dataversion",), "2"),
        (("specversion",), "0.3"),
        (("priority",), "urgent"),
        (("traceparent",), "00-abc-def-01"),
        (("traceparent",), "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"),
        (("id",), "not-a-uuid"),
        (("subject",), "no-provider"),
        (("data", "amount"), 5000.0),
        (("data", "amount"), "5,000.00"),
        (("data", "amount"), "-1"),
        (("data", "customer"), {"account_number": None, "email": None, "phone": None, "name": "A"}),
        (("data", "details"), {"order_id": 42}),
        (("data", "transaction_reference"), ""),
    ],
    ids=lambda v: str(v),
)
def test_schema_rejects(path: tuple[str, ...], value: Any) -> None:
    document = wire(minimal("payment.successful"))
    target = document
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    assert errors(document, "payment.successful")


@pytest.mark.parametrize("field", ["id", "source", "time", "data"])
def test_schema_requires_envelope_attributes(field: str) -> None:
    document = wire(minimal("payment.successful"))
    del document[field]
    assert errors(document)


def test_schemas_are_open_to_additive_changes() -> None:
    # Versioning policy: within v1 fields are only added; a consumer validating with the v1
    # files keeps accepting newer events.
    document = wire(minimal("payment.successful"))
    document["partitionkey"] = "acct:0123456789"  # an extension attribute v1 does not define
    document["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    document["data"]["loyalty_points"] = 12
    document["data"]["customer"]["tier"] = "returning"
    assert errors(document) == []


def test_the_dispatcher_reads_events_with_extension_attributes_it_does_not_know() -> None:
    # A newer producer's extension must not make an older dispatcher dead-letter its events.
    document = wire(minimal("payment.successful"))
    document["partitionkey"] = "acct:0123456789"
    event = CanonicalEvent.from_json(orjson.dumps(document))
    assert event.id == document["id"]
    assert "partitionkey" not in orjson.loads(event.to_json())


def test_details_keys_are_documented_per_type() -> None:
    details = validator("bill.completed").schema["$defs"]["EventData"]["properties"]["details"]
    assert "biller" in details["properties"]
    event = minimal("bill.completed", details={"biller": "IKEDC Prepaid"})
    assert errors(wire(event)) == []


# --- docs/events.md ---------------------------------------------------------------------------


def doc_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)


def test_docs_cover_every_event_type() -> None:
    text = DOCS.read_text()
    for event_type in sorted(EVENT_TYPES):
        assert f"| `{event_type}` |" in text, f"{event_type} missing from the catalogue"


def test_docs_example_events_validate() -> None:
    events = [json.loads(block) for block in doc_blocks("json")]
    canonical = [e for e in events if e.get("type") in EVENT_TYPES]
    assert len(canonical) >= 2
    for document in canonical:
        assert errors(document) == []
        CanonicalEvent.model_validate(document)


def test_docs_example_replies_and_conversations_validate() -> None:
    documents = [json.loads(block) for block in doc_blocks("json")]
    found = {}
    for document in documents:
        name = document.get("dataschema", "").removeprefix(URN).rpartition(":")[0]
        if name in INBOUND_MODELS:
            assert errors(document, name) == []
            INBOUND_MODELS[name].model_validate(document)
            found[name] = document
    assert set(found) == set(INBOUND_MODELS)


def test_docs_topics_match_the_code() -> None:
    text = DOCS.read_text()
    for topic in TOPICS:
        days = topic.retention_ms // (24 * 3600 * 1000)
        assert f"| `{topic.name}` | {topic.partitions} | {days} days |" in text


def test_docs_consumer_is_the_example_file() -> None:
    assert EXAMPLE.read_text() in doc_blocks("python")
