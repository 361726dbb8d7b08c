"""The delivery state of one WhatsApp message: a small state machine. Pure.

Siteti's receipts come at least once and in no order (contract: `message.read` may come
before `message.delivered`, the same event twice). The states are totally ordered,

    accepted < sent < failed < delivered < read

and an event moves a message to its state only when that is further on, so the state is the
furthest point any receipt showed: the same whatever order and however many copies they came
in, and never moving backwards. `failed` sits between: it ends a message that was only sent
(a `sent` arriving after it changes nothing), and a `failed` arriving after `delivered` or
`read` is stale (the phone has the message) and ignored.
"""

from __future__ import annotations

from typing import Literal, get_args

State = Literal["accepted", "sent", "failed", "delivered", "read"]
STATES: tuple[State, ...] = get_args(State)
RANK: dict[str, int] = {state: rank for rank, state in enumerate(STATES)}

# Siteti's message event types and the dispatcher's audit stage → the state each reports.
BY_EVENT_TYPE: dict[str, State] = {
    "message.sent": "sent",
    "message.delivered": "delivered",
    "message.read": "read",
    "message.failed": "failed",
}
BY_STAGE: dict[str, State] = {
    "dispatched": "accepted",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
}


def advance(current: State | None, reported: State) -> State | None:
    """The message's state after a receipt reporting `reported`; None when the receipt
    changes nothing (a copy, or news older than what is known). `current` None: a message
    nothing is known of yet (its send not recorded here)."""
    if current is None or RANK[reported] > RANK[current]:
        return reported
    return None


def reached_delivery(before: State | None, after: State) -> bool:
    """Whether a move from `before` to `after` is the message's first arrival at delivered
    or beyond (a `read` without a `delivered` counts): true once per message."""
    delivered = RANK["delivered"]
    return RANK[after] >= delivered and (before is None or RANK[before] < delivered)
