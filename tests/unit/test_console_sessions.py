"""console.sessions: what Redis keeps of a sign-in (never the token in clear), the cookie,
and the CSRF token."""

from __future__ import annotations

from console.sessions import Cookie, Session, csrf_ok, csrf_token, new_session, open_session

TOKEN = "support-token-0123456789abcdef"


def stored(role: str = "support") -> tuple[Cookie, dict[bytes, bytes]]:
    cookie, sealed = new_session(TOKEN)
    return cookie, {b"role": role.encode(), b"token": sealed}


def test_redis_holds_neither_the_token_nor_the_cookie() -> None:
    cookie, fields = stored()
    assert TOKEN.encode() not in b"".join(fields.values())
    assert cookie.session_id not in cookie.storage_key  # hashed
    assert cookie.key not in fields[b"token"]


def test_the_cookie_opens_its_session() -> None:
    cookie, fields = stored()
    parsed = Cookie.parse(cookie.value)
    assert parsed == cookie
    session = open_session(parsed, fields)
    assert session == Session(cookie, "support", TOKEN)
    assert session.investigator


def test_another_cookie_opens_nothing() -> None:
    cookie, fields = stored()
    other, _ = stored()
    # Same session id, another key (a forged cookie): the sealed token does not open.
    assert open_session(Cookie(cookie.session_id, other.key), fields) is None
    # The sealed token of another session, moved under this id: bound to its own id.
    assert open_session(other, fields) is None


def test_unknown_role_or_damaged_fields_open_nothing() -> None:
    cookie, fields = stored(role="root")
    assert open_session(cookie, fields) is None
    assert open_session(cookie, {b"role": b"support", b"token": b"short"}) is None


def test_analysts_are_not_investigators() -> None:
    cookie, fields = stored(role="analyst")
    session = open_session(cookie, fields)
    assert session is not None and not session.investigator


def test_malformed_cookies_are_ignored() -> None:
    for raw in (None, "", "no-dot", "id.!!!", "id." + "A" * 10, "é.AAAA", "x" * 65 + ".AAAA"):
        assert Cookie.parse(raw) is None


def test_csrf_token_is_per_session_and_checked_in_constant_time() -> None:
    first, fields = stored()
    second, _ = stored()
    assert csrf_token(first) != csrf_token(second)
    session = open_session(first, fields)
    assert session is not None
    assert csrf_ok(session, csrf_token(first))
    assert not csrf_ok(session, csrf_token(second))
    assert not csrf_ok(session, None)
    assert not csrf_ok(session, "")
