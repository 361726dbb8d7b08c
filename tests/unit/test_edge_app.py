"""EdgeApp's direct route: answered ahead of FastAPI's stack, so it answers what FastAPI's
error layer would have (a 500 problem, nothing of the exception in it), and whatever is not
its `POST` goes on to the router as before."""

from __future__ import annotations

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bridge.edge import EdgeApp, add_problem_handlers


def app() -> EdgeApp:
    edge = EdgeApp()
    add_problem_handlers(edge)

    async def endpoint(name: str, request: Request) -> Response:
        if name == "boom":
            raise RuntimeError("secret detail 08031234567")
        return JSONResponse({"name": name, "body": (await request.body()).decode()})

    @edge.get("/webhooks/{name}")
    async def listed(name: str) -> dict[str, str]:
        return {"routed": name}

    edge.direct("/webhooks/", endpoint)
    return edge


async def test_the_direct_route_answers_an_unhandled_exception_as_fastapi_would() -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app(), raise_app_exceptions=False), base_url="http://t"
    ) as client:
        ok = await client.post("/webhooks/moniepoint", content=b"hello")
        crashed = await client.post("/webhooks/boom", content=b"x")
        routed = await client.get("/webhooks/moniepoint")
        nested = await client.post("/webhooks/a/b", content=b"x")
    assert ok.json() == {"name": "moniepoint", "body": "hello"}
    assert crashed.status_code == 500
    assert crashed.headers["content-type"] == "application/problem+json"
    assert crashed.json()["detail"] == "internal error"
    assert "secret" not in crashed.text
    assert routed.json() == {"routed": "moniepoint"}  # another method: the router's
    assert nested.status_code == 404  # two segments: not the direct route's
