"""Checking an error answer is problem details (bridge.problems) for its status."""

from __future__ import annotations

from typing import Any

from bridge.problems import DOCS, MEDIA_TYPE, TYPES, ProblemBody

_URIS = {kind.uri for kind in TYPES}


def problem_detail(status: int, content_type: str | None, body: Any) -> str:
    """The `detail` of an error answer, after checking it is `application/problem+json`
    problem details of a documented kind whose `status` is the HTTP status."""
    assert (content_type or "").split(";")[0].strip() == MEDIA_TYPE, (content_type, body)
    ProblemBody.model_validate(body)
    assert body["status"] == status, body
    assert body["type"] in _URIS, f"{body['type']} is not a kind in {DOCS}"
    assert body["detail"], body
    return str(body["detail"])


def problem_answers(ctx: Any, response: Any, case: Any) -> bool | None:
    """A schemathesis check (same signature as its own): every 4xx and 5xx answer is problem
    details whose `status` is the HTTP status."""
    if response.status_code >= 400:
        content_types = {k.lower(): v for k, v in response.headers.items()}.get("content-type")
        problem_detail(response.status_code, (content_types or [""])[0], response.json())
    return None
