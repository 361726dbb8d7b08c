"""Who may read what: bearer tokens with a role. No I/O, no framework.

- `support` and `engineering` investigate: a transaction's story, dead letters, retries.
  They never see a clear number (the last four digits at most). Erasure is `engineering` only.
- `analyst` sees aggregates only (counts, rates), never one customer's story.

`API_TOKENS` holds `role:token` pairs; `ADMIN_API_TOKENS` (plain tokens, from before roles)
act as `engineering`. Only SHA-256 hashes of the tokens are kept in memory, and a presented
token's hash is compared with every known hash in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .config import Settings

Role = Literal["support", "engineering", "analyst"]
ROLES: tuple[Role, ...] = ("support", "engineering", "analyst")
#: Roles that may see one transaction's story or one dead letter.
INVESTIGATORS: frozenset[Role] = frozenset({"support", "engineering"})
#: Roles that may change things: retry, resolve, erase.
ENGINEERING: frozenset[Role] = frozenset({"engineering"})
EVERYONE: frozenset[Role] = frozenset(ROLES)


class TokenConfigError(ValueError):
    """API_TOKENS is malformed; the message says which entry and why (never the token)."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Tokens:
    hashes: tuple[tuple[bytes, Role], ...]

    @classmethod
    def parse(cls, api_tokens: Sequence[str], admin_tokens: Sequence[str] = ()) -> Tokens:
        hashes: list[tuple[bytes, Role]] = []
        for position, entry in enumerate(api_tokens, start=1):
            role, sep, token = entry.partition(":")
            if not sep or role not in ROLES:
                raise TokenConfigError(
                    f"API_TOKENS entry {position} must be role:token with role one of "
                    f"{', '.join(ROLES)}"
                )
            if len(token) < 16:
                raise TokenConfigError(f"API_TOKENS entry {position}: the token is under 16 chars")
            hashes.append((_digest(token), role))
        hashes.extend((_digest(token), "engineering") for token in admin_tokens if token)
        return cls(tuple(hashes))

    @classmethod
    def from_settings(cls, settings: Settings) -> Tokens:
        return cls.parse(settings.api_tokens, settings.admin_api_tokens)

    @property
    def configured(self) -> bool:
        return bool(self.hashes)

    def role_of(self, authorization: str | None) -> Role | None:
        """The role of `Authorization: Bearer <token>`, or None for a missing or unknown one."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = _digest(token.strip())
        found: Role | None = None
        for known, role in self.hashes:  # every entry, so the time does not tell which matched
            if hmac.compare_digest(presented, known):
                found = role
        return found
