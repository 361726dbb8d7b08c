"""The hot-path cost of customer data protection, per event, against its baseline.

    .venv/bin/python -m bench.protect [--events 20000]

ingest: an event's (key, value) as published — `sealed_record` (seal the number, keyed hash
of the customer) against the plain `to_json` it replaced. dispatcher: opening the number and
hashing it for the directory look-up, and opening a directory row (number, e-mail, name).
Prints microseconds per event (median of 5 rounds) and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import time
from collections.abc import Callable
from decimal import Decimal

from bridge.events import CanonicalEvent, Customer, EventData, new_event
from bridge.protect import DataKeys, new_key_entry, sealed_record


def per_event_us(work: Callable[[], object], events: int) -> float:
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(events):
            work()
        rounds.append((time.perf_counter() - started) / events * 1e6)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    events = parser.parse_args().events
    keys = DataKeys.parse([new_key_entry("bench")], base64.b64encode(os.urandom(32)).decode())
    event = new_event(
        EventData(
            provider="openmarket",
            transaction_reference="OM-BENCH-1",
            amount=Decimal("5000.00"),
            customer=Customer(phone="+2348031234567", name="Ada Obi", email="ada@example.com"),
        ),
        "payment.successful",
    )
    sealed = CanonicalEvent.from_json(sealed_record(event, keys, "NG")[1])
    phone = sealed.data.customer.phone or ""
    row = {
        "phone": keys.seal("2348031234567", "phone"),
        "email": keys.seal("ada@example.com", "email"),
        "name": keys.seal("Ada Obi", "name"),
    }

    baseline = per_event_us(event.to_json, events)
    ingest = per_event_us(lambda: sealed_record(event, keys, "NG"), events)
    lookup = per_event_us(lambda: keys.phone_index(keys.open(phone, "phone")), events)
    opened = per_event_us(
        lambda: (
            keys.open(row["phone"], "phone"),
            keys.open(row["email"], "email"),
            keys.open(row["name"], "name"),
        ),
        events,
    )
    print(f"{events} events, median of 5 rounds, µs per event")
    print(f"  ingest  to_json (before)              {baseline:8.1f}")
    print(
        f"  ingest  sealed_record (seal + hash)   {ingest:8.1f}   +{ingest - baseline:.1f} µs"
        f" ({ingest / baseline:.1f}x)"
    )
    print(f"  dispatcher open number + keyed hash   {lookup:8.1f}")
    print(f"  dispatcher open a directory row (3)   {opened:8.1f}")


if __name__ == "__main__":
    main()
