"""The Siteti v2.6 client: signed requests, idempotency keys, typed errors. No retries here:
the caller owns the policy (see retry.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from bridge.events import Priority
from bridge.metrics import GOVERNOR_WAIT, SITETI_CALLS, SITETI_LATENCY
from bridge.signing import sign_siteti_request

from .governor import Governor
from .retry import is_transient


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


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


class SitetiClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        api_key: str,
        signing_secret: str,
        governor: Governor | None = None,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._base_path = urlsplit(self._base_url).path
        self._api_key = api_key
        self._signing_secret = signing_secret
        self._governor = governor

    async def request(
        self,
        operation: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        priority: Priority = "transactional",
    ) -> Answer:
        raw = orjson.dumps(body) if body is not None else b""
        if self._governor is not None:
            GOVERNOR_WAIT.labels(priority).observe(await self._governor.acquire(priority))
        timestamp = int(time.time())
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Content-Type": "application/json; charset=utf-8",
            "X-Siteti-Timestamp": str(timestamp),
            "X-Siteti-Signature": sign_siteti_request(
                self._signing_secret, timestamp, method, self._base_path + path, raw
            ),
        }
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        started = time.perf_counter()
        try:
            response = await self._http.request(
                method, self._base_url + path, content=raw, headers=headers
            )
        except httpx.TimeoutException as exc:
            SITETI_CALLS.labels(operation, "timeout").inc()
            raise SitetiError(None, "timeout", f"{operation} timed out") from exc
        except httpx.TransportError as exc:
            SITETI_CALLS.labels(operation, "unreachable").inc()
            raise SitetiError(None, "unreachable", f"{operation}: {exc!r}") from exc
        finally:
            SITETI_LATENCY.labels(operation).observe(time.perf_counter() - started)
        SITETI_CALLS.labels(operation, str(response.status_code)).inc()
        rate_limit = RateLimit(
            _int_header(response.headers, "x-ratelimit-limit"),
            _int_header(response.headers, "x-ratelimit-remaining"),
            _int_header(response.headers, "x-ratelimit-reset"),
        )
        if self._governor is not None:
            await self._governor.observe(rate_limit.remaining, rate_limit.reset_at)
        try:
            payload = response.json() if response.content else {}
        except ValueError:
            payload = {"error": {"code": "bad_response", "message": response.text[:200]}}
        if response.status_code >= 400:
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            header = response.headers.get("retry-after", "")
            retry_after = float(header) if header.isdigit() else None
            if retry_after and self._governor is not None and response.status_code in (429, 503):
                # Siteti said "not now" to us: it means every instance.
                await self._governor.pause(retry_after)
            raise SitetiError(
                response.status_code,
                str(error.get("code", f"http_{response.status_code}")),
                str(error.get("message", "")),
                retry_after=retry_after,
                detail=error,
            )
        return Answer(
            response.status_code,
            payload,
            response.headers.get("idempotent-replayed", "").lower() == "true",
            rate_limit,
        )

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
