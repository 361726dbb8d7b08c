"""Erasure over the dispatcher's admin port (faust web pages), `engineering` only:

    POST /erasures        {"account": "0123456789"} or {"phone": "0803…"}; "dry_run": true
                          shows what would go. 201 done, 202 pending (a Siteti contact is not
                          deleted yet: the retrier retries), 200 for a dry run.
    GET  /erasures/{id}   the erasure log entry (counts and keyed hashes only)

Authorization as every admin page (bridge.access): 401 without a known token, 403 for
another role, 503 when no token is configured. The Siteti deletion is tried once here (no
in-call retries, so the answer is quick); what fails is left to the retrier.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

import asyncpg
import faust
from faust.web import Request, Response, View
from redis.asyncio import Redis

from bridge.access import ENGINEERING, Role, Tokens, refusal
from bridge.config import Settings
from bridge.logs import get_logger

from . import erasure
from .admin import Reply, error_reply, guarded, json_body, parse_entry_id, respond
from .pipeline import Dispatcher

log = get_logger("dispatcher.erasure_api")

DISABLED = "erasure API disabled: set API_TOKENS (or ADMIN_API_TOKENS)"


class ErasureRuntime(Protocol):
    """What the API needs from the process: runtime.Runtime."""

    @property
    def pool(self) -> asyncpg.Pool: ...

    @property
    def redis(self) -> Redis: ...

    @property
    def dispatcher(self) -> Dispatcher: ...


GetRuntime = Callable[[], Awaitable[ErasureRuntime]]


def subject_request(body: Any) -> tuple[erasure.SubjectKind, str, bool]:
    """(kind, value, dry run) from the request body; ValueError saying what is wrong."""
    if not isinstance(body, Mapping):
        raise ValueError('the body must be {"account": "..."} or {"phone": "..."}')
    given = [kind for kind in ("account", "phone") if body.get(kind) is not None]
    if len(given) != 1:
        raise ValueError('give exactly one of "account" and "phone"')
    kind: erasure.SubjectKind = "account" if given[0] == "account" else "phone"
    value = body[kind]
    dry_run = body.get("dry_run", False)
    if not isinstance(value, str) or "\x00" in value or not isinstance(dry_run, bool):
        raise ValueError(f'"{kind}" must be text and "dry_run" true or false')
    return kind, value, dry_run


class ErasureAPI:
    def __init__(self, get_runtime: GetRuntime, settings: Settings) -> None:
        self._get_runtime = get_runtime
        self._settings = settings
        self._tokens = Tokens.from_settings(settings)

    def authorize(self, authorization: str | None) -> tuple[Role | None, Reply | None]:
        """(the caller's role, None) when they may go on; otherwise (None, the answer)."""
        refused = refusal(self._tokens, authorization, ENGINEERING, DISABLED)
        if refused is not None:
            return None, Reply(refused.status, refused.body, refused.headers)
        return self._tokens.role_of(authorization), None

    async def create(self, body: Any, role: Role) -> Reply:
        try:
            kind, value, dry_run = subject_request(body)
        except ValueError as exc:
            return error_reply(400, str(exc))
        runtime = await self._get_runtime()
        ctx = erasure.Context.from_settings(self._settings, runtime.pool, runtime.redis)
        try:
            subject = erasure.subject_of(kind, value, ctx.keys, ctx.region)
        except erasure.SubjectError as exc:
            return error_reply(400, str(exc))
        dispatcher = runtime.dispatcher
        result = await erasure.erase(
            ctx,
            dispatcher.siteti,
            subject,
            requested_by=f"api:{role}",
            dry_run=dry_run,
            policy=replace(dispatcher.policy, max_retries=0),
        )
        status = {"dry_run": 200, "done": 201}.get(result.status, 202)
        return Reply(status, result.as_json())

    async def get(self, raw_id: str) -> Reply:
        erasure_id = parse_entry_id(raw_id)
        if erasure_id is None:
            return error_reply(404, "no such erasure")
        entry = await erasure.get((await self._get_runtime()).pool, erasure_id)
        return Reply(200, entry) if entry else error_reply(404, "no such erasure", id=erasure_id)


def register_erasures(app: faust.App, get_runtime: GetRuntime, settings: Settings) -> ErasureAPI:
    """Add the /erasures pages to the faust app's web server (call at import time)."""
    api = ErasureAPI(get_runtime, settings)

    @app.page("/erasures", name="erasures")
    class Erasures(View):
        async def post(self, request: Request) -> Response:
            role, denied = api.authorize(request.headers.get("Authorization"))
            if denied or role is None:
                return respond(self, denied or error_reply(401, "missing bearer token"))
            body, bad = await json_body(request)
            return respond(self, bad or await guarded(api.create(body, role)))

    @app.page(r"/erasures/{erasure_id:\d+}", name="erasure")
    class Erasure(View):
        async def get(self, request: Request, erasure_id: str) -> Response:
            _, denied = api.authorize(request.headers.get("Authorization"))
            return respond(self, denied or await guarded(api.get(erasure_id)))

    return api
