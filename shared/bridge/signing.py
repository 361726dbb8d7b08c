"""HMAC signing and verification: one place, constant-time, rotation-aware.

Every verifier takes a *list* of secrets (any one may match, so secrets can rotate) and raises
`SignatureError` with a reason a person can act on; it never returns False silently.
"""

from __future__ import annotations

import base64
import hmac
import json
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

Algorithm = Literal["sha256", "sha512"]
Encoding = Literal["hex", "base64"]

SITETI_TOLERANCE_SECONDS = 300


class SignatureError(Exception):
    """The request is not authentic (bad, missing or stale signature)."""


def _key(secret: str | bytes) -> bytes:
    return secret if isinstance(secret, bytes) else secret.encode()


def digest(secret: str | bytes, message: bytes, algorithm: Algorithm = "sha256") -> bytes:
    return hmac.new(_key(secret), message, algorithm).digest()


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
            found |= hmac.compare_digest(expected.encode(), candidate.encode())
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
        found |= hmac.compare_digest(value.encode(), secret.encode())
    if not found:
        raise SignatureError(f"{header} does not match any configured secret")


def check_timestamp(timestamp: str | int | None, now: float | None, tolerance: int) -> int:
    """Parse a Unix-seconds timestamp and refuse it when outside `tolerance` of `now`."""
    if timestamp is None or str(timestamp).strip() == "":
        raise SignatureError("missing signature timestamp")
    try:
        ts = int(str(timestamp).strip())
    except ValueError as exc:
        raise SignatureError("signature timestamp is not a Unix time in seconds") from exc
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        raise SignatureError(f"signature timestamp is more than {tolerance} s from our clock")
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
    """Standard Webhooks secrets are `whsec_<base64>`; the key is the decoded base64."""
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
    keys = [standard_webhooks_key(s) for s in secrets]
    if not keys:
        raise SignatureError("no secret is configured to verify webhook-signature")
    message = f"{msg_id}.{ts}.".encode() + body
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


def js_stringify(value: Any) -> str:
    """`JSON.stringify(value)`: compact, key order kept, non-ASCII kept, 2000.0 written 2000."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _js_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        items = (
            f"{json.dumps(str(k), ensure_ascii=False)}:{js_stringify(v)}" for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(js_stringify(v) for v in value) + "]"
    raise TypeError(f"cannot serialise {type(value).__name__} like JSON.stringify")
