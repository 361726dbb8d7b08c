"""How one Siteti API call is processed, in order:

1. body size (413 over 1 MiB, before anything else, as a front proxy would);
2. API key (401 invalid_api_key), then signature and timestamp (401 invalid_signature);
3. rate limit: every authenticated call counts, idempotent replays included, as real APIs
   do; from here on every response carries the X-RateLimit-* headers (429 when over);
4. routing (404 not_found / 405 method_not_allowed);
5. injected failures (after auth, before idempotency: a failed call stores nothing, unless
   the rule says `after_processing`: then the call takes effect and only its answer fails);
6. idempotency (POST/PUT with Idempotency-Key): replay, 409, or run the handler and store
   its response, whatever its status;
7. the handler.

Every call, rejected or not, is appended to the call log and counted in the metrics.
Handlers are synchronous, so steps 3-7 run without an await in between: two concurrent calls
with the same Idempotency-Key cannot both run the handler.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from bridge.edge import BodyTooLarge, read_limited_body
from bridge.signing import SignatureError, verify_siteti_request

from . import api
from .api import ApiContext, ApiError, ApiResult
from .metrics import Metrics
from .state import FailureRule, RateDecision, SandboxState, StoredResponse, iso
from .webhooks import WebhookSender

MAX_BODY_BYTES = 1024 * 1024
MAX_IDEMPOTENCY_KEY = 255
JSON_TYPE = "application/json; charset=utf-8"

log = logging.getLogger(__name__)


def path_with_query(scope: MutableMapping[str, Any]) -> str:
    """The request target exactly as the client sent it (what the client signed)."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    path = raw.decode("utf-8", "replace")
    return f"{path}?{query.decode('utf-8', 'replace')}" if query else path


def parse_json(raw: bytes) -> tuple[Any, bool]:
    if not raw:
        return None, False
    try:
        return orjson.loads(raw), True
    except orjson.JSONDecodeError:
        return None, False


def _bearer(header: str | None) -> str | None:
    scheme, _, token = (header or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _fingerprint(method: str, path: str, parsed: Any, ok: bool, raw: bytes) -> str:
    # JSON bodies are compared by value (key order and spacing do not make a "different
    # body"); anything else byte for byte.
    canonical = orjson.dumps(parsed, option=orjson.OPT_SORT_KEYS) if ok else raw
    return hashlib.sha256(f"{method}\n{path}\n".encode() + canonical).hexdigest()


def _failure(rule: FailureRule, rate: RateDecision, now: float) -> ApiResult:
    headers = rate.headers()
    if rule.mode == "rate_limit_storm":
        # Consistent with a real throttle: nothing left until Retry-After has passed.
        headers["X-RateLimit-Remaining"] = "0"
        headers["X-RateLimit-Reset"] = str(math.ceil(now + rule.retry_after))
        headers["Retry-After"] = str(rule.retry_after)
        return ApiError(429, "rate_limited", "too many requests (injected)").result(headers)
    if rule.mode == "maintenance":
        headers["Retry-After"] = str(rule.retry_after)
        return ApiError(503, "maintenance", "planned maintenance (injected)").result(headers)
    if rule.mode == "timeout":
        return ApiError(504, "timeout", "upstream timeout (injected)").result(headers)
    if rule.status == 503:
        headers["Retry-After"] = str(rule.retry_after)
    return ApiError(rule.status, "internal_error", "server error (injected)").result(headers)


@dataclass(frozen=True)
class Incoming:
    method: str
    path: str  # path with query, as received
    key: str | None  # Idempotency-Key
    parsed: Any
    is_json: bool
    raw: bytes
    now: float


@dataclass(frozen=True)
class Answer:
    status: int
    content: bytes
    headers: dict[str, str]
    replayed: bool = False

    @classmethod
    def of(cls, result: ApiResult | ApiError) -> Answer:
        if isinstance(result, ApiError):
            result = result.result()
        content = orjson.dumps(result.body) if result.body is not None else b""
        return cls(result.status, content, result.headers)


class Pipeline:
    def __init__(self, state: SandboxState, sender: WebhookSender, metrics: Metrics) -> None:
        self.state = state
        self.ctx = ApiContext(state, sender)
        self.metrics = metrics

    async def handle(self, request: Request) -> Response:
        state, now = self.state, self.state.now()
        cfg = state.config
        method = request.method
        path = path_with_query(request.scope)
        key = request.headers.get("idempotency-key")
        call: dict[str, Any] = {
            "at": iso(now),
            "method": method,
            "path": path,
            "status": None,
            "idempotency_key": key,
            # The caller's W3C trace context, so a test can follow one event into Siteti.
            "traceparent": request.headers.get("traceparent"),
            "replayed": False,
            "body": None,
            "response": None,
        }

        try:
            raw = await read_limited_body(request, MAX_BODY_BYTES)
        except BodyTooLarge:
            error = ApiError(413, "payload_too_large", f"body over {MAX_BODY_BYTES} bytes")
            return self._finish(call, "other", error.result())
        parsed, is_json = parse_json(raw)
        call["body"] = parsed

        if _bearer(request.headers.get("authorization")) not in cfg.api_keys:
            error = ApiError(401, "invalid_api_key", "unknown or revoked API key")
            return self._finish(call, "other", error.result())
        try:
            verify_siteti_request(
                cfg.signing_secrets,
                timestamp=request.headers.get("x-siteti-timestamp"),
                signature=request.headers.get("x-siteti-signature"),
                method=method,
                path_with_query=path,
                body=raw,
                now=now,
            )
        except SignatureError as exc:
            return self._finish(
                call, "other", ApiError(401, "invalid_signature", str(exc)).result()
            )

        rate = state.limiter.hit(now, cfg.rate_limit_per_minute)
        headers = rate.headers()
        if rate.limited:
            headers["Retry-After"] = str(rate.retry_after)
            error = ApiError(
                429, "rate_limited", "rate limit exceeded", retry_after=rate.retry_after
            )
            return self._finish(call, "other", error.result(headers))

        decoded = request.url.path
        try:
            if decoded != cfg.base_path and not decoded.startswith(cfg.base_path + "/"):
                raise ApiError(404, "not_found", "no such account")
            route, params = api.match(method, decoded[len(cfg.base_path) :])
        except ApiError as not_found:
            return self._finish(call, "other", not_found.result(headers))

        rule = state.failures.pick(path, now)
        incoming = Incoming(method, path, key, parsed, is_json, raw, now)
        if rule is None:
            answer = self._process(incoming, route, params)
            call["replayed"] = answer.replayed
            all_headers = {**answer.headers, **headers}
            return self._respond(call, route.template, answer.status, answer.content, all_headers)

        if rule.after_processing:
            call["replayed"] = self._process(incoming, route, params).replayed
        response = self._finish(call, route.template, _failure(rule, rate, now))
        if rule.mode == "timeout":
            await asyncio.sleep(rule.timeout_seconds)
        return response

    def _process(self, req: Incoming, route: api.Route, params: dict[str, str]) -> Answer:
        """Steps 6 and 7: idempotency, then the handler."""

        def run() -> ApiResult:
            if req.method in ("POST", "PUT") and not req.is_json:
                return ApiError(422, "validation_error", "the body is not valid JSON").result()
            try:
                return route.handler(self.ctx, params, req.parsed)
            except ApiError as error:
                return error.result()
            except Exception:  # a sandbox bug must still show up in the call log
                log.exception("handler %s failed", route.template)
                return ApiError(500, "internal_error", "sandbox handler crashed").result()

        if req.method not in ("POST", "PUT") or req.key is None:
            return Answer.of(run())
        if not 0 < len(req.key) <= MAX_IDEMPOTENCY_KEY:
            return Answer.of(
                ApiError(422, "validation_error", "Idempotency-Key must be 1-255 characters")
            )

        fingerprint = _fingerprint(req.method, req.path, req.parsed, req.is_json, req.raw)
        stored = self.state.idempotency.get(req.key, req.now)
        if stored is None:
            answer = Answer.of(run())
            self.state.idempotency.put(
                req.key,
                StoredResponse(fingerprint, answer.status, answer.content, answer.headers, req.now),
            )
            return answer
        if stored.fingerprint != fingerprint:
            return Answer.of(
                ApiError(
                    409, "idempotency_key_reused", "this Idempotency-Key was used with another body"
                )
            )
        headers = {**stored.headers, "Idempotent-Replayed": "true"}
        return Answer(stored.status, stored.body, headers, replayed=True)

    def _finish(self, call: dict[str, Any], template: str, result: ApiResult) -> Response:
        content = orjson.dumps(result.body) if result.body is not None else b""
        return self._respond(call, template, result.status, content, result.headers)

    def _respond(
        self,
        call: dict[str, Any],
        template: str,
        status: int,
        content: bytes,
        headers: dict[str, str],
    ) -> Response:
        call["status"] = status
        call["response"] = parse_json(content)[0]
        self.state.log_call(call)
        self.metrics.calls.labels(method=call["method"], path=template, status=str(status)).inc()
        return Response(
            content=content,
            status_code=status,
            headers=headers,
            media_type=JSON_TYPE if content else None,
        )
