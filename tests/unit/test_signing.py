"""bridge.signing against the independent vectors in tests/fixtures/contracts/signature-vectors.json
(a copy of the providers contract's signature vectors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge import signing
from bridge.signing import SignatureError

VECTORS_FILE = Path(__file__).parents[1] / "fixtures/contracts/signature-vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text())["vectors"]


def vector(provider: str) -> dict[str, Any]:
    return next(v for v in VECTORS if v["provider"] == provider)


def tamper(body: bytes) -> bytes:
    index = body.index(b"0")  # every vector body has a digit to change
    return body[:index] + b"1" + body[index + 1 :]


def test_siteti_request_vector() -> None:
    v = vector("siteti-request")
    kwargs = {
        "timestamp": v["headers"]["X-Siteti-Timestamp"],
        "signature": v["headers"]["X-Siteti-Signature"],
        "method": v["method"],
        "path_with_query": v["path"],
        "now": int(v["headers"]["X-Siteti-Timestamp"]),
    }
    body = v["body"].encode()
    signing.verify_siteti_request([v["secret"]], body=body, **kwargs)
    assert (
        signing.sign_siteti_request(v["secret"], kwargs["timestamp"], v["method"], v["path"], body)
        == kwargs["signature"]
    )
    with pytest.raises(SignatureError):
        signing.verify_siteti_request([v["secret"]], body=tamper(body), **kwargs)
    with pytest.raises(SignatureError, match="300"):
        signing.verify_siteti_request(
            [v["secret"]], body=body, **{**kwargs, "now": kwargs["now"] + 301}
        )


def test_siteti_webhook_vector_and_rotation() -> None:
    v = vector("siteti-webhook")
    header = v["headers"]["X-Siteti-Signature"]
    body = v["body"].encode()
    now = 1763805600
    signing.verify_siteti_webhook(header, body, [v["secret"]], now=now)
    signing.verify_siteti_webhook(header, body, ["old-secret", v["secret"]], now=now)
    rotated = signing.sign_siteti_webhook(["new-secret", v["secret"]], now, body)
    signing.verify_siteti_webhook(rotated, body, [v["secret"]], now=now)
    for bad_body, secrets, at in [
        (tamper(body), [v["secret"]], now),
        (body, ["wrong"], now),
        (body, [v["secret"]], now + 301),
    ]:
        with pytest.raises(SignatureError):
            signing.verify_siteti_webhook(header, bad_body, secrets, now=at)
    with pytest.raises(SignatureError, match="missing"):
        signing.verify_siteti_webhook(None, body, [v["secret"]], now=now)


def test_moniepoint_vector() -> None:
    v = vector("moniepoint")
    body = v["body"].encode()
    signature = v["headers"]["X-Moniepoint-Signature"]
    signing.verify_hmac(body, signature, [v["secret"]])
    signing.verify_hmac(body, signature.upper(), ["rotated-out", v["secret"]])
    with pytest.raises(SignatureError):
        signing.verify_hmac(tamper(body), signature, [v["secret"]])
    with pytest.raises(SignatureError, match="missing"):
        signing.verify_hmac(body, None, [v["secret"]])
    with pytest.raises(SignatureError, match="no secret"):
        signing.verify_hmac(body, signature, [])


def test_standard_webhooks_vector() -> None:
    v = vector("generic")
    body = v["body"].encode()
    now = int(v["headers"]["webhook-timestamp"])
    signing.verify_standard_webhook(v["headers"], body, [v["secret"]], now=now)
    with pytest.raises(SignatureError):
        signing.verify_standard_webhook(v["headers"], body, [v["secret"]], now=now + 301)
    with pytest.raises(SignatureError):
        signing.verify_standard_webhook(v["headers"], tamper(body), [v["secret"]], now=now)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (
            {"a": 2000.0, "b": 1500.5, "c": "Wanjikũ", "d": [1, None, True]},
            '{"a":2000,"b":1500.5,"c":"Wanjikũ","d":[1,null,true]}',
        ),
        ({"x": 1e-7, "y": 1e21, "z": -0.0}, '{"x":1e-7,"y":1e+21,"z":0}'),
        ({"q": 'say "hi"\n'}, '{"q":"say \\"hi\\"\\n"}'),
    ],
)
def test_js_stringify(value: Any, text: str) -> None:
    assert signing.js_stringify(value) == text


# --- issue 7: hostile input is a SignatureError, never a crash ---------------------------


@pytest.mark.parametrize(
    "timestamp",
    ["9" * 309, "9" * 5000, "\u0663\u0663", "1_000", "-1", "1e9", " ", "9" * 13],
    ids=["309-nines", "5000-nines", "arabic-digits", "underscore", "negative", "exponent",
         "blank", "13-digits"],
)  # fmt: skip
def test_a_hostile_timestamp_is_a_signature_error(timestamp: str) -> None:
    with pytest.raises(SignatureError, match="timestamp"):
        signing.check_timestamp(timestamp, 1_769_000_000, 300)
    header = f"t={timestamp},v1=00"
    with pytest.raises(SignatureError):
        signing.verify_siteti_webhook(header, b"{}", ["s"], now=1_769_000_000)
    with pytest.raises(SignatureError):
        signing.verify_standard_webhook(
            {"webhook-id": "m", "webhook-timestamp": timestamp, "webhook-signature": "v1,AA"},
            b"{}",
            ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            now=1_769_000_000,
        )


def test_js_stringify_takes_any_nesting_a_parser_accepts() -> None:
    nested: Any = []
    for _ in range(1000):
        nested = [nested]
    assert signing.js_stringify({"a": nested}) == '{"a":' + "[" * 1001 + "]" * 1001 + "}"


def test_js_stringify_writes_lone_surrogates_and_huge_integers_like_javascript() -> None:
    assert (
        signing.js_stringify(["\ud800", 2**60, 10**400]) == '["\\ud800",1152921504606846976,null]'
    )


def test_verifiers_take_text_no_utf_8_can_hold() -> None:
    with pytest.raises(SignatureError):
        signing.verify_hmac(b"{}", "\ud800", ["s"])
    with pytest.raises(SignatureError):
        signing.verify_shared_secret("\udfff", ["s"], header="verif-hash")


def test_a_standard_webhooks_secret_that_is_not_base64_is_a_signature_error() -> None:
    headers = {"webhook-id": "m", "webhook-timestamp": "1769000000", "webhook-signature": "v1,AA"}
    with pytest.raises(SignatureError, match="not a Standard Webhooks secret"):
        signing.verify_standard_webhook(headers, b"{}", ["whsec_\u00e9"], now=1_769_000_000)
