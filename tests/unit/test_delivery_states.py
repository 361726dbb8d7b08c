"""Issue 12: the delivery state machine (bridge.delivery_states) tolerates any order and any
duplicates of a message's receipts, and never moves backwards."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.delivery_states import RANK, STATES, State, advance, reached_delivery

REPORTED: tuple[State, ...] = ("sent", "delivered", "read", "failed")
# A message's receipts as they may arrive: any of them, any order, some twice.
arrivals = st.lists(st.sampled_from(REPORTED), max_size=12)


def fold(start: State | None, events: list[State]) -> tuple[State | None, list[State | None]]:
    state, seen = start, [start]
    for event in events:
        moved = advance(state, event)
        if moved is not None:
            state = moved
        seen.append(state)
    return state, seen


@given(arrivals, st.randoms(use_true_random=False))
def test_any_order_and_duplicates_end_where_the_sorted_order_does(
    events: list[State], rng: object
) -> None:
    shuffled = list(events)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    ordered = sorted(set(events), key=RANK.__getitem__)
    assert fold("accepted", shuffled)[0] == fold("accepted", ordered)[0]


@given(st.one_of(st.none(), st.sampled_from(STATES)), arrivals)
def test_the_state_never_moves_backwards(start: State | None, events: list[State]) -> None:
    _, seen = fold(start, events)
    ranks = [RANK[s] for s in seen if s is not None]
    assert ranks == sorted(ranks)


@given(arrivals)
def test_a_message_counts_as_delivered_once_if_it_got_there(events: list[State]) -> None:
    state: State | None = "accepted"
    counted = 0
    for event in events:
        moved = advance(state, event)
        if moved is not None:
            counted += reached_delivery(state, moved)
            state = moved
    assert counted == (1 if {"delivered", "read"} & set(events) else 0)


def test_the_cases_the_contract_names() -> None:
    assert advance("sent", "read") == "read"  # read before delivered
    assert advance("read", "delivered") is None  # … and the delivered after it changes nothing
    assert reached_delivery("sent", "read") and not reached_delivery("read", "read")
    assert advance("sent", "failed") == "failed"  # failed after sent
    assert advance("failed", "sent") is None  # a late sent does not revive it
    assert advance("delivered", "failed") is None  # a stale failure is ignored
    assert advance("delivered", "delivered") is None  # the same event twice
    assert advance(None, "delivered") == "delivered"  # a message nothing was known of
    assert reached_delivery(None, "delivered")
