"""The producers' partitioner: Kafka's default placement, each key's hash remembered."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from bridge.kafka import KeyPartitioner

partition_counts = st.integers(min_value=1, max_value=64)


@given(keys=st.lists(st.binary(max_size=64), min_size=1, max_size=20), count=partition_counts)
def test_same_partition_as_kafkas_default(keys: list[bytes], count: int) -> None:
    # Other clients (faust, Java) must put a customer's events on the same partition.
    partitioner = KeyPartitioner(remembered=8)
    partitions = list(range(count))
    for key in keys + keys:  # the second pass is answered from memory (or after a clear)
        expected = DefaultPartitioner()(key, partitions, partitions)
        assert partitioner(key, partitions, partitions) == expected


def test_a_remembered_hash_follows_a_new_partition_count() -> None:
    partitioner = KeyPartitioner()
    key = b"4f1c0a9e2b7d"
    for count in (12, 24, 5):
        partitions = list(range(count))
        assert partitioner(key, partitions, partitions) == DefaultPartitioner()(
            key, partitions, partitions
        )


def test_memory_is_bounded() -> None:
    partitioner = KeyPartitioner(remembered=10)
    for n in range(1000):
        partitioner(str(n).encode(), [0, 1, 2], [0, 1, 2])
    assert len(partitioner._hashes) <= 10


def test_no_key_goes_to_an_available_partition() -> None:
    partitioner = KeyPartitioner()
    assert {partitioner(None, [0, 1, 2], [2]) for _ in range(50)} == {2}
