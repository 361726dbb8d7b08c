"""One word for "did my receipt go out?", from a reference's audit history."""

from __future__ import annotations

from collections.abc import Sequence

# Furthest first: a read message was delivered and sent, whatever order the webhooks came in.
PROGRESS = ("read", "delivered", "sent", "dispatched", "dead_lettered", "received")
_SUCCESS_AFTER_FAILURE = frozenset({"delivered", "read"})


def summarize(stages: Sequence[str]) -> str | None:
    """The summary status of stages in history order; None when there are none.

    "failed" wins unless the message was delivered or read after the last failure (a retry
    that got through). Histories with none of the known stages (a contact's conversation
    events) report their latest stage.
    """
    if not stages:
        return None
    failures = [i for i, stage in enumerate(stages) if stage == "failed"]
    if failures and not _SUCCESS_AFTER_FAILURE.intersection(stages[failures[-1] + 1 :]):
        return "failed"
    present = set(stages)
    for stage in PROGRESS:
        if stage in present:
            return stage
    return stages[-1]
