"""bridge.problems: the one error shape (RFC 9457), its OpenAPI entries, and docs/errors.md
documenting every kind."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st

from bridge import problems
from bridge.access import Refusal, Tokens, refusal
from bridge.config import get_settings
from ingest.app import create_app as ingest_app
from receipts.app import create_app as receipts_app
from tests.integration.test_hostile_ingest import ingest_settings
from tests.problem_tools import problem_detail

ERRORS_DOC = Path(__file__).parents[2] / "docs" / "errors.md"


def test_a_problem_has_the_standard_members_and_its_extensions() -> None:
    body = problems.problem(problems.NOT_FOUND, 404, "no such entry", id=7)
    assert body == {
        "type": "/docs/errors.md#not-found",
        "title": "Not found",
        "status": 404,
        "detail": "no such entry",
        "id": 7,
    }
    assert problems.ProblemBody.model_validate(body).model_extra == {"id": 7}


@pytest.mark.parametrize("name", ["type", "title", "status", "detail", "instance"])
def test_an_extension_may_not_replace_a_standard_member(name: str) -> None:
    with pytest.raises(ValueError, match="clash"):
        problems.problem(problems.CONFLICT, 409, "busy", **{name: "x"})


@pytest.mark.parametrize("status", [200, 302, 399, 600])
def test_only_error_statuses_are_problems(status: int) -> None:
    with pytest.raises(ValueError, match="4xx or 5xx"):
        problems.problem(problems.INVALID_REQUEST, status, "x")


@given(st.integers(400, 599))
def test_every_error_status_has_a_kind(status: int) -> None:
    kind = problems.for_status(status)
    assert kind in problems.TYPES
    assert (kind is problems.INTERNAL_ERROR) == (status >= 500 and status != 503)


def test_every_kind_is_documented_in_order_and_nothing_else() -> None:
    sections = re.findall(r"^## (.+)$", ERRORS_DOC.read_text(), re.MULTILINE)
    assert sections == [kind.slug for kind in problems.TYPES]
    assert len({kind.title for kind in problems.TYPES}) == len(problems.TYPES)
    assert all(kind.uri == f"/docs/errors.md#{kind.slug}" for kind in problems.TYPES)


def test_openapi_responses_are_problem_json_with_the_model_schema() -> None:
    responses = problems.openapi_responses({404: "gone", 503: "down"})
    assert set(responses) == {"404", "503"}
    content = responses["404"]["content"]
    assert list(content) == ["application/problem+json"]
    schema = content["application/problem+json"]["schema"]
    assert schema["required"] == ["type", "title", "status", "detail"]
    assert "$ref" not in str(schema)  # self-contained: it is inlined into other documents


@pytest.mark.parametrize(
    ("authorization", "configured", "status", "slug"),
    [
        (None, True, 401, "unauthenticated"),
        ("Bearer nope-nope-nope-nope", True, 401, "unauthenticated"),
        ("Bearer analyst-token-0123456789", True, 403, "forbidden"),
        (None, False, 503, "api-disabled"),
    ],
)
def test_a_refusal_is_a_problem(
    authorization: str | None, configured: bool, status: int, slug: str
) -> None:
    tokens = Tokens.parse(["analyst:analyst-token-0123456789"] if configured else [])
    refused = refusal(tokens, authorization, frozenset({"support"}), "off: set API_TOKENS")
    assert isinstance(refused, Refusal)
    assert refused.body["status"] == refused.status == status
    assert refused.body["type"].endswith(f"#{slug}")
    assert refused.body["detail"] == refused.message


# --- FastAPI's own answers, as the services give them -------------------------------------

SUPPORT_TOKEN = "support-token-0123456789"


def _apps() -> dict[str, FastAPI]:
    settings = get_settings().model_copy(update={"api_tokens": [f"support:{SUPPORT_TOKEN}"]})
    return {"ingest": ingest_app(ingest_settings(settings)), "receipts": receipts_app(settings)}


@pytest.mark.parametrize(
    ("service", "method", "path", "status"),
    [
        ("ingest", "GET", "/no/such/path", 404),
        ("ingest", "GET", "/webhooks/moniepoint", 405),
        ("receipts", "GET", "/no/such/path", 404),
        ("receipts", "PUT", "/siteti/webhooks", 405),
        ("receipts", "GET", "/audit/stats?hours=0", 422),
        ("receipts", "GET", "/audit/stats?hours=secret-looking-value", 422),
    ],
)
async def test_the_frameworks_own_answers_are_problems(
    service: str, method: str, path: str, status: int
) -> None:
    # No lifespan: these answers come before anything the lifespan starts would be used.
    transport = httpx.ASGITransport(app=_apps()[service])
    headers = {"Authorization": f"Bearer {SUPPORT_TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.request(method, path, headers=headers)
    body = response.json()
    detail = problem_detail(status, response.headers["content-type"], body)
    if status == 422:
        assert body["errors"] and "hours" in detail
        assert "secret-looking-value" not in response.text  # the input is never echoed
    if status == 405:
        assert response.headers["allow"]
