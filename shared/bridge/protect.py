"""Customer data protection (NDPA 2023): sealed values, keyed hashes and masks. No I/O.

- A **sealed value** is `enc:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`: AES-256-GCM under
  one of `BRIDGE_DATA_KEYS`, with the value's kind (`phone`, `email`, `name`) as associated
  data, so a sealed e-mail cannot be passed off as a phone number. The key id travels with
  the value: any listed key opens, the first one seals, and `bridge keys rotate` re-seals.
- A **keyed hash** (blind index) is HMAC-SHA-256 under `BRIDGE_INDEX_KEY`: the same input
  always gives the same hash, so the directory can look a number up, Kafka can partition by
  customer, and an erasure log can name what it removed, without the clear value.
- A **mask** shows people the last four digits at most.

The keys live in configuration (environment or a file), never in the database.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .config import Settings
from .events import CanonicalEvent
from .phones import to_siteti

Kind = Literal["phone", "email", "name"]
SEALED_PREFIX = "enc:"
_KEY_ID = re.compile(r"[A-Za-z0-9_.\-]{1,32}")
_NONCE_BYTES = 12  # GCM's standard nonce; random, so 2**32 seals per key stay far from a clash
KEY_BYTES = 32  # AES-256


class KeyConfigError(ValueError):
    """The key configuration is unusable; the message says what to fix."""


class SealError(ValueError):
    """A sealed value that cannot be opened: unknown key id, damaged, or of another kind."""


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, strictly: a typo is an error, not a shorter key."""
    try:
        altchars = b"-_" if ("-" in text or "_" in text) else None
        return base64.b64decode(text, altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyConfigError("is not base64") from exc


def _parse_key(entry: str) -> tuple[str, bytes]:
    key_id, sep, encoded = entry.strip().partition(":")
    if not sep or not _KEY_ID.fullmatch(key_id):
        raise KeyConfigError(
            "BRIDGE_DATA_KEYS entries are `id:base64key` (id: letters, digits, . _ -, up to 32)"
        )
    try:
        key = _b64decode(encoded.strip())
    except KeyConfigError as exc:
        raise KeyConfigError(f"BRIDGE_DATA_KEYS key {key_id!r} is not base64") from exc
    if len(key) != KEY_BYTES:
        raise KeyConfigError(
            f"BRIDGE_DATA_KEYS key {key_id!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES}"
        )
    return key_id, key


def key_entries(configured: Sequence[str]) -> list[str]:
    """`BRIDGE_DATA_KEYS` as `id:key` entries: the list itself, or the lines of the one file
    it names (blank lines and `#` comments skipped)."""
    if len(configured) == 1 and ":" not in configured[0]:
        path = Path(configured[0])
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            problem = f"BRIDGE_DATA_KEYS names {path}, which cannot be read: {exc}"
            raise KeyConfigError(problem) from exc
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return list(configured)


def new_key_entry(key_id: str) -> str:
    """A fresh `id:base64key` entry for BRIDGE_DATA_KEYS (`bridge keys new`)."""
    if not _KEY_ID.fullmatch(key_id):
        raise KeyConfigError("a key id is letters, digits, . _ -, up to 32 characters")
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


@dataclass(frozen=True)
class DataKeys:
    """The sealing keys (first seals, all open) and the blind-index key."""

    keys: tuple[tuple[str, bytes], ...]
    index_key: bytes

    @classmethod
    def parse(cls, data_keys: Sequence[str], index_key: str) -> DataKeys:
        entries = key_entries(data_keys)
        if not entries:
            raise KeyConfigError(
                "BRIDGE_DATA_KEYS is not set: customers' numbers cannot be stored without it "
                "(`bridge keys new` prints one; docs/data-protection.md)"
            )
        parsed = tuple(_parse_key(entry) for entry in entries)
        ids = [key_id for key_id, _ in parsed]
        if len(set(ids)) != len(ids):
            raise KeyConfigError("BRIDGE_DATA_KEYS lists one key id twice")
        if not index_key.strip():
            raise KeyConfigError(
                "BRIDGE_INDEX_KEY is not set: look-ups by number need it "
                "(base64 of 32 random bytes: `openssl rand -base64 32`)"
            )
        try:
            index = _b64decode(index_key.strip())
        except KeyConfigError as exc:
            raise KeyConfigError("BRIDGE_INDEX_KEY is not base64") from exc
        if len(index) < KEY_BYTES:
            raise KeyConfigError(f"BRIDGE_INDEX_KEY must be at least {KEY_BYTES} bytes")
        return cls(parsed, index)

    @property
    def current_id(self) -> str:
        return self.keys[0][0]

    @cached_property
    def _ciphers(self) -> dict[str, AESGCM]:
        # One cipher object per key, made once: building it costs more than a seal.
        return {key_id: AESGCM(key) for key_id, key in self.keys}

    def seal(self, value: str, kind: Kind) -> str:
        key_id = self.current_id
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, value.encode(), kind.encode())
        return f"{SEALED_PREFIX}{key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, value: str, kind: Kind) -> str:
        """The clear value. A value that is not sealed is returned as it is: rows and events
        written before encryption (`bridge keys rotate` seals them)."""
        if not is_sealed(value):
            return value
        key_id, _, body = value[len(SEALED_PREFIX) :].partition(":")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise SealError(f"sealed under key {key_id!r}, which BRIDGE_DATA_KEYS does not list")
        try:
            raw = base64.urlsafe_b64decode(body)
            clear = cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], kind.encode())
        except (binascii.Error, ValueError, InvalidTag) as exc:
            raise SealError(f"a sealed {kind} under key {key_id!r} does not open") from exc
        return clear.decode()

    def reseal(self, value: str, kind: Kind) -> str:
        """`value` sealed under the current key (unchanged when it already is)."""
        if sealed_by(value) == self.current_id:
            return value
        return self.seal(self.open(value, kind), kind)

    def index(self, value: str, kind: str) -> str:
        """The keyed hash of `value` (normalised by the caller) for look-ups."""
        # One-shot HMAC: the same value as hmac.new's, at a fraction of the cost.
        return hmac.digest(self.index_key, f"{kind}\x00{value}".encode(), "sha256").hex()[:40]

    def phone_index(self, phone: str) -> str:
        return self.index(phone, "phone")

    def email_index(self, email: str) -> str:
        return self.index(email.strip().lower(), "email")


def data_keys(settings: Settings) -> DataKeys:
    """The configured keys; raises KeyConfigError saying what to set when they are unusable."""
    return DataKeys.parse(settings.bridge_data_keys, settings.bridge_index_key)


def is_sealed(value: str | None) -> bool:
    return bool(value) and value.startswith(SEALED_PREFIX)  # type: ignore[union-attr]


def sealed_by(value: str) -> str | None:
    """The id of the key that sealed `value`, or None when it is not sealed."""
    if not is_sealed(value):
        return None
    return value[len(SEALED_PREFIX) :].partition(":")[0]


def last_four(phone: str | None) -> str | None:
    """What people may see of a number: `•••4567`."""
    digits = "".join(ch for ch in phone or "" if ch.isdigit())
    return f"•••{digits[-4:]}" if digits else None


def customer_key(event: CanonicalEvent, keys: DataKeys, region: str) -> str:
    """The Kafka key of an event: a keyed hash of the customer's most stable identifier, so
    one customer's events share a partition and no consumer reads an identifier from it."""
    kind, _, value = event.data.customer.key.partition(":")
    if kind == "acct":
        return keys.index(value, "account")
    if kind == "email":
        return keys.email_index(value)
    phone = keys.open(value, "phone")
    return keys.phone_index(to_siteti(phone, region, trusted=True) or phone)


def sealed_record(event: CanonicalEvent, keys: DataKeys, region: str) -> tuple[bytes, bytes]:
    """(Kafka key, value) of an event as the edge publishes it: the number, when the source
    gave one, sealed, and the key a keyed hash. Sealed already (a replay): kept as it is."""
    key = customer_key(event, keys, region).encode()
    phone = event.data.customer.phone
    if phone and not is_sealed(phone):
        customer = event.data.customer.model_copy(update={"phone": keys.seal(phone, "phone")})
        data = event.data.model_copy(update={"customer": customer})
        event = event.model_copy(update={"data": data})
    return key, event.to_json()


#: What the edges publish through: an event → its (Kafka key, value), number sealed.
Sealer = Callable[[CanonicalEvent], tuple[bytes, bytes]]


def sealer(settings: Settings) -> Sealer:
    return partial(sealed_record, keys=data_keys(settings), region=settings.default_country)
