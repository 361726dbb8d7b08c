"""The dead-letter store's admin HTTP API, on the dispatcher's web port (faust web pages).

    GET  /dlq/stats             counts by status and reason (no references); query:
                                newer_than (entries created in that window)
    GET  /dlq                   entries; query: status (comma list), reason, provider,
                                reference, older_than, newer_than (90s, 30m, 2h, 1d), limit
    GET  /dlq/{id}              one entry, its payload and the reference's audit history
    POST /dlq/{id}/retry        retry now (the same path as a fresh event; never sends twice)
    POST /dlq/{id}/resolve      {"note": "..."} → completed (an operator handled it)
    POST /dlq/{id}/close        {"note": "..."} → failed (given up)
    POST /dlq/retry             bulk retry by filter (JSON body or query; same names as
                                GET /dlq, at least one besides limit)

Every call needs `Authorization: Bearer <token>` with a role (bridge.access: API_TOKENS, and
ADMIN_API_TOKENS acting as `engineering`): `support` and `engineering` may use every page,
`analyst` only /dlq/stats. 401 without a known token, 403 for a role not allowed, 503 when no
token is configured at all. A payload is shown with the customer's number masked (•••4567).

Any bad input (path, query, header, body) is a 4xx saying what is wrong, never a 5xx: ids are
ASCII digits within PostgreSQL's bigint, texts hold no NUL, numbers and ages are bounded.
503 means the database is unavailable. Every error is problem details (bridge.problems,
`application/problem+json`), its `detail` the message; docs/admin-api.md documents it all,
and `GET /dlq/openapi.json` serves the OpenAPI document (admin_openapi).

`AdminAPI` holds the logic as plain async methods answering `Reply(status, body)`, so they
can be tested without a faust worker; `register_admin` wraps them as faust pages.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Literal, Protocol, cast

import asyncpg
import faust
import orjson
from aiohttp import web as aiohttp_web
from faust.web import Request, Response, View

from bridge import problems
from bridge.access import EVERYONE, INVESTIGATORS, Role, Tokens, refusal, shown_event
from bridge.config import Settings
from bridge.logs import get_logger
from bridge.protect import DataKeys, KeyConfigError, SealError, data_keys

from . import dlq
from .admin_openapi import admin_openapi
from .pipeline import Dispatcher
from .recovery import retry_id, retry_ids, with_owner

log = get_logger("dispatcher.admin")

DISABLED = "admin API disabled: set API_TOKENS (or ADMIN_API_TOKENS)"
MAX_BULK = 500  # entries one bulk retry call may take on
MAX_LIST = 1000  # entries one listing may return
MAX_AGE = timedelta(days=3650)  # older_than / newer_than: beyond it, PostgreSQL may overflow
MAX_TEXT = 1000  # a filter value or a note, in characters
_MAX_ID = 2**63 - 1  # PostgreSQL bigint
# The database refusing a value (the caller's fault) vs the database being unavailable.
_VALUE_ERRORS = (asyncpg.DataError, asyncpg.ProgramLimitExceededError)
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class AdminRuntime(Protocol):
    """What the API needs from the process: runtime.Runtime."""

    @property
    def pool(self) -> asyncpg.Pool: ...

    @property
    def dispatcher(self) -> Dispatcher: ...


GetRuntime = Callable[[], Awaitable[AdminRuntime]]


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


def error_reply(code: int, message: str, /, **extra: Any) -> Reply:
    """A problem details answer (bridge.problems), its kind the one its status stands for."""
    return Reply(code, problems.problem(problems.for_status(code), code, message, **extra))


def parse_entry_id(raw: str) -> int | None:
    # ASCII only: the route's \d also matches other scripts' digits, which int() accepts.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        return None
    value = int(raw)
    return value if 0 < value <= _MAX_ID else None


def _clean_text(value: str, name: str) -> str:
    """`value` if PostgreSQL can take it as text; ValueError saying why not."""
    if len(value) > MAX_TEXT:
        raise ValueError(f"{name} is longer than {MAX_TEXT} characters")
    if "\x00" in value:
        raise ValueError(f"{name} must not contain NUL characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{name} is not valid text (unpaired surrogates)") from None
    return value


def _note(body: Any) -> str | None:
    if not isinstance(body, Mapping):
        return None
    note = body.get("note")
    return note.strip() if isinstance(note, str) and note.strip() else None


class AdminAPI:
    def __init__(
        self, get_runtime: GetRuntime, tokens: Tokens, keys: DataKeys | None = None
    ) -> None:
        self._get_runtime = get_runtime
        self._tokens = tokens
        # None: sealed numbers are shown as "sealed" (they cannot be opened here).
        self._keys = keys

    # --- auth ---------------------------------------------------------------------------

    def authorize(
        self, authorization: str | None, allowed: frozenset[Role] = INVESTIGATORS
    ) -> Reply | None:
        """None when the caller may proceed; otherwise the answer to give."""
        refused = refusal(self._tokens, authorization, allowed, DISABLED)
        if refused is None:
            return None
        return Reply(refused.status, refused.body, refused.headers)

    async def _dispatcher(self) -> Dispatcher:
        return with_owner((await self._get_runtime()).dispatcher, "admin")

    # --- handlers -----------------------------------------------------------------------

    async def stats(self, query: Mapping[str, str]) -> Reply:
        try:
            window = _filters({"newer_than": query.get("newer_than")}).newer_than
        except ValueError as exc:
            return error_reply(400, str(exc))
        runtime = await self._get_runtime()
        rows = await dlq.count_by_status_and_reason(runtime.pool, window)
        return Reply(200, dlq.dead_letter_counts(rows, window))

    async def list_entries(self, query: Mapping[str, str]) -> Reply:
        try:
            filters = _filters(query)
        except ValueError as exc:
            return error_reply(400, str(exc))
        if filters.limit > MAX_LIST:
            return error_reply(400, f"limit is at most {MAX_LIST}")
        runtime = await self._get_runtime()
        entries = await dlq.list_matching(runtime.pool, filters)
        return Reply(200, {"entries": [e.summary() for e in entries], "count": len(entries)})

    async def get_entry(self, raw_id: str) -> Reply:
        entry_id = parse_entry_id(raw_id)
        if entry_id is None:
            return error_reply(404, "no such entry")
        runtime = await self._get_runtime()
        entry = await dlq.get_entry(runtime.pool, entry_id)
        if entry is None:
            return error_reply(404, "no such entry", id=entry_id)
        story = await dlq.entry_history(runtime.pool, entry)
        payload = shown_event(entry.payload, self._keys)
        return Reply(200, {**entry.detail(), "payload": payload, "history": dlq.json_safe(story)})

    async def retry(self, raw_id: str) -> Reply:
        entry_id = parse_entry_id(raw_id)
        if entry_id is None:
            return error_reply(404, "no such entry")
        result = await retry_id(await self._dispatcher(), entry_id, by="api")
        body = {
            "id": entry_id,
            "outcome": result.outcome.label,
            "ok": result.ok,
            "message": result.describe(),
            "entry": result.entry.summary() if result.entry else None,
        }
        if result.outcome.kind == "unknown":
            return error_reply(404, "no such entry", **body)
        if result.outcome.kind == "busy" or (
            result.outcome.kind == "not_retryable" and not result.ok
        ):
            return error_reply(409, result.describe(), **body)
        return Reply(200, body)

    async def settle(
        self, raw_id: str, body: Any, status: Literal["completed", "failed"], by: str = "api"
    ) -> Reply:
        entry_id = parse_entry_id(raw_id)
        if entry_id is None:
            return error_reply(404, "no such entry")
        note = _note(body)
        if note is None:
            return error_reply(400, 'a JSON body {"note": "..."} saying why is required')
        try:
            note = _clean_text(note, "note")
        except ValueError as exc:
            return error_reply(400, str(exc))
        runtime = await self._get_runtime()
        entry = await dlq.operator_settle(runtime.pool, entry_id, status, note=note, by=by)
        if entry is None:
            current = await dlq.get_entry(runtime.pool, entry_id)
            if current is None:
                return error_reply(404, "no such entry", id=entry_id)
            allowed = dlq.RESOLVABLE if status == "completed" else dlq.CLOSABLE
            return error_reply(
                409,
                f"entry is {current.status}; only {', '.join(allowed)} entries can be"
                f" {'resolved' if status == 'completed' else 'closed'}",
                id=entry_id,
                entry_status=current.status,
            )
        log.info("dlq_settled_by_operator", id=entry_id, status=status, by=by)
        return Reply(200, {"id": entry_id, "entry": entry.summary()})

    async def resolve(self, raw_id: str, body: Any) -> Reply:
        return await self.settle(raw_id, body, "completed")

    async def close(self, raw_id: str, body: Any) -> Reply:
        return await self.settle(raw_id, body, "failed")

    async def bulk_retry(self, query: Mapping[str, str], body: Any) -> Reply:
        params: dict[str, Any] = dict(query)
        if isinstance(body, Mapping):
            params.update({k: v for k, v in body.items() if v is not None})
        elif body is not None:
            return error_reply(400, "the body must be a JSON object of filters")
        try:
            filters = _filters(params)
        except ValueError as exc:
            return error_reply(400, str(exc))
        if not filters.narrowing:
            return error_reply(
                400, "give at least one filter: status, reason, provider, older_than, newer_than"
            )
        if filters.limit > MAX_BULK:
            return error_reply(400, f"limit is at most {MAX_BULK}")
        if not filters.statuses:
            filters = replace(filters, statuses=dlq.RETRYABLE)
        runtime = await self._get_runtime()
        entries = await dlq.list_matching(runtime.pool, filters)
        results = await retry_ids(await self._dispatcher(), [e.id for e in entries], by="api")
        return Reply(
            200,
            {
                "matched": len(entries),
                "sent": sum(1 for r in results if r.ok),
                "failed": sum(1 for r in results if not r.ok),
                "results": [
                    {"id": r.id, "outcome": r.outcome.label, "ok": r.ok, "message": r.describe()}
                    for r in results
                ],
            },
        )


def _filters(params: Mapping[str, Any]) -> dlq.Filters:
    """Filters from query parameters or a JSON body; ValueError saying what is wrong."""

    def text(name: str) -> str | None:
        value = params.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            return _clean_text(value, name)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return _clean_text(",".join(value), name)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= _MAX_ID:
            return str(value)
        if isinstance(value, float) and value.is_integer() and abs(value) <= _MAX_ID:
            return str(int(value))
        raise ValueError(f"{name} must be a string or a whole number")

    try:
        filters = dlq.Filters.parse(
            status=text("status"),
            reason=text("reason"),
            provider=text("provider"),
            older_than=text("older_than"),
            newer_than=text("newer_than"),
            limit=text("limit"),
            reference=text("reference"),
        )
    except OverflowError:  # an age beyond what a timedelta holds
        raise ValueError(f"older_than and newer_than are at most {MAX_AGE.days}d") from None
    for age in (filters.older_than, filters.newer_than):
        if age is not None and age > MAX_AGE:
            raise ValueError(f"older_than and newer_than are at most {MAX_AGE.days}d")
    if filters.limit > _MAX_ID:
        raise ValueError("limit is too large")
    return filters


# --- faust pages --------------------------------------------------------------------------


def respond(view: View, reply: Reply) -> Response:
    content_type = problems.MEDIA_TYPE if reply.status >= 400 else "application/json"
    response = view.bytes(orjson.dumps(reply.body), content_type=content_type, status=reply.status)
    response.headers.update(reply.headers)
    return response


async def json_body(request: Request) -> tuple[Any, Reply | None]:
    raw = await request.read()
    if not raw.strip():
        return None, None
    try:
        return json.loads(raw), None
    except (ValueError, RecursionError):  # RecursionError: [[[[… nested past Python's stack
        return None, error_reply(400, "the body is not valid JSON")


async def guarded(reply: Awaitable[Reply]) -> Reply:
    """A handler's reply, with the database's own refusals as 4xx and its outages as 503."""
    try:
        return await reply
    except _VALUE_ERRORS as exc:
        return error_reply(400, f"a value was refused by the database: {type(exc).__name__}")
    except _DB_ERRORS as exc:
        log.error("dlq_admin_database_unavailable", error=repr(exc))
        return error_reply(503, "the database is unavailable; retry later")
    except SealError as exc:
        # Keys are configuration: the entry is fine, this process cannot open it.
        log.error("dlq_admin_key_missing", error=str(exc))
        return error_reply(409, f"{exc}: add that key (docs/data-protection.md), then retry")


@aiohttp_web.middleware
async def problem_answers(
    request: aiohttp_web.Request,
    handler: Callable[[aiohttp_web.Request], Awaitable[aiohttp_web.StreamResponse]],
) -> aiohttp_web.StreamResponse:
    """The web server's own refusals (no such path, no such method: aiohttp answers them
    before any page runs) in the one error shape."""
    try:
        return await handler(request)
    except aiohttp_web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = exc.headers.get("Allow")
        if exc.status == 405 and allow is not None:
            message = f"{request.method} is not allowed here; allowed: {allow}"
        elif exc.status == 404:
            message = "no such path on the admin API (its document: GET /dlq/openapi.json)"
        else:
            message = exc.reason
        body = problems.problem(problems.for_status(exc.status), exc.status, message)
        return aiohttp_web.Response(
            body=orjson.dumps(body),
            status=exc.status,
            content_type=problems.MEDIA_TYPE,
            headers={"Allow": allow} if allow is not None else None,
        )


def _data_keys(settings: Settings) -> DataKeys | None:
    try:
        return data_keys(settings)
    except KeyConfigError as exc:
        # The API still works: sealed numbers show as "sealed", clear ones as their last four.
        log.warning("dlq_admin_without_data_keys", reason=str(exc))
        return None


def register_admin(app: faust.App, get_runtime: GetRuntime, settings: Settings) -> AdminAPI:
    """Add the /dlq pages to the faust app's web server (call at import time, like @app.page)."""
    tokens = Tokens.from_settings(settings)
    api = AdminAPI(get_runtime, tokens, _data_keys(settings) if tokens.configured else None)
    cast(Any, app.web).web_app.middlewares.append(problem_answers)

    def guard(request: Request, allowed: frozenset[Role] = INVESTIGATORS) -> Reply | None:
        return api.authorize(request.headers.get("Authorization"), allowed)

    # Fixed paths before the ones with an {id}, which only matches digits.
    @app.page("/dlq/openapi.json", name="dlq_openapi")
    class DlqOpenAPI(View):
        # No token: the document describes the API, never its data (and tools fetch it bare).
        async def get(self, request: Request) -> Response:
            return respond(self, Reply(200, admin_openapi()))

    @app.page("/dlq/stats", name="dlq_stats")
    class DlqStats(View):
        async def get(self, request: Request) -> Response:
            denied = guard(request, EVERYONE)
            return respond(self, denied or await guarded(api.stats(request.query)))

    @app.page("/dlq", name="dlq_list")
    class DlqList(View):
        async def get(self, request: Request) -> Response:
            denied = guard(request)
            return respond(self, denied or await guarded(api.list_entries(request.query)))

    @app.page("/dlq/retry", name="dlq_bulk_retry")
    class DlqBulkRetry(View):
        async def post(self, request: Request) -> Response:
            denied = guard(request)
            if denied:
                return respond(self, denied)
            body, bad = await json_body(request)
            return respond(self, bad or await guarded(api.bulk_retry(request.query, body)))

    @app.page(r"/dlq/{entry_id:\d+}", name="dlq_entry")
    class DlqEntry(View):
        async def get(self, request: Request, entry_id: str) -> Response:
            denied = guard(request)
            return respond(self, denied or await guarded(api.get_entry(entry_id)))

    @app.page(r"/dlq/{entry_id:\d+}/retry", name="dlq_entry_retry")
    class DlqEntryRetry(View):
        async def post(self, request: Request, entry_id: str) -> Response:
            denied = guard(request)
            return respond(self, denied or await guarded(api.retry(entry_id)))

    def settle_page(path: str, name: str, status: Literal["completed", "failed"]) -> None:
        @app.page(path, name=name)
        class DlqSettle(View):
            async def post(self, request: Request, entry_id: str) -> Response:
                denied = guard(request)
                if denied:
                    return respond(self, denied)
                body, bad = await json_body(request)
                return respond(self, bad or await guarded(api.settle(entry_id, body, status)))

    settle_page(r"/dlq/{entry_id:\d+}/resolve", "dlq_entry_resolve", "completed")
    settle_page(r"/dlq/{entry_id:\d+}/close", "dlq_entry_close", "failed")
    return api
