"""The Siteti client on httpx.MockTransport: signing (SitetiAuth), requests, answers, error
mapping and metrics. No server, no port."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY

from bridge.signing import verify_siteti_request
from dispatcher.siteti import (
    OPERATION,
    PRIORITY,
    Answer,
    MeteredTransport,
    RateLimit,
    SitetiAuth,
    SitetiClient,
    SitetiError,
    answer_of,
    rate_limit_of,
    retry_after_of,
    siteti_error,
    transport_failure,
)

VECTORS_FILE = Path(__file__).parents[1] / "fixtures/contracts/signature-vectors.json"
VECTOR: dict[str, Any] = next(
    v for v in json.loads(VECTORS_FILE.read_text())["vectors"] if v["provider"] == "siteti-request"
)
BASE = "https://api.siteti.test/v2.6"
KEY, SECRET = "key_1", "secret_1"
Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, seen: list[httpx.Request] | None = None) -> SitetiClient:
    def record(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return handler(request)

    return SitetiClient(httpx.AsyncClient(transport=httpx.MockTransport(record)), BASE, KEY, SECRET)


def verify(request: httpx.Request) -> None:
    """What Siteti (and the sandbox) check: the signature over the target as sent."""
    assert request.headers["authorization"] == f"Bearer {KEY}"
    verify_siteti_request(
        [SECRET],
        timestamp=request.headers.get("x-siteti-timestamp"),
        signature=request.headers.get("x-siteti-signature"),
        method=request.method,
        path_with_query=request.url.raw_path.decode(),
        body=request.content,
    )


# --- SitetiAuth --------------------------------------------------------------------------------


async def test_auth_signs_the_contract_vector_byte_for_byte() -> None:
    seen: list[httpx.Request] = []
    timestamp = int(VECTOR["headers"]["X-Siteti-Timestamp"])
    auth = SitetiAuth("k", VECTOR["secret"], clock=lambda: timestamp + 0.9)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    transport = httpx.MockTransport(handler)
    async with httpx.AsyncClient(transport=transport, auth=auth) as http:
        await http.request(
            VECTOR["method"],
            "https://api.siteti.test" + VECTOR["path"],
            content=VECTOR["body"].encode(),
        )
    (request,) = seen
    assert request.headers["X-Siteti-Timestamp"] == VECTOR["headers"]["X-Siteti-Timestamp"]
    assert request.headers["X-Siteti-Signature"] == VECTOR["headers"]["X-Siteti-Signature"]
    assert request.headers["Authorization"] == "Bearer k"


def test_sign_again_restamps_with_the_clock_of_the_send() -> None:
    times = iter([1_000, 1_600])
    auth = SitetiAuth(KEY, SECRET, clock=lambda: next(times))
    request = httpx.Request("POST", f"{BASE}/contacts", content=b'{"a":1}')
    auth.sign(request)
    first = request.headers["X-Siteti-Signature"]
    auth.sign(request)  # what the governor does once the slot comes
    assert request.headers["X-Siteti-Timestamp"] == "1600"
    assert request.headers["X-Siteti-Signature"] != first
    verify_siteti_request(
        [SECRET],
        timestamp="1600",
        signature=request.headers["X-Siteti-Signature"],
        method="POST",
        path_with_query="/v2.6/contacts",
        body=b'{"a":1}',
        now=1600,
    )


def test_auth_signs_the_query_as_sent() -> None:
    auth = SitetiAuth(KEY, SECRET)
    request = httpx.Request("GET", f"{BASE}/templates/tpl 1?x=a b")
    auth.sign(request)
    verify(request)
    assert request.url.raw_path == b"/v2.6/templates/tpl%201?x=a%20b"


# --- The client ------------------------------------------------------------------------------


async def test_trigger_template_sends_a_signed_idempotent_request() -> None:
    seen: list[httpx.Request] = []
    headers = {
        "Idempotent-Replayed": "true",
        "X-RateLimit-Limit": "3000",
        "X-RateLimit-Remaining": "2999",
        "X-RateLimit-Reset": "1763805660",
    }
    siteti = client(lambda r: httpx.Response(202, json={"message_id": "m1"}, headers=headers), seen)
    answer = await siteti.trigger_template(
        "tpl_first_time",
        to="2348031234567",
        contact_id="ct_1",
        variables={"amount": "₦5,000.00"},
        reference="moniepoint:MNP-1",
        idempotency_key="idem-1",
        priority="bulk",
    )
    assert answer == Answer(202, {"message_id": "m1"}, True, RateLimit(3000, 2999, 1763805660))
    (request,) = seen
    assert request.method == "POST"
    assert request.url == f"{BASE}/templates/tpl_first_time/trigger"
    assert request.headers["Idempotency-Key"] == "idem-1"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.content == orjson.dumps(
        {
            "to": "2348031234567",
            "variables": {"amount": "₦5,000.00"},
            "reference": "moniepoint:MNP-1",
            "contact_id": "ct_1",
        }
    )
    assert request.extensions[OPERATION] == "trigger_template"
    assert request.extensions[PRIORITY] == "bulk"
    verify(request)


async def test_upsert_contact_and_template_status() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            return httpx.Response(200, json={"contact_id": "ct_9"})
        return httpx.Response(200, json={"status": "APPROVED"})

    siteti = client(handler, seen)
    assert await siteti.upsert_contact("234803", None, {"tier": "gold"}, "idem-2") == "ct_9"
    assert await siteti.template_status("tpl_x") == "APPROVED"
    put, get = seen
    assert orjson.loads(put.content) == {"phone": "234803", "attributes": {"tier": "gold"}}
    assert put.extensions[PRIORITY] == "transactional"
    assert get.content == b"" and "idempotency-key" not in get.headers
    assert get.url.path == "/v2.6/templates/tpl_x"
    for request in seen:
        verify(request)


async def test_error_answers_raise_siteti_errors() -> None:
    body = {"error": {"code": "rate_limited", "message": "slow down", "limit": 3}}
    siteti = client(lambda r: httpx.Response(429, json=body, headers={"Retry-After": "7"}))
    with pytest.raises(SitetiError) as caught:
        await siteti.template_status("tpl")
    error = caught.value
    assert (error.status, error.code, error.message) == (429, "rate_limited", "slow down")
    assert error.retry_after == 7.0 and error.transient
    assert error.detail == body["error"]

    siteti = client(lambda r: httpx.Response(404, json={"error": {"code": "template_not_found"}}))
    with pytest.raises(SitetiError) as caught:
        await siteti.template_status("tpl")
    assert caught.value.code == "template_not_found" and not caught.value.transient


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (httpx.ReadTimeout("slow"), "timeout"),
        (httpx.ConnectTimeout("slow"), "timeout"),
        (httpx.ConnectError("refused"), "unreachable"),
        (httpx.RemoteProtocolError("eof"), "unreachable"),
    ],
)
async def test_no_answer_is_a_transient_error(exc: httpx.TransportError, code: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(SitetiError) as caught:
        await client(handler).upsert_contact("234", "Ada", {}, "idem")
    assert (caught.value.status, caught.value.code, caught.value.transient) == (None, code, True)
    assert caught.value.__cause__ is exc
    assert caught.value.message.startswith("upsert_contact")


# --- Error mapping (pure) --------------------------------------------------------------------


def response(status: int, content: bytes = b"", **headers: str) -> httpx.Response:
    return httpx.Response(status, content=content, headers=headers)


def test_answer_of_a_success() -> None:
    answer = answer_of(response(200, b'{"contact_id": "c"}', **{"Idempotent-Replayed": "TRUE"}))
    assert answer == Answer(200, {"contact_id": "c"}, True, RateLimit(None, None, None))
    assert answer_of(response(204)) == Answer(204, {}, False, RateLimit(None, None, None))


VALIDATION = b'{"error": {"code": "validation_error", "message": "to"}}'
HTTP_DATE = "Wed, 21 Oct 2026 07:28:00 GMT"
BAD_SIGNATURE = b'{"error": {"code": "invalid_signature"}}'


@pytest.mark.parametrize(
    ("status", "content", "headers", "expected"),
    [
        (500, b"", {}, (500, "http_500", "", None, True)),
        (503, b"<p>x</p>", {"Retry-After": "30"}, (503, "bad_response", "<p>x</p>", 30.0, True)),
        (400, VALIDATION, {}, (400, "validation_error", "to", None, False)),
        (401, BAD_SIGNATURE, {}, (401, "invalid_signature", "", None, False)),
        (429, b"{}", {"Retry-After": HTTP_DATE}, (429, "http_429", "", None, True)),
        (429, b"[1, 2]", {"Retry-After": "2"}, (429, "http_429", "", 2.0, True)),
        (422, b'{"error": "flat"}', {}, (422, "http_422", "", None, False)),
    ],
)  # fmt: skip
def test_answer_of_an_error(
    status: int, content: bytes, headers: dict[str, str], expected: tuple[Any, ...]
) -> None:
    with pytest.raises(SitetiError) as caught:
        answer_of(response(status, content, **headers))
    e = caught.value
    assert (e.status, e.code, e.message, e.retry_after, e.transient) == expected


def test_siteti_error_keeps_the_detail() -> None:
    error = siteti_error(409, {"error": {"code": "idempotency_key_reused", "x": 1}}, None)
    assert error.detail == {"code": "idempotency_key_reused", "x": 1}
    assert str(error) == "409 idempotency_key_reused: "


def test_headers() -> None:
    assert retry_after_of(httpx.Headers({"retry-after": "12"})) == 12.0
    for value in (b"", b"1.5", b"-1", "²".encode("latin-1"), b"soon"):
        assert retry_after_of(httpx.Headers({b"retry-after": value})) is None
    headers = httpx.Headers(
        {"x-ratelimit-limit": "60", "x-ratelimit-remaining": "0.0", "x-ratelimit-reset": "x"}
    )
    assert rate_limit_of(headers) == RateLimit(60, 0, None)


def test_transport_failure() -> None:
    assert transport_failure("op", httpx.PoolTimeout("t")).code == "timeout"
    error = transport_failure("op", httpx.ConnectError("refused"))
    assert (error.status, error.code, error.message) == (
        None,
        "unreachable",
        "op: ConnectError('refused')",
    )


# --- Metrics ---------------------------------------------------------------------------------


def calls(operation: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "bridge_siteti_calls_total", {"operation": operation, "status": status}
    )
    return value or 0.0


def latencies(operation: str) -> float:
    return REGISTRY.get_sample_value("bridge_siteti_seconds_count", {"operation": operation}) or 0.0


async def test_metered_transport_counts_every_call() -> None:
    answers: Iterator[httpx.Response | Exception] = iter(
        [httpx.Response(200, json={}), httpx.Response(500), httpx.ReadTimeout("t")]
    )
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    before = {s: calls("metered_test", s) for s in ("200", "500", "timeout")}
    latency_before = latencies("metered_test")
    transport = MeteredTransport(httpx.MockTransport(handler))
    async with httpx.AsyncClient(transport=transport) as http:
        for _ in range(2):
            await http.get("http://siteti.test/", extensions={OPERATION: "metered_test"})
        with pytest.raises(httpx.ReadTimeout):
            await http.get("http://siteti.test/", extensions={OPERATION: "metered_test"})
    assert {s: calls("metered_test", s) - before[s] for s in before} == {
        "200": 1,
        "500": 1,
        "timeout": 1,
    }
    assert latencies("metered_test") - latency_before == 3
    assert all(OPERATION not in request.extensions for request in seen)  # stripped
