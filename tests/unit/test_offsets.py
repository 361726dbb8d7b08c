"""The commit rule (issue 7): an offset is acked to faust — and so may be committed — only
when every earlier offset of its partition is settled, whatever order the lanes finish in."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.offsets import OffsetLedger

TP = ("bridge.events.v1", 0)


class Acks:
    """Records the order in which faust would be told "acked"."""

    def __init__(self) -> None:
        self.order: list[tuple[object, int]] = []

    def for_(self, partition: object, offset: int) -> object:
        return lambda: self.order.append((partition, offset))


def test_an_offset_settled_ahead_of_an_earlier_one_is_held_back() -> None:
    ledger, acks = OffsetLedger(), Acks()
    for offset in (10, 11, 12):
        ledger.received(TP, offset, acks.for_(TP, offset))
    assert ledger.settled(TP, 12) == 0
    assert ledger.settled(TP, 11) == 0
    assert acks.order == []  # 10 is still in flight: nothing may be committed
    assert ledger.held(TP) == [10, 11, 12]
    assert ledger.settled(TP, 10) == 3
    assert acks.order == [(TP, 10), (TP, 11), (TP, 12)]
    assert ledger.held(TP) == []


def test_the_first_records_of_a_partition_are_guarded_too() -> None:
    # faust's own guard is skipped before the first commit (committed offset None or 0):
    # the lost events of issue 7. Here offset 0 must settle before 1 and 2 are acked.
    ledger, acks = OffsetLedger(), Acks()
    for offset in (0, 1, 2):
        ledger.received(TP, offset, acks.for_(TP, offset))
    ledger.settled(TP, 2)
    ledger.settled(TP, 1)
    assert acks.order == []
    ledger.settled(TP, 0)
    assert [offset for _, offset in acks.order] == [0, 1, 2]


def test_partitions_are_independent() -> None:
    ledger, acks = OffsetLedger(), Acks()
    other = ("bridge.events.v1", 1)
    ledger.received(TP, 5, acks.for_(TP, 5))
    ledger.received(other, 7, acks.for_(other, 7))
    ledger.settled(other, 7)
    assert acks.order == [(other, 7)]


def test_a_revoked_partition_acks_nothing_afterwards() -> None:
    ledger, acks = OffsetLedger(), Acks()
    ledger.received(TP, 1, acks.for_(TP, 1))
    ledger.forget([TP])
    assert ledger.settled(TP, 1) == 0
    assert acks.order == []


def test_records_read_again_replace_the_copies_held_from_before() -> None:
    # A rebalance gives the partition back from its committed offset: old copies still in
    # the lanes may settle late, and must not ack for the new ones.
    ledger, acks = OffsetLedger(), Acks()
    old = {offset: acks.for_("old", offset) for offset in (3, 4, 5)}
    for offset, ack in old.items():
        ledger.received(TP, offset, ack)
    new = {offset: acks.for_("new", offset) for offset in (3, 4, 5)}
    for offset, ack in new.items():
        ledger.received(TP, offset, ack)
    assert ledger.settled(TP, 3, old[3]) == 0  # a stale copy settling counts for nothing
    assert ledger.settled(TP, 3, new[3]) == 1
    assert acks.order == [("new", 3)]


def test_unknown_offsets_are_ignored() -> None:
    ledger = OffsetLedger()
    assert ledger.settled(TP, 99) == 0


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=60).flatmap(
        lambda partitions: st.tuples(
            st.just(partitions), st.permutations(list(range(len(partitions))))
        )
    )
)
def test_any_settle_order_acks_each_partition_in_offset_order_and_only_settled_prefixes(
    case: tuple[list[int], list[int]],
) -> None:
    partitions, settle_order = case
    ledger, acks = OffsetLedger(), Acks()
    next_offset: dict[int, int] = {}
    records: list[tuple[int, int]] = []
    for partition in partitions:
        offset = next_offset.get(partition, 0)
        next_offset[partition] = offset + 1
        records.append((partition, offset))
        ledger.received(partition, offset, acks.for_(partition, offset))
    settled: set[tuple[int, int]] = set()
    for index in settle_order:
        partition, offset = records[index]
        settled.add((partition, offset))
        ledger.settled(partition, offset)
        for acked_partition, acked_offset in acks.order:
            # Everything at or before an acked offset of its partition has been settled.
            assert all((acked_partition, o) in settled for o in range(acked_offset + 1))
    # In the end every record is acked once, each partition in offset order.
    assert sorted(acks.order) == sorted(records)
    for partition in set(partitions):
        offsets = [o for p, o in acks.order if p == partition]
        assert offsets == sorted(offsets)
