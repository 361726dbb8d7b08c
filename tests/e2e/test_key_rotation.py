"""Issue 9, item 7: the Siteti API key rotates without downtime, under a steady stream of
webhooks through two dispatchers.

- The runbook (docs/operations.md): the new key created at Siteti, a rolling restart with
  SITETI_API_KEYS=new,old, the old key revoked. Nothing fails, nothing is refused, the
  switch counter stays at 0.
- The reverse: dispatchers still on the old key (SITETI_API_KEYS=old,new) when it is
  revoked. Each moves to the second key once, on its first `invalid_api_key`, and sends
  the refused call again at once: nothing is dead-lettered either.

Both: every payment's message sent exactly once, the dead-letter table empty, and no key in
any dispatcher's log.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from .harness import LOGS, Pipeline, make_pipeline, new_account, post_payment, running, stack_env
from .harness import wait_for as wait_until

pytestmark = pytest.mark.e2e

DISPATCHERS = ("dispatcher-1", "dispatcher-2")
CUSTOMERS = 12
POST_INTERVAL_SECONDS = 0.1
_SWITCHES = re.compile(r"^bridge_siteti_api_key_switches_total (\S+)$", re.MULTILINE)


class Stream:
    """Payments posted at a steady pace from a thread, round the customers, until stopped."""

    def __init__(self, pipeline: Pipeline, accounts: list[str]) -> None:
        self.references: list[str] = []
        self.errors: list[str] = []
        self._pipeline, self._accounts = pipeline, accounts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            try:
                account = self._accounts[n % len(self._accounts)]
                self.references.append(post_payment(self._pipeline, account))
            except (AssertionError, httpx.HTTPError) as exc:
                self.errors.append(repr(exc))
            n += 1
            self._stop.wait(POST_INTERVAL_SECONDS)

    @contextmanager
    def flowing(self) -> Iterator[Stream]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(30)


def customers(pipeline: Pipeline, tmp_path: Path) -> list[str]:
    accounts = [new_account() for _ in range(CUSTOMERS)]
    base = int(time.time() * 1000) % 10_000_000
    rows = [
        (a, f"0803{(base + i) % 10_000_000:07d}", "returning", 0) for i, a in enumerate(accounts)
    ]
    pipeline.import_customers(tmp_path, rows)
    return accounts


def restart_with(pipeline: Pipeline, name: str, **env: str) -> None:
    """One step of a rolling restart: stop `name`, start it again with `env` changed."""
    pipeline.stop(name)
    pipeline.processes[name].env.update(env)
    pipeline.start(name)


def switches(pipeline: Pipeline, name: str) -> float:
    """The dispatcher's `bridge_siteti_api_key_switches_total`, from its /metrics."""
    text = httpx.get(f"http://127.0.0.1:{pipeline.ports[name]}/metrics", timeout=10).text
    found = _SWITCHES.search(text)
    assert found, "the switch counter is not exported"
    return float(found.group(1))


def sent_once(pipeline: Pipeline, stream: Stream) -> None:
    """Every streamed payment's message sent by Siteti exactly once; no dead letter."""
    expected = set(stream.references)

    def sent() -> Counter[str]:
        messages = pipeline.sandbox_get("messages")
        return Counter(m["reference"] for m in messages if m["reference"] in expected)

    wait_until(lambda: set(sent()) == expected, timeout=90, interval=0.5)
    time.sleep(1.0)  # a late duplicate would land now
    doubled = {ref: n for ref, n in sent().items() if n > 1}
    assert not doubled, f"sent more than once: {doubled}"


def no_dead_letters(pipeline: Pipeline) -> None:
    row = asyncio.run(pipeline.fetchrow("SELECT count(*) AS n FROM dead_letters"))
    assert row["n"] == 0


def log_offsets() -> dict[str, int]:
    return {name: _log(name).stat().st_size if _log(name).exists() else 0 for name in DISPATCHERS}


def _log(name: str) -> Path:
    return LOGS / f"{name}.log"


def logs_since(offsets: dict[str, int]) -> dict[str, str]:
    out = {}
    for name, offset in offsets.items():
        with _log(name).open("rb") as file:
            file.seek(offset)
            out[name] = file.read().decode(errors="replace")
    return out


def refused_calls(pipeline: Pipeline) -> int:
    return sum(1 for call in pipeline.sandbox_get("calls") if call["status"] == 401)


def test_rolling_rotation_under_a_steady_stream(kafka_bootstrap: str, tmp_path: Path) -> None:
    pipeline = make_pipeline(stack_env(), dispatchers=2)
    old, new = pipeline.env["SITETI_API_KEY"], secrets.token_hex(16)
    offsets = log_offsets()
    with running(pipeline):
        stream = Stream(pipeline, customers(pipeline, tmp_path))
        with stream.flowing():
            time.sleep(2)
            # 1. The new key created at Siteti: both active.
            pipeline.sandbox_control("POST", "api-keys", {"key": new})
            # 2. The new key first, the old one kept, each dispatcher restarted in turn.
            for name in DISPATCHERS:
                restart_with(pipeline, name, SITETI_API_KEYS=f"{new},{old}")
                time.sleep(2)
            # 3. The old key revoked at Siteti.
            pipeline.sandbox_control("DELETE", "api-keys", {"key": old})
            # 4. The stream goes on.
            time.sleep(5)
        assert not stream.errors, stream.errors[:3]
        assert len(stream.references) > 50  # the stream flowed throughout

        sent_once(pipeline, stream)
        no_dead_letters(pipeline)
        # The runbook's check: nothing refused, the counter flat on every dispatcher.
        assert refused_calls(pipeline) == 0
        assert [switches(pipeline, name) for name in DISPATCHERS] == [0.0, 0.0]
    for text in logs_since(offsets).values():
        assert old not in text and new not in text


def test_dispatchers_on_the_old_key_move_to_the_second_when_it_is_revoked(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    old, new = secrets.token_hex(16), secrets.token_hex(16)
    pipeline = make_pipeline(
        stack_env(),
        dispatchers=2,
        SITETI_API_KEY="",
        SITETI_API_KEYS=f"{old},{new}",
        SANDBOX_API_KEYS=f"{old},{new}",
    )
    offsets = log_offsets()
    with running(pipeline):
        stream = Stream(pipeline, customers(pipeline, tmp_path))
        with stream.flowing():
            time.sleep(3)
            pipeline.sandbox_control("DELETE", "api-keys", {"key": old})
            time.sleep(5)
        assert not stream.errors, stream.errors[:3]

        sent_once(pipeline, stream)
        no_dead_letters(pipeline)
        # Each dispatcher moved once at most, however many of its calls were in flight; the
        # refused calls were sent again under the second key.
        counts = {name: switches(pipeline, name) for name in DISPATCHERS}
        assert set(counts.values()) <= {0.0, 1.0} and sum(counts.values()) >= 1, counts
        assert refused_calls(pipeline) >= 1
    # Read once the processes have stopped: their buffered output is in the files then.
    for name, text in logs_since(offsets).items():
        assert old not in text and new not in text
        moved = [
            json.loads(line) for line in text.splitlines() if "siteti_api_key_switched" in line
        ]
        assert len(moved) == counts[name], (name, moved)
        assert all((m["from_position"], m["to_position"]) == (1, 2) for m in moved)
