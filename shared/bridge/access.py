"""Who may read what: bearer tokens with a role. No I/O, no framework.

- `support` and `engineering` investigate: a transaction's story, dead letters, retries.
  They never see a clear number (the last four digits at most). Erasure is `engineering` only.
- `analyst` sees aggregates only (counts, rates), never one customer's story.

`API_TOKENS` holds `role:token` pairs; `ADMIN_API_TOKENS` (plain tokens, from before roles)
act as `engineering`. Only SHA-256 hashes of the tokens are kept in memory, and a presented
token's hash is compared with every known hash in constant time.

`refusal` turns a request's `Authorization` header into the answer to refuse it with (or
None; its `body` is problem details), and `shown_event` is a stored event as an
investigator may see it, so every API (and the console) decides and masks the same way.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from . import problems
from .config import Settings
from .logs import mask_text
from .protect import DataKeys, SealError, is_sealed, last_four

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
    # surrogatepass: header bytes that are not UTF-8 reach us as surrogates; they hash (and
    # match nothing) instead of raising.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _bearer(authorization: str | None) -> str | None:
    """The token of `Bearer <token>`, or None when the header is missing or another scheme."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


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
        token = _bearer(authorization)
        if token is None:
            return None
        presented = _digest(token)
        found: Role | None = None
        for known, role in self.hashes:  # every entry, so the time does not tell which matched
            if hmac.compare_digest(presented, known):
                found = role
        return found


@dataclass(frozen=True)
class Refusal:
    """Why a request may not go on, as the HTTP answer to give."""

    status: int
    message: str

    @property
    def headers(self) -> dict[str, str]:
        # RFC 6750: a 401 names the scheme to authenticate with.
        return {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}

    @property
    def body(self) -> dict[str, Any]:
        """The answer's problem details (bridge.problems)."""
        kind = {401: problems.UNAUTHENTICATED, 403: problems.FORBIDDEN}
        return problems.problem(
            kind.get(self.status, problems.API_DISABLED), self.status, self.message
        )


def refusal(
    tokens: Tokens, authorization: str | None, allowed: frozenset[Role], disabled: str
) -> Refusal | None:
    """None when the caller may go on; otherwise 503 `disabled` (no token configured at all:
    the API is off), 401 (no token, or an unknown one) or 403 (a role not in `allowed`)."""
    if not tokens.configured:
        return Refusal(503, disabled)
    role = tokens.role_of(authorization)
    if role is None:
        given = _bearer(authorization) is not None
        return Refusal(401, "invalid bearer token" if given else "missing bearer token")
    if role not in allowed:
        needed = " or ".join(r for r in ROLES if r in allowed)
        hint = " (analysts see aggregates only: the /stats endpoints)" if role == "analyst" else ""
        return Refusal(403, f"the {role} role may not do this; it needs {needed}{hint}")
    return None


#: What is shown of a number that cannot be opened here.
SEALED = "sealed"


def shown_phone(value: str, keys: DataKeys | None) -> str:
    """A stored number, sealed or clear, as people may see it: its last four digits, or
    SEALED when it cannot be opened (no keys here, a key no longer listed, damaged)."""
    if is_sealed(value):
        if keys is None:
            return SEALED
        try:
            value = keys.open(value, "phone")
        except SealError:
            return SEALED
    return last_four(value) or "•••"


def shown_event(payload: Any, keys: DataKeys | None) -> Any:
    """A stored canonical event (a dead letter's payload) as investigators may see it:
    `data.customer.phone` masked. A record kept as raw text (it was not an event) has the
    numbers in it masked as logs mask them. Anything else is returned as it is."""
    if not isinstance(payload, dict):
        return payload
    if isinstance(payload.get("raw"), str):
        return {**payload, "raw": mask_text(payload["raw"])}
    data: dict[str, Any] = payload["data"] if isinstance(payload.get("data"), dict) else {}
    customer = data.get("customer")
    if not isinstance(customer, dict) or customer.get("phone") is None:
        return payload
    shown = {**customer, "phone": shown_phone(str(customer["phone"]), keys)}
    return {**payload, "data": {**data, "customer": shown}}
