"""The Siteti v2.6 client: signed requests, idempotency keys, typed errors. No retries here:
the caller owns the policy (see retry.py).

Each job has its own seam of httpx, so each is small and tested on its own:

- `SitetiKeys` holds the listed API keys (`SITETI_API_KEYS`) and which one is in use;
  `key_after_refusal` (pure) decides where an `invalid_api_key` moves it;
- `SitetiAuth` (an `httpx.Auth`) signs: Bearer key, `X-Siteti-Timestamp`, `X-Siteti-Signature`
  over method, request target and body;
- `MeteredTransport` records `SITETI_CALLS` and `SITETI_LATENCY` per operation around the wire;
- `GovernedTransport` waits for the shared governor's slot and feeds Siteti's answers back;
- `answer_of` / `siteti_error` / `transport_failure` map what came back to `Answer` or
  `SitetiError` (pure);
- `SitetiClient` builds the request (body, idempotency key, operation and priority as request
  extensions), sends it again at once under the next key when its key was refused, and
  exposes the operations.

`runtime.siteti_http` stacks the transports: governor → metrics → HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from bridge.correlation import outgoing_headers
from bridge.events import Priority
from bridge.logs import get_logger
from bridge.metrics import GOVERNOR_WAIT, SITETI_CALLS, SITETI_KEY_SWITCHES, SITETI_LATENCY
from bridge.signing import sign_siteti_request

from .governor import Governor
from .retry import is_transient

# Request extensions (never on the wire): what the call is, for metrics and the governor.
OPERATION = "siteti_operation"
PRIORITY = "siteti_priority"
# Set by SitetiAuth: the position of the key that signed the request, so that a refusal moves
# on from that key and no other.
KEY_POSITION = "siteti_key_position"

log = get_logger("siteti")


class SitetiError(Exception):
    def __init__(
        self,
        status: int | None,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status or 'no answer'} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.detail = detail or {}

    @property
    def transient(self) -> bool:
        return is_transient(self.status, self.code)


@dataclass(frozen=True)
class RateLimit:
    limit: int | None
    remaining: int | None
    reset_at: float | None


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool
    rate_limit: RateLimit


# --- Mapping answers (pure) -------------------------------------------------------------------


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def rate_limit_of(headers: Mapping[str, str]) -> RateLimit:
    """The `X-RateLimit-*` headers of an answer (absent or unreadable: None)."""
    return RateLimit(
        _int_header(headers, "x-ratelimit-limit"),
        _int_header(headers, "x-ratelimit-remaining"),
        _int_header(headers, "x-ratelimit-reset"),
    )


def retry_after_of(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` in whole seconds; an HTTP date or anything else counts as absent."""
    header = headers.get("retry-after", "")
    return float(header) if header.isascii() and header.isdigit() else None


def payload_of(response: httpx.Response) -> Any:
    """The JSON body ({} when empty); a body that is not JSON reads as a `bad_response` error."""
    try:
        return response.json() if response.content else {}
    except ValueError:
        return {"error": {"code": "bad_response", "message": response.text[:200]}}


def siteti_error(status: int, payload: Any, retry_after: float | None) -> SitetiError:
    """Siteti's error answer (`{"error": {"code", "message", ...}}`) as a SitetiError."""
    error = payload.get("error", {}) if isinstance(payload, dict) else {}
    if not isinstance(error, dict):
        error = {}
    return SitetiError(
        status,
        str(error.get("code", f"http_{status}")),
        str(error.get("message", "")),
        retry_after=retry_after,
        detail=error,
    )


def answer_of(response: httpx.Response) -> Answer:
    """The Answer for a 2xx/3xx response; raises the SitetiError for a 4xx/5xx one."""
    payload = payload_of(response)
    if response.status_code >= 400:
        raise siteti_error(response.status_code, payload, retry_after_of(response.headers))
    return Answer(
        response.status_code,
        payload,
        response.headers.get("idempotent-replayed", "").lower() == "true",
        rate_limit_of(response.headers),
    )


def transport_failure(operation: str, exc: httpx.TransportError) -> SitetiError:
    """No answer at all: a timeout, or Siteti unreachable."""
    if isinstance(exc, httpx.TimeoutException):
        return SitetiError(None, "timeout", f"{operation} timed out")
    return SitetiError(None, "unreachable", f"{operation}: {exc!r}")


# --- API keys ---------------------------------------------------------------------------------


def listed_keys(api_keys: Sequence[str], api_key: str) -> tuple[str, ...]:
    """The keys to use, in order: `SITETI_API_KEYS` (blanks and repeats dropped), or
    `SITETI_API_KEY` alone when that list is empty."""
    keys = tuple(dict.fromkeys(k.strip() for k in api_keys if k.strip()))
    return keys or (api_key,)


def key_after_refusal(active: int, refused: int, count: int) -> int:
    """The key position to use once the key at `refused` got `invalid_api_key` while `active`
    is in use. Only the key in use is left: calls signed before another call moved on fail too,
    and must not move it again (ping-pong). Past the last key it wraps round, so a rotation
    rolled out before the new key existed still finds it once the old one is revoked."""
    return (refused + 1) % count if refused == active else active


class SitetiKeys:
    """The listed API keys and the position of the one in use (the first, until Siteti
    refuses it). One per process, shared by every signer. No await inside: asyncio tasks
    cannot interleave in `refused`."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one Siteti API key is needed")
        self._keys = tuple(keys)
        self._active = 0

    def current(self) -> tuple[int, str]:
        return self._active, self._keys[self._active]

    def refused(self, position: int) -> int:
        """Siteti answered `invalid_api_key` to the key at `position`: move on if it is still
        the one in use. Returns the position now in use. Logs positions, never a key."""
        after = key_after_refusal(self._active, position, len(self._keys))
        if after != self._active:
            log.warning(
                "siteti_api_key_switched",
                # Positions in SITETI_API_KEYS, counted from 1 as an operator reads the list.
                from_position=self._active + 1,
                to_position=after + 1,
                keys=len(self._keys),
            )
            SITETI_KEY_SWITCHES.inc()
            self._active = after
        return self._active


# --- The httpx seams --------------------------------------------------------------------------


class SitetiAuth(httpx.Auth):
    """Siteti's request authentication: the API key in use as a Bearer token, and an HMAC
    signature over timestamp, method, request target (path and query, as sent) and raw body.
    `keys` is one key, or the process's shared `SitetiKeys`."""

    requires_request_body = True

    def __init__(
        self,
        keys: str | SitetiKeys,
        signing_secret: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = SitetiKeys((keys,)) if isinstance(keys, str) else keys
        self._signing_secret = signing_secret
        self._clock = clock

    def sign(self, request: httpx.Request) -> None:
        """(Re)sign `request` now. The governor calls this again once the request's slot comes,
        so the timestamp is the send's, not that of a request that waited out a pause, and the
        key is the one in use then."""
        timestamp = int(self._clock())
        target = request.url.raw_path.decode("ascii")
        position, key = self.keys.current()
        request.extensions[KEY_POSITION] = position
        request.headers["Authorization"] = f"Bearer {key}"
        request.headers["X-Siteti-Timestamp"] = str(timestamp)
        request.headers["X-Siteti-Signature"] = sign_siteti_request(
            self._signing_secret, timestamp, request.method, target, request.content
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request


class MeteredTransport(httpx.AsyncBaseTransport):
    """Counts each Siteti call by operation and status (`timeout`, `unreachable` when there is
    no answer) and times it, body included. The governor's wait is outside: it wraps this."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        operation = str(request.extensions.pop(OPERATION, "other"))
        started = time.perf_counter()
        try:
            response = await self._inner.handle_async_request(request)
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        except httpx.TimeoutException:
            SITETI_CALLS.labels(operation, "timeout").inc()
            raise
        except httpx.TransportError:
            SITETI_CALLS.labels(operation, "unreachable").inc()
            raise
        finally:
            SITETI_LATENCY.labels(operation).observe(time.perf_counter() - started)
        SITETI_CALLS.labels(operation, str(response.status_code)).inc()
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class GovernedTransport(httpx.AsyncBaseTransport):
    """Wraps the transport to Siteti with the cluster-wide governor (governor.py).

    Before each request: wait for a slot (bulk yields to confirmations; the priority travels as
    the `siteti_priority` request extension, stripped here), record the wait in GOVERNOR_WAIT,
    then `on_slot(request)`: the signer, so a request that waited out a pause is stamped with
    the time it is sent. After the answer: `X-RateLimit-Remaining` at the floor, or a 429/503
    with Retry-After, pauses every instance (Siteti said "not now" to us: it means all of us).
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        governor: Governor,
        *,
        on_slot: Callable[[httpx.Request], None] | None = None,
    ) -> None:
        self._inner = inner
        self._governor = governor
        self._on_slot = on_slot

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        bulk = request.extensions.pop(PRIORITY, None) == "bulk"
        priority: Priority = "bulk" if bulk else "transactional"
        GOVERNOR_WAIT.labels(priority).observe(await self._governor.acquire(priority))
        if self._on_slot is not None:
            self._on_slot(request)
        response = await self._inner.handle_async_request(request)
        try:
            rate_limit = rate_limit_of(response.headers)
            await self._governor.observe(rate_limit.remaining, rate_limit.reset_at)
            retry_after = retry_after_of(response.headers)
            if retry_after and response.status_code in (429, 503):
                await self._governor.pause(retry_after, reason=str(response.status_code))
        except BaseException:
            await response.aclose()
            raise
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


# --- The client -------------------------------------------------------------------------------


class SitetiClient:
    """Siteti's operations over `http`. Rate governing and metrics ride on `http`'s transport
    (see `runtime.siteti_http`); this class signs, sends and maps the answer. `api_keys` is
    one key, or the `SitetiKeys` that the transport's signer shares."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        api_keys: str | SitetiKeys,
        signing_secret: str,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._auth = SitetiAuth(api_keys, signing_secret)

    async def request(
        self,
        operation: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        priority: Priority = "transactional",
    ) -> Answer:
        # The event being handled's trace (bridge.correlation): Siteti's side of it joins.
        headers = {"Content-Type": "application/json; charset=utf-8", **outgoing_headers()}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        content = orjson.dumps(body) if body is not None else b""
        refused: set[int] = set()
        while True:
            try:
                response = await self._http.request(
                    method,
                    self._base_url + path,
                    content=content,
                    headers=headers,
                    auth=self._auth,
                    extensions={OPERATION: operation, PRIORITY: priority},
                )
            except httpx.TransportError as exc:
                raise transport_failure(operation, exc) from exc
            try:
                return answer_of(response)
            except SitetiError as exc:
                position = response.request.extensions.get(KEY_POSITION)
                if exc.code != "invalid_api_key" or not isinstance(position, int):
                    raise
                refused.add(position)
                # Once this call has been refused by the key now in use, every listed key
                # has failed: the permanent error, as with a single key.
                if self._auth.keys.refused(position) in refused:
                    raise

    async def upsert_contact(
        self,
        phone: str,
        name: str | None,
        attributes: dict[str, str],
        idempotency_key: str,
        priority: Priority = "transactional",
    ) -> str:
        body: dict[str, Any] = {"phone": phone, "attributes": attributes}
        if name:
            body["name"] = name
        answer = await self.request(
            "upsert_contact", "PUT", "/contacts", body, idempotency_key, priority
        )
        return str(answer.body["contact_id"])

    async def trigger_template(
        self,
        template_id: str,
        *,
        to: str,
        contact_id: str | None,
        variables: dict[str, str],
        reference: str,
        idempotency_key: str,
        priority: Priority = "transactional",
    ) -> Answer:
        body: dict[str, Any] = {"to": to, "variables": variables, "reference": reference}
        if contact_id:
            body["contact_id"] = contact_id
        path = f"/templates/{template_id}/trigger"
        return await self.request("trigger_template", "POST", path, body, idempotency_key, priority)

    async def template_status(self, template_id: str) -> str:
        answer = await self.request("template_status", "GET", f"/templates/{template_id}")
        return str(answer.body.get("status", "UNKNOWN"))

    async def delete_contact(self, contact_id: str) -> None:
        """Erase a contact (`204`); `404 contact_not_found` raises like any other error."""
        await self.request("delete_contact", "DELETE", f"/contacts/{contact_id}")
