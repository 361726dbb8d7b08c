"""HMAC signing and verification: one place, constant-time, rotation-aware.

Every verifier takes a *list* of secrets (any one may match, so secrets can rotate) and raises
`SignatureError` with a reason a person can act on; it never returns False silently, and for
any bytes and headers whatever it raises is a SignatureError (hostile input is an
unauthenticated request, never a crash).
"""

from __future__ import annotations

import base64
import hmac
import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

Algorithm = Literal["sha256", "sha512"]
Encoding = Literal["hex", "base64"]

SITETI_TOLERANCE_SECONDS = 300


class SignatureError(Exception):
    """The request is not authentic (bad, missing or stale signature)."""


def _bytes(text: str | bytes) -> bytes:
    # surrogatepass: a str that no UTF-8 text could hold still compares (and fails) as bytes
    # instead of raising UnicodeEncodeError.
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")


_key = _bytes


def digest(secret: str | bytes, message: bytes, algorithm: Algorithm = "sha256") -> bytes:
    # One-shot (OpenSSL's): a fraction of hmac.new's cost, on every webhook.
    return hmac.digest(_key(secret), message, algorithm)


def encode(raw: bytes, encoding: Encoding = "hex") -> str:
    return raw.hex() if encoding == "hex" else base64.b64encode(raw).decode()


def sign(
    secret: str | bytes,
    message: bytes,
    algorithm: Algorithm = "sha256",
    encoding: Encoding = "hex",
) -> str:
    return encode(digest(secret, message, algorithm), encoding)


def matches_any(
    candidates: Iterable[str],
    secrets: Iterable[str | bytes],
    message: bytes,
    algorithm: Algorithm = "sha256",
    encoding: Encoding = "hex",
) -> bool:
    """True when any candidate signature equals the HMAC of `message` under any secret.

    Every pair is compared in constant time; hex is compared case-insensitively.
    """
    wanted = [c.strip().lower() if encoding == "hex" else c.strip() for c in candidates if c]
    if not wanted:
        return False
    found = False
    for secret in secrets:
        expected = sign(secret, message, algorithm, encoding)
        for candidate in wanted:
            # No early exit: the time taken does not depend on which secret matched.
            found |= hmac.compare_digest(expected.encode(), _bytes(candidate))
    return found


def verify_hmac(
    message: bytes,
    signature: str | None,
    secrets: Iterable[str | bytes],
    *,
    algorithm: Algorithm = "sha256",
    encoding: Encoding = "hex",
    prefix: str = "",
    header: str = "signature",
) -> None:
    """Raise SignatureError unless `signature` (with optional prefix) signs `message`."""
    secrets = list(secrets)
    if not secrets:
        raise SignatureError(f"no secret is configured to verify {header}")
    if not signature:
        raise SignatureError(f"missing {header} header")
    value = signature.strip()
    if prefix:
        if not value.startswith(prefix):
            raise SignatureError(f"{header} does not start with {prefix!r}")
        value = value[len(prefix) :]
    if not matches_any([value], secrets, message, algorithm, encoding):
        raise SignatureError(f"{header} does not match the body")


def verify_shared_secret(value: str | None, secrets: Iterable[str], *, header: str) -> None:
    """A header that simply carries the shared secret (Flutterwave's v3 `verif-hash`)."""
    if not value:
        raise SignatureError(f"missing {header} header")
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(_bytes(value), _bytes(secret))
    if not found:
        raise SignatureError(f"{header} does not match any configured secret")


# At most 12 ASCII digits (until the year 33658): int() would also take "٣", "1_0" or 309
# digits, and the last overflows the float arithmetic of the age check.
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


def check_age(ts: float, now: float | None, tolerance: int) -> None:
    """Refuse a signed time `ts` (Unix seconds) that is more than `tolerance` from `now`:
    a replay of an old request, or one dated ahead."""
    current = time.time() if now is None else now
    if not abs(current - ts) <= tolerance:  # `not <=` also refuses NaN
        raise SignatureError(f"signature timestamp is more than {tolerance} s from our clock")


def check_timestamp(timestamp: str | int | None, now: float | None, tolerance: int) -> int:
    """Parse a Unix-seconds timestamp and refuse it when outside `tolerance` of `now`."""
    text = "" if timestamp is None else str(timestamp).strip()
    if not text:
        raise SignatureError("missing signature timestamp")
    if not _UNIX_SECONDS.fullmatch(text):
        raise SignatureError("signature timestamp is not a Unix time in seconds")
    ts = int(text)
    check_age(ts, now, tolerance)
    return ts


# --- Siteti request signing (bridge -> Siteti) -------------------------------------------


def siteti_request_message(
    timestamp: int | str, method: str, path_with_query: str, body: bytes
) -> bytes:
    return f"{timestamp}\n{method.upper()}\n{path_with_query}\n".encode() + body


def sign_siteti_request(
    secret: str, timestamp: int | str, method: str, path_with_query: str, body: bytes
) -> str:
    """The `X-Siteti-Signature` header value (`v1=<hex>`) for one request."""
    return "v1=" + sign(secret, siteti_request_message(timestamp, method, path_with_query, body))


def verify_siteti_request(
    secrets: Iterable[str],
    *,
    timestamp: str | None,
    signature: str | None,
    method: str,
    path_with_query: str,
    body: bytes,
    now: float | None = None,
    tolerance: int = SITETI_TOLERANCE_SECONDS,
) -> None:
    ts = check_timestamp(timestamp, now, tolerance)
    message = siteti_request_message(ts, method, path_with_query, body)
    verify_hmac(message, signature, secrets, prefix="v1=", header="X-Siteti-Signature")


# --- Siteti outbound webhooks (Siteti -> receipts) ---------------------------------------


def sign_siteti_webhook(secrets: Iterable[str], timestamp: int, body: bytes) -> str:
    """`t=<ts>,v1=<hex>[,v1=<hex>…]`: one v1 per active secret, as during a rotation."""
    parts = [f"t={timestamp}"]
    parts += [f"v1={sign(s, f'{timestamp}.'.encode() + body)}" for s in secrets]
    return ",".join(parts)


def verify_siteti_webhook(
    header: str | None,
    body: bytes,
    secrets: Iterable[str],
    *,
    now: float | None = None,
    tolerance: int = SITETI_TOLERANCE_SECONDS,
) -> None:
    if not header:
        raise SignatureError("missing X-Siteti-Signature header")
    timestamp: str | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            timestamp = value
        elif name == "v1":
            candidates.append(value)
    ts = check_timestamp(timestamp, now, tolerance)
    secrets = list(secrets)
    if not secrets:
        raise SignatureError("no secret is configured to verify X-Siteti-Signature")
    if not matches_any(candidates, secrets, f"{ts}.".encode() + body):
        raise SignatureError("X-Siteti-Signature has no v1 value that matches the body")


# --- Standard Webhooks (the generic source's default) ------------------------------------


def standard_webhooks_key(secret: str) -> bytes:
    """Standard Webhooks secrets are `whsec_<base64>`; the key is the decoded base64
    (ValueError when it is not base64: `Generic.check_configuration` refuses it at start)."""
    return base64.b64decode(secret.removeprefix("whsec_"))


def verify_standard_webhook(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Iterable[str],
    *,
    now: float | None = None,
    tolerance: int = SITETI_TOLERANCE_SECONDS,
) -> None:
    msg_id = headers.get("webhook-id")
    if not msg_id:
        raise SignatureError("missing webhook-id header")
    ts = check_timestamp(headers.get("webhook-timestamp"), now, tolerance)
    signature = headers.get("webhook-signature")
    if not signature:
        raise SignatureError("missing webhook-signature header")
    candidates = [s.partition(",")[2] for s in signature.split() if s.startswith("v1,")]
    try:
        keys = [standard_webhooks_key(s) for s in secrets]
    except ValueError as exc:  # binascii.Error is a ValueError
        raise SignatureError("a configured secret is not a Standard Webhooks secret") from exc
    if not keys:
        raise SignatureError("no secret is configured to verify webhook-signature")
    message = _bytes(f"{msg_id}.{ts}.") + body
    if not matches_any(candidates, keys, message, "sha256", "base64"):
        raise SignatureError("webhook-signature has no v1 value that matches the body")


# --- JavaScript's JSON.stringify, for senders that sign a re-serialised payload -----------


def _js_number(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return "null"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    # Python writes 1e-07 where JavaScript writes 1e-7.
    if "e" in text:
        mantissa, _, exponent = text.partition("e")
        sign_char = "-" if exponent.startswith("-") else "+"
        text = f"{mantissa}e{sign_char}{exponent.lstrip('+-').lstrip('0') or '0'}"
    return text


_SURROGATE = re.compile("[\ud800-\udfff]")


def _js_string(text: str) -> str:
    # JavaScript escapes a lone surrogate as \udXXX (well-formed JSON.stringify); json.dumps
    # would leave it raw, and no UTF-8 byte string can hold it.
    quoted = json.dumps(text, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


class _Literal(str):
    """Punctuation already written out, as opposed to a value still to serialise."""


def js_stringify(value: Any) -> str:
    """`JSON.stringify(value)`: compact, key order kept, non-ASCII kept, 2000.0 written 2000.

    Iterative, so any nesting a JSON parser accepts (orjson: 1024 levels) is written out
    rather than overflowing Python's stack. Raises TypeError for a non-JSON value."""
    out: list[str] = []
    todo: list[Any] = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, _Literal):
            out.append(item)
        elif isinstance(item, bool) or item is None:
            out.append(json.dumps(item))
        elif isinstance(item, int):
            # Beyond 2**53 JavaScript holds the nearest double, and writes that.
            out.append(str(item) if abs(item) <= 2**53 else _js_number(_as_float(item)))
        elif isinstance(item, float):
            out.append(_js_number(item))
        elif isinstance(item, str):
            out.append(_js_string(item))
        elif isinstance(item, Mapping):
            parts: list[Any] = [_Literal("{")]
            for index, (key, member) in enumerate(item.items()):
                comma = "," if index else ""
                parts += [_Literal(f"{comma}{_js_string(str(key))}:"), member]
            todo.extend(reversed([*parts, _Literal("}")]))
        elif isinstance(item, list | tuple):
            parts = [_Literal("[")]
            for index, member in enumerate(item):
                parts += [_Literal(","), member] if index else [member]
            todo.extend(reversed([*parts, _Literal("]")]))
        else:
            raise TypeError(f"cannot serialise {type(item).__name__} like JSON.stringify")
    return "".join(out)


def _as_float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:  # JavaScript: Infinity, written null
        return math.inf
