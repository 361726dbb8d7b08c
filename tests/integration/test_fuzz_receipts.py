"""Schemathesis against the receipts app (its OpenAPI schema, served over ASGI with its lifespan,
so real PostgreSQL and Kafka behind it): no input, valid or not, may be answered 5xx.

Half the webhook cases are signed as Siteti signs them, so generated bodies get past the
signature into the parser and the store; the other half keep the generated (hostile)
X-Siteti-Signature header. Likewise half the read cases carry an investigator's bearer token,
so generated references and windows reach the database; the others keep what was generated.
Every response is checked against the OpenAPI document (status, content type, body), and
every error answer must be problem details (application/problem+json) whose `status` is the
HTTP status. The number of cases run per endpoint is printed at the end.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bridge.config import get_settings
from bridge.signing import sign_siteti_webhook
from receipts.app import create_app
from tests.problem_tools import problem_answers

pytestmark = pytest.mark.integration

SECRET = "siteti_fuzz_secret"
TOKEN = "receipts-fuzz-support-token"
EXAMPLES = 300
CASES: Counter[str] = Counter()
STATUSES: dict[str, Counter[int]] = {}
CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    problem_answers,
]


@pytest.fixture(scope="module", autouse=True)
def report_cases(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("schemathesis cases per endpoint:")
        for endpoint, n in sorted(CASES.items()):
            statuses = ", ".join(f"{s}×{c}" for s, c in sorted(STATUSES[endpoint].items()))
            reporter.write_line(f"  {endpoint}: {n} ({statuses})")


# Built from the app's own OpenAPI document without a request: the app's lifespan (its
# database pool) starts with the first case, once the session's database exists.
# (schemathesis.pytest.from_fixture would be the lazy way, but it breaks on pytest 9.)
_APP = create_app(
    get_settings().model_copy(
        update={"siteti_webhook_secrets": [SECRET], "api_tokens": [f"support:{TOKEN}"]}
    )
)
schema = schemathesis.openapi.from_dict(_APP.openapi())
schema.app = _APP


def raw_body(kwargs: dict[str, Any]) -> bytes:
    """The exact bytes the transport would send for this case."""
    if "json" in kwargs:
        return json.dumps(kwargs["json"]).encode()
    data = kwargs.get("data")
    if data is None:
        return b""
    return data.encode() if isinstance(data, str) else bytes(data)


@schema.parametrize()
@schema.given(signed=st.booleans())
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_receipts_never_answer_5xx(case: Any, signed: bool) -> None:
    endpoint = f"{case.method} {case.operation.path}"
    CASES[endpoint] += 1
    extra: dict[str, Any] = {}
    if signed and case.method == "POST":
        body = raw_body(case.as_transport_kwargs())
        signature = sign_siteti_webhook([SECRET], int(time.time()), body)
        extra = {"headers": {"X-Siteti-Signature": signature}, "data": body}
    elif signed:
        extra = {"headers": {"Authorization": f"Bearer {TOKEN}"}}
    response = case.call(**extra)
    STATUSES.setdefault(endpoint, Counter())[response.status_code] += 1
    # /readyz may be 503 while the Kafka producer starts: that is an outage, and the only one.
    allowed = response.status_code < 500 or (
        case.operation.path == "/readyz" and response.status_code == 503
    )
    assert allowed, f"{response.status_code} {response.text[:500]}\n{case.as_curl_command()}"
    case.validate_response(response, checks=CHECKS)
