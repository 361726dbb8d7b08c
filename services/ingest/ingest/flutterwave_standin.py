"""A stand-in for Flutterwave's confirmation API, for tests and the local stack.

- `GET /v3/transactions/{id}/verify` (verify a charge) and `GET /v3/transfers/{id}` (get a
  transfer) need `Authorization: Bearer <secret key>` (the `FLUTTERWAVE_SECRET_KEY` setting)
  and answer what was registered for `id`, or 404 `{"status": "error", "message": "No
  transaction was found for this id", "data": null}` (transfers: "No transfer was found…").
- `POST /_standin/transactions` and `POST /_standin/transfers` register the JSON the endpoint
  should answer: either a whole answer (`{"status": "success", "data": {"id": …, …}}`) or just
  its `data` object.
- `DELETE /_standin/transactions` and `DELETE /_standin/transfers` forget what was registered.

Run: `python -m ingest.flutterwave_standin` (port `FLUTTERWAVE_STANDIN_PORT`, default 8091).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

#: kind -> (the API path, what is looked up, the message of Flutterwave's fetch answer)
KINDS = {
    "transactions": ("/v3/transactions/{item_id}/verify", "transaction", "Transaction fetched"),
    "transfers": ("/v3/transfers/{item_id}", "transfer", "Transfer fetched"),
}


def create_app(secret_key: str) -> FastAPI:
    app = FastAPI(title="Flutterwave verify stand-in", docs_url=None, redoc_url=None)

    def authorised(request: Request) -> bool:
        given = request.headers.get("authorization", "")
        return bool(secret_key) and hmac.compare_digest(
            given.encode(), f"Bearer {secret_key}".encode()
        )

    for kind, (path, noun, fetched) in KINDS.items():
        _serve(app, kind, path, noun, fetched, authorised)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _serve(
    app: FastAPI,
    kind: str,
    path: str,
    noun: str,
    fetched: str,
    authorised: Callable[[Request], bool],
) -> None:
    """The fetch endpoint of one kind, and the test routes that register and forget."""
    registered: dict[str, dict[str, Any]] = {}

    async def fetch(item_id: str, request: Request) -> JSONResponse:
        if not authorised(request):
            return JSONResponse(
                {"status": "error", "message": "Invalid authorization key", "data": None}, 401
            )
        answer = registered.get(item_id)
        if answer is None:
            return JSONResponse(
                {"status": "error", "message": f"No {noun} was found for this id", "data": None},
                404,
            )
        return JSONResponse(answer)

    async def register(request: Request) -> JSONResponse:
        body = await request.json()
        if not isinstance(body, Mapping):
            return JSONResponse({"error": "send a JSON object"}, 400)
        answer: dict[str, Any] = dict(body)
        if "data" not in answer:
            answer = {"status": "success", "message": f"{fetched} successfully", "data": answer}
        data = answer.get("data")
        if not isinstance(data, Mapping) or data.get("id") in (None, ""):
            return JSONResponse({"error": "the answer needs data.id"}, 400)
        registered[str(data["id"])] = answer
        return JSONResponse({"registered": str(data["id"])}, 201)

    async def reset() -> JSONResponse:
        registered.clear()
        return JSONResponse({"cleared": True})

    app.add_api_route(path, fetch, methods=["GET"])
    app.add_api_route(f"/_standin/{kind}", register, methods=["POST"])
    app.add_api_route(f"/_standin/{kind}", reset, methods=["DELETE"])


def main() -> None:
    from bridge.config import get_settings
    from bridge.edge import serve

    settings = get_settings()
    app = create_app(settings.flutterwave_secret_key)
    serve(app, "127.0.0.1", settings.flutterwave_standin_port, log_level="warning")


if __name__ == "__main__":
    main()
