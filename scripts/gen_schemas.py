"""Generate the event contracts: `schemas/v1/<type>.json`, one per canonical event type, and
`schemas/v1/<name>.json` for the replies and conversations topics (bridge.inbound).

    python scripts/gen_schemas.py           # write the files (and remove stale ones)
    python scripts/gen_schemas.py --check   # exit 1 when the files differ from the model

Each file is a JSON Schema (draft 2020-12) of the whole CloudEvents 1.0 structured envelope
as it is on `bridge.events.v1`, generated from `bridge.events.CanonicalEvent`
(`model_json_schema`, serialization mode: what `to_json` writes) and specialised per type:
the `type`, `dataschema` and `dataversion` constants, `data.reason` required for failed
types, the documented `data.details` keys. Output is deterministic (sorted keys).

Schemas are open (no `additionalProperties: false`): within v1, fields are only ever added,
so a consumer validating with these files keeps accepting newer v1 events. The producer side
stays closed (the pydantic models forbid unknown fields).

The replies and conversations schemas (`bridge.message.received`, `bridge.conversation.state`)
are the pydantic models of bridge.inbound as they are, opened the same way.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

from bridge.contract import type_facts
from bridge.events import (
    AMOUNT_PATTERN,
    EARLIEST_EVENT_TIME,
    EVENT_TYPES,
    MAX_FUTURE_SKEW,
    SCHEMA_VERSION,
    CanonicalEvent,
)
from bridge.inbound import MODELS

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"
VERSION_DIR = f"v{SCHEMA_VERSION}"
DIALECT = "https://json-schema.org/draft/2020-12/schema"

# The fields of v1 as first published: every v1 event carries them (the producer writes every
# field, null when unknown), so they are required. A field added later within v1 is not
# listed here and stays optional, as the versioning policy (docs/events.md) promises.
V1_ENVELOPE = (
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "dataversion",
    "priority",
    "data",
)
V1_DATA = (
    "provider",
    "transaction_reference",
    "amount",
    "currency",
    "customer",
    "reason",
    "description",
    "channel",
    "occurred_at",
    "next_due_date",
    "details",
)
V1_CUSTOMER = ("account_number", "email", "phone", "name")

# JSON Schema has no bounds for a date-time: the model's window is stated instead.
_WINDOW = (
    f" Never before {EARLIEST_EVENT_TIME:%Y-%m-%d} nor more than"
    f" {MAX_FUTURE_SKEW.days} day ahead of the producer's clock."
)
ENVELOPE_DOCS = {
    "specversion": "CloudEvents version: always 1.0.",
    "id": "Event id (UUID), derived from subject and type: a redelivery has the same id."
    " Dedupe on it.",
    "source": "Producer: /siteti-bridge/ingest/<provider>.",
    "type": "Canonical event type.",
    "subject": "The Siteti reference <provider>:<transaction_reference>.",
    "time": "When the business event happened (the provider's time), else when it was received."
    + _WINDOW,
    "datacontenttype": "Always application/json.",
    "dataschema": "This schema's $id: urn:siteti-bridge:schema:<type>:v<dataversion>.",
    "dataversion": "Contract version of data (extension attribute).",
    "priority": "transactional (confirmations) or bulk (reminders, polled rows) (extension).",
    "traceparent": "W3C Trace Context of the event's trace, version 00 (CloudEvents"
    " distributed-tracing extension; the Kafka record's traceparent header has the same value)."
    " Added in v1: may be absent or null.",
    "data": "The business facts, the same shape for every source.",
}
DATA_DOCS = {
    "provider": "The source's name (moniepoint, paystack, …, dbpoll).",
    "transaction_reference": "The provider's unique transaction reference.",
    "amount": "Major units as a decimal string, exactly as the provider gave it (5000.00).",
    "currency": "ISO 4217 code.",
    "customer": "Who the event is about; at least one of account_number, email, phone.",
    "reason": "Why it failed (free text from the provider); set on every *.failed event.",
    "description": "The provider's description or narration.",
    "channel": "Payment channel (card, transfer, …) when given.",
    "occurred_at": "The provider's own timestamp, when given." + _WINDOW,
    "next_due_date": "Next payment due date (YYYY-MM-DD) when the source gives one.",
    "details": "Source-specific facts, text values (order_id, biller, property, due_date…).",
}
CUSTOMER_DOCS = {
    "account_number": "Account number (the directory's first look-up key).",
    "email": "Email address (second look-up key).",
    "phone": "Phone number when the source gives one (webhooks: international digits, no +).",
    "name": "Name as the source gave it.",
}
DETAILS_DOCS = {
    "order_id": "The order the payment or row is for.",
    "biller": "The biller paid (WasaaPay bill payments).",
    "property": "The rented property (the rent-status file's column).",
    "unit": "The unit within the property (the rent-status file's column).",
    "due_date": "When the rent is (or was) due, YYYY-MM-DD (also in next_due_date).",
    "carrier": "Who delivers the order (the orders view's column).",
    "tracking_number": "The carrier's tracking number (the orders view's column).",
}


def _without_titles(node: Any) -> Any:
    """Drop pydantic's generated `title`s (noise next to the descriptions)."""
    if isinstance(node, dict):
        return {
            key: _without_titles(value)
            for key, value in node.items()
            if not (key == "title" and isinstance(value, str))
        }
    if isinstance(node, list):
        return [_without_titles(item) for item in node]
    return node


def _describe(properties: dict[str, Any], docs: dict[str, str]) -> None:
    for name, text in docs.items():
        if name in properties:
            properties[name]["description"] = text


def _required(model_required: list[str], v1: tuple[str, ...], present: dict[str, Any]) -> list[str]:
    names = set(model_required) | {name for name in v1 if name in present}
    return [name for name in present if name in names]


def schema_for(event_type: str) -> dict[str, Any]:
    """The JSON Schema of one event type's CloudEvent."""
    urn = f"urn:siteti-bridge:schema:{event_type}:v{SCHEMA_VERSION}"
    base = _without_titles(CanonicalEvent.model_json_schema(mode="serialization"))
    schema: dict[str, Any] = copy.deepcopy(base)
    defs = schema["$defs"]
    for node in (schema, defs["EventData"], defs["Customer"]):
        node.pop("additionalProperties", None)

    envelope = schema["properties"]
    _describe(envelope, ENVELOPE_DOCS)
    envelope["type"] = {"const": event_type, "description": ENVELOPE_DOCS["type"]}
    envelope["dataschema"] = {"const": urn, "description": ENVELOPE_DOCS["dataschema"]}
    envelope["dataversion"] = {"const": SCHEMA_VERSION, "description": ENVELOPE_DOCS["dataversion"]}
    envelope["id"]["format"] = "uuid"
    envelope["source"]["format"] = "uri-reference"
    schema["required"] = _required(schema.get("required", []), V1_ENVELOPE, envelope)

    data = defs["EventData"]
    fields = data["properties"]
    _describe(fields, DATA_DOCS)
    # The model's limits are in the schemas as the model generates them (maxLength, pattern);
    # the amount is a string on the wire, so its bounds are a pattern.
    fields["amount"]["pattern"] = AMOUNT_PATTERN
    facts = type_facts(event_type)
    if "reason" in facts.fields:
        text = next(s for s in fields["reason"]["anyOf"] if s.get("type") == "string")
        fields["reason"] = {**text, "minLength": 1, "description": DATA_DOCS["reason"]}
    details = fields["details"]
    # pydantic writes a constrained key as patternProperties; say it as JSON Schema means it:
    # every key obeys propertyNames, every value the text schema.
    (key_pattern, value), *_ = details.pop("patternProperties").items()
    details["propertyNames"]["pattern"] = key_pattern
    details["additionalProperties"] = value
    if facts.details:
        details["properties"] = {
            key: {**value, "description": DETAILS_DOCS.get(key, key)}
            for key in sorted(facts.details)
        }
    if facts.open_details:
        details["description"] += (
            " For this type the keys are the source's own columns (database poller, file drop)."
        )
    data["required"] = _required(data.get("required", []), V1_DATA, fields)

    customer = defs["Customer"]
    _describe(customer["properties"], CUSTOMER_DOCS)
    customer["required"] = _required(
        customer.get("required", []), V1_CUSTOMER, customer["properties"]
    )
    customer["anyOf"] = [
        {"properties": {key: {"type": "string", "minLength": 1}}, "required": [key]}
        for key in ("account_number", "email", "phone")
    ]

    return {
        "$schema": DIALECT,
        "$id": urn,
        "title": f"{event_type} (siteti-bridge canonical event, v{SCHEMA_VERSION})",
        "description": (
            f"A {event_type} event on bridge.events.v{SCHEMA_VERSION}: a CloudEvents 1.0"
            " structured-mode JSON message. Generated by scripts/gen_schemas.py from"
            " bridge.events.CanonicalEvent; see docs/events.md."
        ),
        **{key: value for key, value in schema.items() if key not in ("title", "description")},
    }


def inbound_schema_for(name: str) -> dict[str, Any]:
    """The JSON Schema of a bridge.inbound event (`name`: its schema name), opened."""
    model = MODELS[name]
    schema: dict[str, Any] = _without_titles(model.model_json_schema(mode="serialization"))
    for node in (schema, *schema["$defs"].values()):
        node.pop("additionalProperties", None)
    what = schema.pop("description")
    return {
        "$schema": DIALECT,
        "$id": model.model_fields["dataschema"].default,
        "title": f"{name} (siteti-bridge, v{SCHEMA_VERSION})",
        "description": f"{what} A CloudEvents 1.0 structured-mode JSON message. Generated by"
        " scripts/gen_schemas.py from bridge.inbound; see docs/events.md.",
        **schema,
    }


def _dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render() -> dict[str, str]:
    """Path relative to schemas/ → file text, for every canonical event type and every
    bridge.inbound event."""
    canonical = {
        f"{VERSION_DIR}/{event_type}.json": _dump(schema_for(event_type))
        for event_type in sorted(EVENT_TYPES)
    }
    inbound = {f"{VERSION_DIR}/{name}.json": _dump(inbound_schema_for(name)) for name in MODELS}
    return canonical | inbound


def differences(root: Path = SCHEMAS) -> list[str]:
    """What `write` would change under `root`, one line per file."""
    wanted = render()
    problems = [
        f"{name}: {'differs from' if (root / name).exists() else 'missing for'} the model"
        for name, text in wanted.items()
        if not (root / name).exists() or (root / name).read_text(encoding="utf-8") != text
    ]
    problems += [
        f"{path.relative_to(root)}: no such event type (stale)"
        for path in sorted((root / VERSION_DIR).glob("*.json"))
        if str(path.relative_to(root)) not in wanted
    ]
    return problems


def write(root: Path = SCHEMAS) -> list[str]:
    wanted = render()
    (root / VERSION_DIR).mkdir(parents=True, exist_ok=True)
    for path in (root / VERSION_DIR).glob("*.json"):
        if str(path.relative_to(root)) not in wanted:
            path.unlink()
    for name, text in wanted.items():
        (root / name).write_text(text, encoding="utf-8")
    return sorted(wanted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate schemas/v1 from the event model.")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on drift")
    args = parser.parse_args(argv)
    if args.check:
        problems = differences()
        for line in problems:
            print(line)
        if problems:
            print("run: python scripts/gen_schemas.py")
        return 1 if problems else 0
    written = write()
    print(f"wrote {len(written)} schemas under {SCHEMAS.relative_to(ROOT)}/{VERSION_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
