"""The provider adapter interface: adding a provider is one module that implements it.

An adapter is pure: `verify` checks authenticity on the raw bytes, `parse` turns the payload
into canonical events. The HTTP edge (`ingest.app`) does the I/O around them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import orjson

from bridge.events import CanonicalEvent


class PayloadError(ValueError):
    """The body is authentic but not something we can turn into an event (answered 422)."""


@dataclass(frozen=True)
class WebhookRequest:
    body: bytes
    headers: Mapping[str, str]  # lower-case names
    now: float = field(default_factory=time.time)

    def json(self) -> Any:
        """The parsed body; malformed JSON raises orjson.JSONDecodeError (answered 400)."""
        return orjson.loads(self.body)


@dataclass(frozen=True)
class Handshake:
    """A provider's endpoint check: answer `response` with 200 and emit nothing."""

    response: dict[str, Any]


@dataclass(frozen=True)
class Ignored:
    """Authentic, understood, and deliberately not turned into an event (answered 200)."""

    reason: str


Outcome = list[CanonicalEvent] | Handshake | Ignored


class Provider(Protocol):
    name: ClassVar[str]
    #: the Settings field holding this provider's comma-separated secrets
    secrets_setting: ClassVar[str]
    #: the status for a bad or missing signature (401 unless the provider's convention differs)
    bad_signature_status: ClassVar[int]

    def verify(self, request: WebhookRequest, secrets: Sequence[str]) -> None:
        """Raise bridge.signing.SignatureError unless the request is authentic."""

    def parse(self, request: WebhookRequest) -> Outcome:
        """Turn the verified payload into canonical events (raise PayloadError when unusable)."""


def require(mapping: Mapping[str, Any], *path: str) -> Any:
    """`mapping[path[0]][path[1]]…`, or PayloadError naming the missing field."""
    current: Any = mapping
    for depth, part in enumerate(path):
        if not isinstance(current, Mapping) or current.get(part) in (None, ""):
            raise PayloadError(f"missing field {'.'.join(path[: depth + 1])}")
        current = current[part]
    return current
