"""Schemathesis against the dispatcher's admin port, from the OpenAPI document it serves at
`GET /dlq/openapi.json`: the real /dlq and /erasures faust pages (test_admin_hostile's
`admin_pages`) over a database of this module's own, real PostgreSQL and Redis.

Every operation of the document is fuzzed, each case with a generated bearer token's role
(none, analyst, support, engineering), so generated paths, queries and bodies reach the
handlers and the database. Checks on every response: never a 5xx, the status, content type
and body the document declares, and every error answer problem details whose `status` is the
HTTP status. Erasures run against the module's database and a temporary file-drop inbox;
Siteti is nowhere (a contact deletion fails fast and is left pending).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bridge.config import Settings
from bridge.db import connect
from dispatcher.admin_openapi import admin_openapi
from tests.integration.test_admin_hostile import (  # noqa: F401 (fixtures)
    admin_pages,
    database_url,
    entry_id,
    pool,
)
from tests.problem_tools import problem_answers

pytestmark = pytest.mark.integration

CASES_PER_OPERATION = 40
TOKENS = {
    "analyst": "fuzz-admin-analyst-token",
    "support": "fuzz-admin-support-token",
    "engineering": "fuzz-admin-engineering-token",
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    problem_answers,
]
RAN: Counter[str] = Counter()
STATUSES: dict[str, Counter[int]] = {}


def _serve(dsn: str, settings: Settings, datadir: Path) -> Iterator[str]:
    """The admin pages on a loop of their own, in a thread: schemathesis calls block."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started: queue.Queue[str | BaseException] = queue.Queue()

    async def main() -> None:
        try:
            pool = await connect(dsn)
            try:
                async with admin_pages(pool, settings, datadir) as client:
                    started.put(str(client.make_url("")).rstrip("/"))
                    await stop.wait()
            finally:
                await pool.close()
        except BaseException as exc:
            started.put(exc)
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    url = started.get(timeout=60)
    if isinstance(url, BaseException):
        raise url
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


@pytest.fixture(scope="module")
def admin_url(
    database_url: str,  # noqa: F811
    entry_id: int,  # noqa: F811 (one entry to find, retry, resolve and close)
    settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[str]:
    configured = settings.model_copy(
        update={
            "api_tokens": [f"{role}:{token}" for role, token in TOKENS.items()],
            "admin_api_tokens": [],
            "filedrop_dir": str(tmp_path_factory.mktemp("inbox")),
        }
    )
    yield from _serve(database_url, configured, tmp_path_factory.mktemp("faust"))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("\nschemathesis cases per operation (admin), by status:")
        for label, count in sorted(RAN.items()):
            statuses = ", ".join(f"{s}: {n}" for s, n in sorted(STATUSES[label].items()))
            reporter.write_line(f"  {label}: {count} cases ({statuses})")


def test_the_document_is_served_without_a_token(admin_url: str) -> None:
    # (schemathesis does not fuzz the operation its document was loaded from: checked here.)
    response = httpx.get(f"{admin_url}/dlq/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == admin_openapi()
    schema: Any = schemathesis.openapi.from_url(f"{admin_url}/dlq/openapi.json")
    labels = {result.ok().label for result in schema.get_all_operations()}
    assert {"GET /dlq", "POST /dlq/{entry_id}/resolve", "POST /erasures"} <= labels


def run(admin_url: str, label: str, case: Any, role: str | None) -> None:
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    if role is not None:
        headers["Authorization"] = f"Bearer {TOKENS[role]}"
    case.headers = headers
    response = case.call(base_url=admin_url, timeout=30)
    case.validate_response(response, checks=CHECKS)
    RAN[label] += 1
    STATUSES.setdefault(label, Counter())[response.status_code] += 1


def fuzz_operation(admin_url: str, operation: Any) -> None:
    @settings(
        max_examples=CASES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), role=st.sampled_from([None, *TOKENS]))
    def fuzz(case: Any, role: str | None) -> None:
        run(admin_url, operation.label, case, role)

    fuzz()


def test_every_admin_operation_survives_fuzzing(admin_url: str) -> None:
    schema: Any = schemathesis.openapi.from_url(f"{admin_url}/dlq/openapi.json")
    for result in schema.get_all_operations():
        operation = result.ok()
        fuzz_operation(admin_url, operation)
        assert RAN[operation.label] >= 1, operation.label
