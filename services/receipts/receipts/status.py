"""One word for "did my receipt go out?", from a reference's audit history.

Each message (by its Siteti message id) is folded through the delivery state machine
(bridge.delivery_states), so the word never moves backwards, whatever order the receipts came
in: a `read` before its `delivered` is read, a `sent` after a `failed` is still failed, a
`failed` after `delivered` is stale. A reference may have several messages (WhatsApp refused
one, a re-send got through): any message delivered or read answers for the reference,
otherwise its latest message does ("dispatched" while only accepted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bridge.delivery_states import BY_STAGE, RANK, State, advance

# Furthest first, for histories without a message (nothing was accepted yet).
PROGRESS = ("read", "delivered", "sent", "dispatched", "dead_lettered", "received")


def message_states(
    stages: Sequence[str], messages: Sequence[str | None] | None = None
) -> dict[str | None, State]:
    """Each message's state, in the order the messages first appear. `messages[i]` is the
    message id of the i-th row (None for rows without one); without `messages`, every row is
    about one message."""
    ids: Sequence[str | None] = messages if messages is not None else [None] * len(stages)
    states: dict[str | None, State] = {}
    for stage, message_id in zip(stages, ids, strict=True):
        reported = BY_STAGE.get(stage)
        if reported is None:
            continue
        moved = advance(states.get(message_id), reported)
        if moved is not None:
            states[message_id] = moved
    return states


def summarize(stages: Sequence[str], messages: Sequence[str | None] | None = None) -> str | None:
    """The summary status of stages in history order (`messages` as in `message_states`);
    None when there are none. Histories with no message and none of the known stages (a
    contact's conversation events) report their latest stage."""
    if not stages:
        return None
    states = message_states(stages, messages)
    if states:
        reached = max(states.values(), key=RANK.__getitem__)
        if RANK[reached] >= RANK["delivered"]:
            return reached
        latest = list(states.values())[-1]
        return "dispatched" if latest == "accepted" else latest
    present = set(stages)
    for stage in PROGRESS:
        if stage in present:
            return stage
    return stages[-1]


def summarize_history(entries: Sequence[Mapping[str, Any]]) -> str | None:
    """`summarize` of audit rows as `bridge.audit.history` gives them."""
    ids = []
    for entry in entries:
        detail = entry.get("detail")
        message_id = detail.get("message_id") if isinstance(detail, Mapping) else None
        ids.append(message_id if isinstance(message_id, str) else None)
    return summarize([entry["stage"] for entry in entries], ids)
