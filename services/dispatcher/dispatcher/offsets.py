"""Which Kafka offsets may be committed: only those with every earlier offset of their
partition settled. Pure.

The lanes settle events out of order (customers run in parallel), but a committed offset
tells the next owner of the partition "everything before this is done". faust commits the
first run of consecutive *acked* offsets it holds, and it cannot tell a gap at the head of
that run from history: its guard is skipped while the partition's committed offset is None
or 0 (before the instance's first commit on it) and is off by one otherwise. An instance
killed then left later events committed past earlier unsettled ones, and the survivor
started past them (issue 7). So faust never sees an ack out of order: the ledger holds each
partition's records in arrival order and releases their acks only from the head, once
settled. A record's ack is therefore called only after every earlier record of its
partition has been settled and acked, whatever order the lanes finish in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

Ack = Callable[[], object]


@dataclass
class _Pending:
    offset: int
    ack: Ack
    settled: bool = False


@dataclass
class _Partition:
    pending: deque[_Pending] = field(default_factory=deque)
    by_offset: dict[int, _Pending] = field(default_factory=dict)


class OffsetLedger:
    """Per partition, the records received and not yet acked, in arrival order."""

    def __init__(self) -> None:
        self._partitions: dict[Hashable, _Partition] = {}

    def received(self, partition: Hashable, offset: int, ack: Ack) -> None:
        """Record a record as it arrives (partition order is offset order in Kafka).

        An offset at or below one still held means the partition was read again from an
        earlier position (a rebalance gave it back, or a seek): the copies held from before
        are forgotten, so their late settling acks nothing, and the new copies are the
        ones that count.
        """
        state = self._partitions.setdefault(partition, _Partition())
        if state.pending and offset <= state.pending[-1].offset:
            self.forget([partition])
            state = self._partitions.setdefault(partition, _Partition())
        entry = _Pending(offset, ack)
        state.pending.append(entry)
        state.by_offset[offset] = entry

    def settled(self, partition: Hashable, offset: int, ack: Ack | None = None) -> int:
        """Mark a record settled; ack every record now at the head of its partition that
        is settled, in offset order. Returns how many were acked. `ack`, when given, must
        be the one the record was received with: a settle from a copy that was forgotten
        (see `received`) acks nothing."""
        state = self._partitions.get(partition)
        entry = state.by_offset.get(offset) if state else None
        if state is None or entry is None or (ack is not None and entry.ack is not ack):
            return 0
        entry.settled = True
        released = 0
        while state.pending and state.pending[0].settled:
            head = state.pending.popleft()
            del state.by_offset[head.offset]
            head.ack()
            released += 1
        return released

    def forget(self, partitions: Iterable[Hashable]) -> None:
        """Drop what is held for partitions this instance no longer owns (revoked): their
        records will be read again by whoever owns them from the last committed offset."""
        for partition in partitions:
            self._partitions.pop(partition, None)

    def held(self, partition: Hashable) -> list[int]:
        """Offsets received and not yet acked, in order (for tests and diagnostics)."""
        state = self._partitions.get(partition)
        return [entry.offset for entry in state.pending] if state else []
