"""Delivery confirmation metrics, following each message's delivery state
(bridge.delivery_states): a message counts once in `bridge_messages_delivered_total` when it
first reaches delivered or beyond (a `read` that came before its `delivered` counts; the
`delivered` after it does not), and that moment is timed from when Siteti accepted the
message (`bridge_send_to_delivered_seconds`).

The acceptance time is the dispatcher's (`sent_messages.accepted_at`, written as Siteti's
answer came back: Siteti's receipts do not say when the message was sent). The delivery time
is the receipt's `created_at`, Siteti's clock in whole seconds: clocks differ, so the time is
clamped at 0. A message the dispatcher did not record (past retention, or sent by another
system) is counted but not timed.
"""

from __future__ import annotations

from bridge.delivery_states import reached_delivery
from bridge.metrics import MESSAGES_DELIVERED, SEND_TO_DELIVERED, elapsed_seconds

from .outcomes import Effect
from .webhooks import Receipt


def note_delivery(receipt: Receipt, effect: Effect) -> None:
    """Count and time the receipt's message if the receipt (committed) delivered it."""
    if effect.after is None or not reached_delivery(effect.before, effect.after):
        return
    MESSAGES_DELIVERED.inc()
    if effect.accepted_at is not None:
        SEND_TO_DELIVERED.observe(elapsed_seconds(effect.accepted_at, receipt.occurred_at))
