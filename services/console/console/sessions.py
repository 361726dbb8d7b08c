"""Console sign-in sessions: who is signed in, with which token, and their CSRF token.

The console calls the admin and audit APIs with the operator's own token, so it must keep the
token for the session, but never in clear where it is stored:

- the cookie holds `<session id>.<session key>`, both random;
- Redis holds, under SHA-256(session id), the role and the token sealed with AES-256-GCM
  under the session key (the session id as associated data).

Redis alone opens no token, and a cookie is useless once its Redis entry expires or is
deleted (sign-out). The CSRF token is an HMAC of the session id under the session key:
derived, never stored, different for every session.

`Sealed`, `new_session`, `open_session` and `csrf_token` are pure; `SessionStore` is the
Redis adapter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.asyncio import Redis

from bridge.access import ROLES, Role

COOKIE = "console_session"
_PREFIX = "console:session:"
_NONCE = 12


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Cookie:
    """The cookie's two halves: the session id (names the Redis entry) and the key."""

    session_id: str
    key: bytes

    @property
    def value(self) -> str:
        return f"{self.session_id}.{_b64(self.key)}"

    @property
    def storage_key(self) -> str:
        # Hashed: whoever reads Redis's key names cannot forge a cookie from them.
        return _PREFIX + hashlib.sha256(self.session_id.encode()).hexdigest()

    @classmethod
    def parse(cls, value: str | None) -> Cookie | None:
        session_id, sep, key = (value or "").partition(".")
        if not sep or not session_id.isascii() or len(session_id) > 64:
            return None
        try:
            raw = _unb64(key)
        except (binascii.Error, ValueError):
            return None
        return cls(session_id, raw) if len(raw) == 32 else None


@dataclass(frozen=True)
class Session:
    """A signed-in operator, as a request sees them."""

    cookie: Cookie
    role: Role
    token: str

    @property
    def csrf(self) -> str:
        return csrf_token(self.cookie)

    @property
    def investigator(self) -> bool:
        return self.role in ("support", "engineering")


def csrf_token(cookie: Cookie) -> str:
    return hmac.new(cookie.key, b"csrf:" + cookie.session_id.encode(), "sha256").hexdigest()


def csrf_ok(session: Session, presented: str | None) -> bool:
    return hmac.compare_digest(session.csrf.encode(), (presented or "").encode())


def new_session(token: str) -> tuple[Cookie, bytes]:
    """A fresh cookie and the token sealed under its key (what Redis keeps)."""
    cookie = Cookie(secrets.token_urlsafe(24), AESGCM.generate_key(256))
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(cookie.key).encrypt(nonce, token.encode(), cookie.session_id.encode())
    return cookie, nonce + sealed


def open_session(cookie: Cookie, fields: dict[bytes, bytes]) -> Session | None:
    """The session from its Redis fields, or None when they are missing or do not open."""
    stored, sealed = fields.get(b"role", b"").decode(), fields.get(b"token", b"")
    role = next((r for r in ROLES if r == stored), None)
    if role is None or len(sealed) <= _NONCE:
        return None
    try:
        token = AESGCM(cookie.key).decrypt(
            sealed[:_NONCE], sealed[_NONCE:], cookie.session_id.encode()
        )
    except InvalidTag:
        return None
    return Session(cookie, role, token.decode())


class SessionStore:
    """Sessions in Redis, each expiring `ttl_seconds` after sign-in."""

    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self._redis = redis
        self.ttl_seconds = ttl_seconds

    async def create(self, role: Role, token: str) -> Cookie:
        cookie, sealed = new_session(token)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(cookie.storage_key, mapping={"role": role, "token": sealed})
            pipe.expire(cookie.storage_key, self.ttl_seconds)
            await pipe.execute()
        return cookie

    async def load(self, raw_cookie: str | None) -> Session | None:
        cookie = Cookie.parse(raw_cookie)
        if cookie is None:
            return None
        fields: dict[bytes, bytes] = await self._redis.hgetall(cookie.storage_key)  # type: ignore[assignment]
        return open_session(cookie, fields) if fields else None

    async def delete(self, session: Session) -> None:
        await self._redis.delete(session.cookie.storage_key)

    async def flash(self, session: Session, message: str) -> None:
        """A message for the next page this session shows (after a redirect)."""
        await self._redis.hset(session.cookie.storage_key, "flash", message)

    async def take_flash(self, session: Session) -> str | None:
        key = session.cookie.storage_key
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(key, "flash")
            pipe.hdel(key, "flash")
            message, _ = await pipe.execute()
        return message.decode() if message else None
