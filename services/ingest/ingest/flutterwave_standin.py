"""A stand-in for Flutterwave's `GET /v3/transactions/{id}/verify`, for tests and the local stack.

- `GET /v3/transactions/{id}/verify` needs `Authorization: Bearer <secret key>` (the
  `FLUTTERWAVE_SECRET_KEY` setting) and answers what was registered for `id`, or 404
  `{"status": "error", "message": "No transaction was found for this id", "data": null}`.
- `POST /_standin/transactions` registers the JSON the verify endpoint should answer: either
  a whole answer (`{"status": "success", "data": {"id": …, …}}`) or just its `data` object.
- `DELETE /_standin/transactions` forgets every registered transaction.

Run: `python -m ingest.flutterwave_standin` (port `FLUTTERWAVE_STANDIN_PORT`, default 8091).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

DEFAULT_PORT = 8091


def create_app(secret_key: str) -> FastAPI:
    app = FastAPI(title="Flutterwave verify stand-in", docs_url=None, redoc_url=None)
    transactions: dict[str, dict[str, Any]] = {}

    def authorised(request: Request) -> bool:
        given = request.headers.get("authorization", "")
        return bool(secret_key) and hmac.compare_digest(
            given.encode(), f"Bearer {secret_key}".encode()
        )

    @app.get("/v3/transactions/{transaction_id}/verify")
    async def verify(transaction_id: str, request: Request) -> JSONResponse:
        if not authorised(request):
            return JSONResponse(
                {"status": "error", "message": "Invalid authorization key", "data": None}, 401
            )
        answer = transactions.get(transaction_id)
        if answer is None:
            return JSONResponse(
                {
                    "status": "error",
                    "message": "No transaction was found for this id",
                    "data": None,
                },
                404,
            )
        return JSONResponse(answer)

    @app.post("/_standin/transactions")
    async def register(request: Request) -> JSONResponse:
        body = await request.json()
        if not isinstance(body, Mapping):
            return JSONResponse({"error": "send a JSON object"}, 400)
        answer: dict[str, Any] = dict(body)
        if "data" not in answer:
            answer = {
                "status": "success",
                "message": "Transaction fetched successfully",
                "data": answer,
            }
        data = answer.get("data")
        if not isinstance(data, Mapping) or data.get("id") in (None, ""):
            return JSONResponse({"error": "the answer needs data.id"}, 400)
        transactions[str(data["id"])] = answer
        return JSONResponse({"registered": str(data["id"])}, 201)

    @app.delete("/_standin/transactions")
    async def reset() -> JSONResponse:
        transactions.clear()
        return JSONResponse({"cleared": True})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    import uvicorn

    from bridge.config import get_settings

    port = int(os.environ.get("FLUTTERWAVE_STANDIN_PORT", DEFAULT_PORT))
    app = create_app(get_settings().flutterwave_secret_key)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
