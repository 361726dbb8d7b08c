"""Schema-driven fuzzing of the running ingest app (schemathesis, from its own OpenAPI).

The app is the real one (`ingest.app.create_app`), reached over ASGI with its lifespan
running, so accepted events go to the real local Kafka (the session's topic). Every
operation of the OpenAPI document is fuzzed; `POST /webhooks/{provider_name}` once per
provider (the path parameter is fixed, the body and the signature headers are generated),
and half of those cases are signed with the provider's configured secret, so the fuzzed
bodies also reach `parse` and the canonical model rather than stopping at the signature.

Checks on every response: never a 5xx (Kafka is up, so 503 would be a bug too), the status,
content type and body documented in the OpenAPI document, and every error answer problem
details (application/problem+json) whose `status` is the HTTP status. The number of cases run per
endpoint is printed at the end of the module (and asserted to be what was asked).
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bridge.config import Settings
from bridge.signing import js_stringify, sign, standard_webhooks_key
from ingest.app import create_app
from ingest.providers import PROVIDERS
from tests.integration.test_hostile_ingest import SECRETS, ingest_settings, now_iso
from tests.problem_tools import problem_answers

pytestmark = pytest.mark.integration

#: cases per endpoint: a few hundred requests in all, seconds on two cores
CASES_PER_PROVIDER = 150
CASES_PER_OTHER_ENDPOINT = 20
WEBHOOK = "POST /webhooks/{provider_name}"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    problem_answers,
]
RAN: Counter[str] = Counter()
STATUSES: dict[str, Counter[int]] = {}


@pytest.fixture(scope="module")
def schema(settings: Settings, events_topic: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    loaded = schemathesis.openapi.from_asgi("/openapi.json", create_app(ingest_settings(settings)))
    yield loaded
    asgi.shutdown_lifespans()  # stops the app's Kafka producer
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("\nschemathesis cases per endpoint (ingest), by status:")
        for endpoint, count in sorted(RAN.items()):
            statuses = ", ".join(f"{s}: {n}" for s, n in sorted(STATUSES[endpoint].items()))
            reporter.write_line(f"  {endpoint}: {count} cases ({statuses})")


def _secret(provider: str) -> str:
    return next(v[0] for k, v in SECRETS.items() if k.startswith(provider))


def signed(provider: str, raw: bytes, payload: Any) -> tuple[bytes, dict[str, str]]:
    """`raw` (or, for WasaaPay, `payload` with its signature field) signed like the provider."""
    secret = _secret(provider)
    if provider == "wasaapay":
        if not isinstance(payload, dict):
            return raw, {}
        unsigned = {k: v for k, v in payload.items() if k != "signature"}
        unsigned["timestamp"] = now_iso()  # signed and fresh, so parse is reached
        unsigned["signature"] = "sha256=" + sign(secret, js_stringify(unsigned).encode())
        return json.dumps(unsigned).encode(), {}
    if provider == "generic":
        now = str(int(time.time()))
        message = f"msg_fuzz.{now}.".encode() + raw
        signature = sign(standard_webhooks_key(secret), message, "sha256", "base64")
        return raw, {
            "webhook-id": "msg_fuzz",
            "webhook-timestamp": now,
            "webhook-signature": f"v1,{signature}",
        }
    header, algorithm = {
        "moniepoint": ("x-moniepoint-signature", "sha256"),
        "monnify": ("monnify-signature", "sha512"),
        "paystack": ("x-paystack-signature", "sha512"),
        "openmarket": ("opm-signature", "sha256"),
        "flutterwave": ("flutterwave-signature", "sha256"),
    }[provider]
    if provider == "flutterwave":
        return raw, {header: base64.b64encode(bytes.fromhex(sign(secret, raw))).decode()}
    return raw, {header: sign(secret, raw, algorithm)}


def raw_body(case: Any) -> tuple[bytes, Any]:
    """The generated body as the bytes to send, and the JSON value it is (None for bytes)."""
    if isinstance(case.body, bytes):
        return case.body, None
    return json.dumps(case.body).encode(), case.body


def run(case: Any) -> None:
    response = case.call()
    label = case.operation.label
    case.validate_response(response, checks=CHECKS)
    endpoint = label if label != WEBHOOK else case.formatted_path
    RAN[endpoint] += 1
    STATUSES.setdefault(endpoint, Counter())[response.status_code] += 1


FUZZ = settings(
    max_examples=CASES_PER_PROVIDER,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_every_provider_endpoint_survives_fuzzing(schema: Any, provider: str) -> None:
    operation = schema[WEBHOOK.split()[1]]["POST"]
    strategy = operation.as_strategy(path_parameters={"provider_name": provider})

    @FUZZ
    @given(case=strategy, sign_it=st.booleans())
    def fuzz(case: Any, sign_it: bool) -> None:
        if sign_it:
            raw, payload = raw_body(case)
            body, headers = signed(provider, raw, payload)
            case.body = body
            case.media_type = "application/octet-stream"
            case.headers = {**(case.headers or {}), **headers}
        run(case)

    fuzz()
    assert RAN[f"/webhooks/{provider}"] == CASES_PER_PROVIDER


def test_every_other_endpoint_survives_fuzzing(schema: Any) -> None:
    others = [result.ok() for result in schema.get_all_operations() if result.ok().label != WEBHOOK]
    assert {o.label for o in others} >= {"GET /healthz", "GET /readyz", "GET /metrics"}
    for operation in others:

        @settings(FUZZ, max_examples=CASES_PER_OTHER_ENDPOINT)
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            run(case)

        fuzz()
        assert RAN[operation.label] >= 1
