"""The provider adapter interface: adding a provider is one module that implements it.

An adapter is pure: `verify` checks authenticity on the raw bytes, `parse` turns the payload
into canonical events. The HTTP edge (`ingest.app`) does the I/O around them. A provider
whose signature is an HMAC of the raw body in one header declares it (`HmacAdapter` with an
`HmacScheme`); only the others write `verify`. Reading the payload: `fields`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import httpx
import orjson

from bridge.config import Settings
from bridge.events import CanonicalEvent
from bridge.signing import Algorithm, Encoding, verify_hmac

# Re-exported: the edge (`ingest.app`), the sources and the tests import them from here.
from .fields import PayloadError as PayloadError
from .fields import minor_to_decimal as minor_to_decimal
from .fields import payload_fields, require, text_field
from .fields import phone_digits as phone_digits
from .fields import to_datetime as to_datetime
from .fields import to_decimal as to_decimal


class ConfirmationUnavailable(httpx.HTTPError):
    """The provider's API could not be asked to confirm a transaction (network error, 5xx,
    our own credentials refused or missing). Not evidence of forgery: answer 503 so the
    provider retries later. An httpx.HTTPError, so one `except httpx.HTTPError` covers it."""


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


@runtime_checkable
class Confirming(Protocol):
    """A provider whose API must confirm a transaction before it is processed (Flutterwave's
    "verify before process"). The ingest app calls `confirm` after `parse`, before publishing."""

    async def confirm(
        self, events: list[CanonicalEvent], client: httpx.AsyncClient, settings: Settings
    ) -> None:
        """Raise bridge.signing.SignatureError (log a security alert) when the provider's API
        does not confirm every event; ConfirmationUnavailable when it cannot be asked."""


@runtime_checkable
class Configurable(Protocol):
    """A provider whose configuration can be wrong in ways worth refusing at start-up."""

    def check_configuration(self, secrets: Sequence[str]) -> None:
        """Raise ValueError naming the setting to fix."""


@dataclass(frozen=True)
class Envelope:
    """A verified `{"<event key>": name, "<data key>": {...}}` body, its event understood."""

    payload: Mapping[str, Any]
    event: str  # the provider's own event name
    canonical: str  # the canonical type it maps to
    data: Mapping[str, Any]


def open_envelope(
    payload: Mapping[str, Any],
    event_map: Mapping[str, str],
    provider: str,
    *,
    event_key: str = "event",
    data_key: str = "data",
) -> Envelope | Ignored:
    """The event of an envelope-shaped body, or Ignored for one the bridge sends nothing for."""
    event = text_field(payload, event_key, event_key) or ""
    canonical = event_map.get(event)
    if canonical is None:
        return Ignored(f"{provider} {event!r} is not a notifiable event")
    data = require(payload, data_key)
    if not isinstance(data, Mapping):
        raise PayloadError(f"{data_key} must be an object")
    return Envelope(payload, event, canonical, data)


def json_object(request: WebhookRequest) -> Mapping[str, Any]:
    """The parsed body, which must be a JSON object."""
    payload = request.json()
    if not isinstance(payload, Mapping):
        raise PayloadError("body must be a JSON object")
    return payload


@dataclass(frozen=True)
class HmacScheme:
    """A signature that is an HMAC of the raw body, carried in one header: declared, not
    coded. Any listed secret is accepted; the comparison is constant-time."""

    header: str  # as errors name it; looked up in lower case
    algorithm: Algorithm = "sha256"
    encoding: Encoding = "hex"
    prefix: str = ""  # e.g. `sha256=`, stripped before comparing

    def verify(
        self, request: WebhookRequest, secrets: Sequence[str], message: bytes | None = None
    ) -> None:
        """Raise SignatureError unless the header signs `message` (default: the raw body)."""
        verify_hmac(
            request.body if message is None else message,
            request.headers.get(self.header.lower()),
            secrets,
            algorithm=self.algorithm,
            encoding=self.encoding,
            prefix=self.prefix,
            header=self.header,
        )


class JsonAdapter(ABC):
    """What every adapter shares: `parse` takes a JSON object, and a value the canonical
    model refuses while the events are built is a PayloadError (422), never a 500.
    Subclasses declare `name` and `secrets_setting`, write `verify` and `parse_payload`."""

    name: ClassVar[str]
    secrets_setting: ClassVar[str]
    bad_signature_status: ClassVar[int] = 401

    def parse(self, request: WebhookRequest) -> Outcome:
        payload = json_object(request)
        with payload_fields():
            return self.parse_payload(payload)

    @abstractmethod
    def parse_payload(self, payload: Mapping[str, Any]) -> Outcome:
        """The canonical events of a verified JSON object (raise PayloadError when unusable)."""


class HmacAdapter(JsonAdapter):
    """A provider whose signature is an HMAC of the raw body: declare `signature`."""

    signature: ClassVar[HmacScheme]

    def verify(self, request: WebhookRequest, secrets: Sequence[str]) -> None:
        self.signature.verify(request, secrets)
