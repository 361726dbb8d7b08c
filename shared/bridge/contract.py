"""What the event contract promises about each canonical event type's optional facts.

`bridge.events.EVENT_TYPES` names the types; this module says, per type, which optional
`EventData` fields and which `data.details` keys its events carry. The dispatcher's rule
checker (`bridge templates check`) and scripts/gen_schemas.py (schemas/v1, docs/events.md)
read it; ingest's sources produce what it describes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .events import SOURCE_EVENT_TYPES


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


def type_facts(event_type: str) -> TypeFacts:
    fields = frozenset({"reason"}) if event_type.endswith(".failed") else frozenset()
    return TypeFacts(
        fields, EVENT_DETAILS.get(event_type, frozenset()), event_type in SOURCE_EVENT_TYPES
    )
