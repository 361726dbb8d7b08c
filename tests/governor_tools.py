"""Checks shared by the governor's tests and its transport's (GovernedTransport)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def assert_confirmations_go_first(
    call: Callable[[str, str], Awaitable[None]], order: list[str]
) -> None:
    """Five bulk calls, then, a moment later while the schedule is busy, ten confirmations.

    `call(name, priority)` takes a slot and appends `name` to `order` once it has it. Before
    the confirmations came, the schedule was free: bulk took the current slot and the next
    (its one-interval horizon). From then on every confirmation went first.
    """
    bulk = [asyncio.create_task(call(f"bulk-{i}", "bulk")) for i in range(5)]
    await asyncio.sleep(0.01)
    confirmations = [asyncio.create_task(call(f"tx-{i}", "transactional")) for i in range(10)]
    await asyncio.gather(*bulk, *confirmations)
    last_tx = max(order.index(f"tx-{i}") for i in range(10))
    assert sum(1 for name in order[:last_tx] if name.startswith("bulk")) <= 2
    assert all(name.startswith("bulk") for name in order[-3:])
