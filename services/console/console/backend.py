"""The console's calls to the bridge's APIs, always with the signed-in operator's token, so
the APIs keep deciding roles and masking numbers. Every failure is a `BackendError` whose
message a page can show as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

TIMEOUT_SECONDS = 15.0


class BackendError(Exception):
    """A call that did not answer 2xx: `status` 0 when the service could not be reached."""

    def __init__(self, service: str, status: int, message: str) -> None:
        super().__init__(message)
        self.service = service
        self.status = status
        self.message = message

    @property
    def unreachable(self) -> bool:
        return self.status == 0


def error_message(status: int, body: Any) -> str:
    """What an error answer says: the problem's `detail` (bridge.problems: every API of the
    bridge answers errors that way), else its `title`; otherwise the bare status."""
    if isinstance(body, Mapping):
        for name in ("detail", "title"):
            value = body.get(name)
            if isinstance(value, str) and value:
                return value
    return f"HTTP {status}"


class Backend:
    """One service (the admin API or receipts) at `base_url`."""

    def __init__(self, name: str, base_url: str, client: httpx.AsyncClient) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._client = client

    async def call(
        self,
        method: str,
        path: str,
        token: str | None,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = await self._client.request(
                method, self.base_url + path, params=params, json=json, headers=headers
            )
        except httpx.HTTPError as exc:
            raise BackendError(
                self.name, 0, f"{self.name} is unreachable ({type(exc).__name__})"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            message = error_message(response.status_code, body)
            raise BackendError(self.name, response.status_code, f"{self.name}: {message}")
        return body

    async def text(self, path: str) -> str:
        """A plain-text page (/metrics), without a token."""
        try:
            response = await self._client.get(self.base_url + path)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise BackendError(
                self.name, 0, f"{self.name} {path} is unreachable ({type(exc).__name__})"
            ) from None
        return response.text


def reference_path(reference: str) -> str:
    """A transaction reference as a path segment (references hold ':' and may hold '/')."""
    return "/audit/" + quote(reference, safe=":")
