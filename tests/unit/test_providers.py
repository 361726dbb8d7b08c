"""Signature verification of the six webhook adapters beyond Moniepoint.

Every verifier must pass the independent contract vectors, reject a body with one byte
changed, a missing signature and a wrong secret, and accept either secret of a rotation pair.
Parsing is covered in test_provider_parsing.py; Flutterwave's confirm in
test_flutterwave_confirm.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.config import Settings
from bridge.signing import SignatureError, js_stringify, sign, standard_webhooks_key
from ingest.providers import PROVIDERS
from ingest.providers.base import WebhookRequest
from ingest.providers.flutterwave import Flutterwave
from ingest.providers.generic import Generic, SignatureScheme
from ingest.providers.openmarket import OpenMarket
from ingest.providers.paystack import Paystack
from ingest.providers.wasaapay import WasaaPay
from tests.provider_tools import ADAPTERS

VECTORS_PATH = Path(__file__).parents[1] / "fixtures/contracts/signature-vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text())["vectors"]

#: the headers that carry a signature (WasaaPay's is a body field)
SIGNATURE_HEADERS = {
    "monnify-signature",
    "x-paystack-signature",
    "verif-hash",
    "flutterwave-signature",
    "opm-signature",
    "webhook-signature",
}
#: a secret of the right shape that is not the vector's
WRONG_SECRET = {"generic": "whsec_" + "B" * 43 + "="}

GENERIC_NOW = 1763805600


def vector_cases() -> list[Any]:
    cases = []
    for vector in VECTORS:
        provider = vector["provider"]
        if provider not in ADAPTERS:
            continue
        variant = ",".join(sorted(vector["headers"])) or "body-field"
        cases.append(pytest.param(vector, id=f"{provider}[{variant}]"))
    return cases


def signed_time(body: str) -> float:
    """WasaaPay's signed `timestamp` (ISO 8601) in Unix seconds: the request arrives then."""
    return datetime.fromisoformat(json.loads(body)["timestamp"]).timestamp()


def vector_request(vector: dict[str, Any], body: str | None = None) -> WebhookRequest:
    headers = {name.lower(): value for name, value in vector["headers"].items()}
    now = 1_800_000_000.0
    if vector["provider"] == "generic":
        now = GENERIC_NOW
    elif vector["provider"] == "wasaapay":
        now = signed_time(vector["body"])
    return WebhookRequest(
        body=(vector["body"] if body is None else body).encode(), headers=headers, now=now
    )


def tampered(body: str) -> str:
    """One byte of content changed (a whitespace change does not alter what WasaaPay and
    Open Market sign, since they sign the re-serialised payload)."""
    assert "example.com" in body
    return body.replace("example.com", "exbmple.com", 1)


def is_verif_hash(vector: dict[str, Any]) -> bool:
    return "verif-hash" in vector["headers"]


# --- the contract vectors ---------------------------------------------------------------


def test_every_adapter_has_a_contract_vector() -> None:
    assert {v["provider"] for v in VECTORS} >= set(ADAPTERS)


@pytest.mark.parametrize("vector", vector_cases())
def test_contract_vector_is_accepted(vector: dict[str, Any]) -> None:
    ADAPTERS[vector["provider"]].verify(vector_request(vector), [vector["secret"]])


@pytest.mark.parametrize("vector", vector_cases())
def test_contract_vector_with_one_byte_changed_is_rejected(vector: dict[str, Any]) -> None:
    adapter = ADAPTERS[vector["provider"]]
    request = vector_request(vector, tampered(vector["body"]))
    if is_verif_hash(vector):
        # verif-hash is the shared secret itself and does not bind the body: Flutterwave
        # charges are confirmed through its API instead (test_flutterwave_confirm.py).
        adapter.verify(request, [vector["secret"]])
        return
    with pytest.raises(SignatureError):
        adapter.verify(request, [vector["secret"]])


@pytest.mark.parametrize("vector", vector_cases())
def test_contract_vector_without_signature_is_rejected(vector: dict[str, Any]) -> None:
    adapter = ADAPTERS[vector["provider"]]
    if vector["provider"] == "wasaapay":
        payload = json.loads(vector["body"])
        del payload["signature"]
        request = vector_request(vector, json.dumps(payload))
    else:
        request = WebhookRequest(
            body=vector["body"].encode(),
            headers={
                k.lower(): v
                for k, v in vector["headers"].items()
                if k.lower() not in SIGNATURE_HEADERS
            },
            now=GENERIC_NOW,
        )
    with pytest.raises(SignatureError, match="missing"):
        adapter.verify(request, [vector["secret"]])


@pytest.mark.parametrize("vector", vector_cases())
def test_contract_vector_with_wrong_secret_is_rejected(vector: dict[str, Any]) -> None:
    adapter = ADAPTERS[vector["provider"]]
    wrong = WRONG_SECRET.get(vector["provider"], "not-the-secret")
    with pytest.raises(SignatureError):
        adapter.verify(vector_request(vector), [wrong])


@pytest.mark.parametrize("vector", vector_cases())
def test_contract_vector_during_rotation_is_accepted(vector: dict[str, Any]) -> None:
    adapter = ADAPTERS[vector["provider"]]
    other = WRONG_SECRET.get(vector["provider"], "the-other-secret")
    adapter.verify(vector_request(vector), [other, vector["secret"]])
    adapter.verify(vector_request(vector), [vector["secret"], other])


@pytest.mark.parametrize("vector", vector_cases())
def test_no_configured_secret_rejects(vector: dict[str, Any]) -> None:
    with pytest.raises(SignatureError):
        ADAPTERS[vector["provider"]].verify(vector_request(vector), [])


# --- signing like each sender, for rotation and scheme tests -----------------------------

NOW = 1_769_000_000


def sign_monnify(payload: dict[str, Any], secret: str) -> WebhookRequest:
    body = json.dumps(payload).encode()
    return WebhookRequest(body, {"monnify-signature": sign(secret, body, "sha512")}, NOW)


def sign_paystack(payload: dict[str, Any], secret: str) -> WebhookRequest:
    body = json.dumps(payload).encode()
    return WebhookRequest(body, {"x-paystack-signature": sign(secret, body, "sha512")}, NOW)


def sign_flutterwave(payload: dict[str, Any], secret: str) -> WebhookRequest:
    body = json.dumps(payload).encode()
    signature = sign(secret, body, "sha256", "base64")
    return WebhookRequest(body, {"flutterwave-signature": signature}, NOW)


def sign_flutterwave_v3(payload: dict[str, Any], secret: str) -> WebhookRequest:
    return WebhookRequest(json.dumps(payload).encode(), {"verif-hash": secret}, NOW)


def wasaapay_body(payload: dict[str, Any], secret: str) -> str:
    unsigned = {k: v for k, v in payload.items() if k != "signature"}
    signature = "sha256=" + sign(secret, js_stringify(unsigned).encode())
    return json.dumps({**unsigned, "signature": signature}, indent=2, ensure_ascii=False)


def sign_wasaapay(payload: dict[str, Any], secret: str) -> WebhookRequest:
    body = wasaapay_body(payload, secret)
    return WebhookRequest(body.encode(), {}, signed_time(body))


def sign_openmarket(payload: dict[str, Any], secret: str) -> WebhookRequest:
    body = json.dumps(payload, indent=2).encode()  # sent pretty, signed compact
    return WebhookRequest(
        body, {"opm-signature": sign(secret, js_stringify(payload).encode())}, NOW
    )


def sign_standard_webhook(payload: dict[str, Any], secret: str) -> WebhookRequest:
    body = json.dumps(payload).encode()
    msg_id = "msg_2rotation"
    message = f"{msg_id}.{NOW}.".encode() + body
    signature = "v1," + sign(standard_webhooks_key(secret), message, "sha256", "base64")
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(NOW), "webhook-signature": signature}
    return WebhookRequest(body, headers, NOW)


Signer = Callable[[dict[str, Any], str], WebhookRequest]
OLD_NEW = {
    "default": ("old-secret-2025", "new-secret-2026"),
    "generic": (
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    ),
}
SIGNERS: list[tuple[str, Signer]] = [
    ("monnify", sign_monnify),
    ("paystack", sign_paystack),
    ("flutterwave", sign_flutterwave),
    ("flutterwave", sign_flutterwave_v3),
    ("wasaapay", sign_wasaapay),
    ("openmarket", sign_openmarket),
    ("generic", sign_standard_webhook),
]
SAMPLE = {
    "event": "payment.success",
    "timestamp": "2026-01-21T12:00:00Z",
    "data": {"amount": 2000.0, "currency": "NGN", "customer": {"email": "ọlá@example.com"}},
}


@pytest.mark.parametrize(
    ("provider", "signer"), SIGNERS, ids=[f"{p}-{s.__name__}" for p, s in SIGNERS]
)
@pytest.mark.parametrize("which", [0, 1], ids=["signed-with-old", "signed-with-new"])
def test_rotation_accepts_either_secret(provider: str, signer: Signer, which: int) -> None:
    old, new = OLD_NEW.get(provider, OLD_NEW["default"])
    request = signer(SAMPLE, (old, new)[which])
    ADAPTERS[provider].verify(request, [old, new])
    with pytest.raises(SignatureError):
        ADAPTERS[provider].verify(request, [(new, old)[which]])


# --- provider specifics -------------------------------------------------------------------


def test_bad_signature_statuses() -> None:
    assert {name: p.bad_signature_status for name, p in ADAPTERS.items()} == {
        "monnify": 401,
        "paystack": 401,
        "flutterwave": 401,
        "wasaapay": 401,
        "openmarket": 400,
        "generic": 401,
    }


def test_registry_names_and_secret_settings() -> None:
    assert set(PROVIDERS) == {"moniepoint", *ADAPTERS}
    for name, provider in PROVIDERS.items():
        assert provider.name == name
        assert provider.secrets_setting in Settings.model_fields


def test_secret_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYSTACK_SECRET_KEYS", "sk_test_old, sk_test_new")
    monkeypatch.setenv("GENERIC_WEBHOOK_SECRETS", "")
    monkeypatch.setenv("MONNIFY_CLIENT_SECRETS", "only_one")
    settings = Settings()
    assert settings.paystack_secret_keys == ["sk_test_old", "sk_test_new"]
    assert settings.generic_webhook_secrets == []
    assert settings.monnify_client_secrets == ["only_one"]


@pytest.mark.parametrize("provider", ["monnify", "paystack"])
def test_sha512_hex_is_case_insensitive_and_rejects_sha256(provider: str) -> None:
    vector = next(v for v in VECTORS if v["provider"] == provider)
    header, value = next(iter(vector["headers"].items()))
    upper = WebhookRequest(vector["body"].encode(), {header.lower(): value.upper()}, NOW)
    ADAPTERS[provider].verify(upper, [vector["secret"]])
    sha256 = sign(vector["secret"], vector["body"].encode(), "sha256")
    with pytest.raises(SignatureError):
        ADAPTERS[provider].verify(
            WebhookRequest(vector["body"].encode(), {header.lower(): sha256}, NOW),
            [vector["secret"]],
        )


def test_paystack_rejects_a_whitespace_change_in_the_raw_body() -> None:
    vector = next(v for v in VECTORS if v["provider"] == "paystack")
    request = vector_request(vector, vector["body"].replace(", ", ",", 1))
    with pytest.raises(SignatureError):
        Paystack().verify(request, [vector["secret"]])


def test_flutterwave_signature_binds_the_body_and_either_header_suffices() -> None:
    body = json.dumps(SAMPLE).encode()
    good = sign("flw_hash", body, "sha256", "base64")
    Flutterwave().verify(WebhookRequest(body, {"flutterwave-signature": good}, NOW), ["flw_hash"])
    # A wrong HMAC is rejected on its own…
    bad = sign("flw_hash", body + b" ", "sha256", "base64")
    with pytest.raises(SignatureError, match="flutterwave-signature"):
        Flutterwave().verify(
            WebhookRequest(body, {"flutterwave-signature": bad}, NOW), ["flw_hash"]
        )
    # …and "accept either": a correct verif-hash alongside still authenticates the sender.
    both = {"flutterwave-signature": bad, "verif-hash": "flw_hash"}
    Flutterwave().verify(WebhookRequest(body, both, NOW), ["flw_hash"])
    with pytest.raises(SignatureError, match="verif-hash"):
        Flutterwave().verify(WebhookRequest(body, {"verif-hash": "flw_hash "}, NOW), ["flw_hash"])


def test_wasaapay_signs_the_re_serialised_payload() -> None:
    vector = next(v for v in VECTORS if v["provider"] == "wasaapay" and "2000.0" in v["body"])
    # The raw body says 2000.0; JSON.stringify of the parsed value says 2000.
    WasaaPay().verify(vector_request(vector), [vector["secret"]])
    compact = json.dumps(json.loads(vector["body"]), separators=(",", ":"))
    WasaaPay().verify(vector_request(vector, compact), [vector["secret"]])


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("not json", "not JSON"),
        ('["sha256=00"]', "not a JSON object"),
        ('{"event": "deposit.completed", "signature": 12}', "not a string"),
        ('{"event": "deposit.completed", "signature": "sha1=00"}', "does not start with"),
    ],
)
def test_wasaapay_rejects_malformed_signature_fields(body: str, match: str) -> None:
    with pytest.raises(SignatureError, match=match):
        WasaaPay().verify(WebhookRequest(body.encode(), {}, NOW), ["wasaapay_secret_1"])


WASAAPAY_SECRET = "wasaapay_secret_1"
WASAAPAY_DEPOSIT = {
    "event": "deposit.completed",
    "timestamp": "2026-01-22T10:30:45Z",
    "data": {"transactionId": "WSP-9", "amount": 10, "currency": "KES", "customer": {}},
}


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_wasaapay_timestamp_inside_the_window_is_accepted(offset: int) -> None:
    request = sign_wasaapay(WASAAPAY_DEPOSIT, WASAAPAY_SECRET)
    late = WebhookRequest(request.body, {}, request.now + offset)
    WasaaPay().verify(late, [WASAAPAY_SECRET])


@pytest.mark.parametrize("offset", [-301, 301, 86_400])
def test_wasaapay_replayed_outside_the_window_is_rejected(offset: int) -> None:
    # Issue 7 item 6: the signed timestamp is checked, 5 minutes either way, like a signature.
    request = sign_wasaapay(WASAAPAY_DEPOSIT, WASAAPAY_SECRET)
    replayed = WebhookRequest(request.body, {}, request.now + offset)
    with pytest.raises(SignatureError, match="300 s from our clock"):
        WasaaPay().verify(replayed, [WASAAPAY_SECRET])


@pytest.mark.parametrize("timestamp", ["absent", None, "", "yesterday", 1e300, ["2026-01-22"]])
def test_wasaapay_without_a_readable_signed_timestamp_is_rejected(timestamp: Any) -> None:
    payload = {k: v for k, v in WASAAPAY_DEPOSIT.items() if k != "timestamp"}
    if timestamp != "absent":
        payload["timestamp"] = timestamp
    body = wasaapay_body(payload, WASAAPAY_SECRET).encode()
    with pytest.raises(SignatureError, match="timestamp"):
        WasaaPay().verify(WebhookRequest(body, {}, NOW), [WASAAPAY_SECRET])


def test_wasaapay_timestamp_is_signed() -> None:
    request = sign_wasaapay(WASAAPAY_DEPOSIT, WASAAPAY_SECRET)
    moved = request.body.replace(b"10:30:45", b"10:31:45")
    with pytest.raises(SignatureError, match="does not match"):
        WasaaPay().verify(WebhookRequest(moved, {}, request.now), [WASAAPAY_SECRET])


def test_openmarket_accepts_raw_bytes_signatures_too() -> None:
    # A sender that signs exactly the bytes it posts (here 5000.0, which JSON.stringify
    # would write 5000) is accepted on the raw-bytes attempt.
    body = b'{"transaction_id": "tr_1", "amount": 5000.0, "status": "completed"}'
    request = WebhookRequest(body, {"opm-signature": sign("opm_key", body)}, NOW)
    OpenMarket().verify(request, ["opm_key"])
    # The pretty contract vector is accepted through the JSON.stringify attempt.
    vector = next(v for v in VECTORS if v["provider"] == "openmarket")
    reformatted = json.dumps(json.loads(vector["body"]))
    OpenMarket().verify(vector_request(vector, reformatted), [vector["secret"]])


def test_openmarket_non_json_body_with_bad_signature() -> None:
    request = WebhookRequest(b"not json", {"opm-signature": "00" * 32}, NOW)
    with pytest.raises(SignatureError):
        OpenMarket().verify(request, ["opm_key"])


# --- Standard Webhooks: replay window -------------------------------------------------------


def generic_vector() -> dict[str, Any]:
    return next(v for v in VECTORS if v["provider"] == "generic")


@pytest.mark.parametrize("offset", [-299, 0, 299])
def test_standard_webhook_inside_the_window_is_accepted(offset: int) -> None:
    vector = generic_vector()
    request = WebhookRequest(
        vector["body"].encode(), vector_request(vector).headers, now=GENERIC_NOW + offset
    )
    Generic(SignatureScheme()).verify(request, [vector["secret"]])


@pytest.mark.parametrize("offset", [-301, 301, 86_400])
def test_standard_webhook_replayed_outside_the_window_is_rejected(offset: int) -> None:
    vector = generic_vector()
    request = WebhookRequest(
        vector["body"].encode(), vector_request(vector).headers, now=GENERIC_NOW + offset
    )
    with pytest.raises(SignatureError, match="timestamp"):
        Generic(SignatureScheme()).verify(request, [vector["secret"]])


def test_standard_webhook_tolerance_is_configurable() -> None:
    vector = generic_vector()
    request = WebhookRequest(
        vector["body"].encode(), vector_request(vector).headers, now=GENERIC_NOW + 61
    )
    with pytest.raises(SignatureError, match="timestamp"):
        Generic(SignatureScheme(tolerance_seconds=60)).verify(request, [vector["secret"]])


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_standard_webhook_missing_header_is_rejected(header: str) -> None:
    vector = generic_vector()
    headers = {k: v for k, v in vector_request(vector).headers.items() if k != header}
    request = WebhookRequest(vector["body"].encode(), headers, now=GENERIC_NOW)
    with pytest.raises(SignatureError, match="missing"):
        Generic(SignatureScheme()).verify(request, [vector["secret"]])


def test_standard_webhook_signature_binds_id_and_timestamp() -> None:
    vector = generic_vector()
    headers = dict(vector_request(vector).headers)
    for name, value in (("webhook-id", "msg_other"), ("webhook-timestamp", str(GENERIC_NOW + 1))):
        changed = WebhookRequest(vector["body"].encode(), {**headers, name: value}, GENERIC_NOW)
        with pytest.raises(SignatureError):
            Generic(SignatureScheme()).verify(changed, [vector["secret"]])


def test_standard_webhook_accepts_several_signatures_in_one_header() -> None:
    vector = generic_vector()
    headers = dict(vector_request(vector).headers)
    headers["webhook-signature"] = "v1,bm90LXRoaXMtb25l " + headers["webhook-signature"]
    request = WebhookRequest(vector["body"].encode(), headers, GENERIC_NOW)
    Generic(SignatureScheme()).verify(request, [vector["secret"]])


# --- Generic: configurable HMAC scheme --------------------------------------------------------

HMAC_SCHEMES = [
    SignatureScheme(scheme="hmac"),
    SignatureScheme(scheme="hmac", header="X-Hub-Signature-256", prefix="sha256="),
    SignatureScheme(scheme="hmac", header="X-Acme-Signature", algorithm="sha512"),
    SignatureScheme(scheme="hmac", header="x-sig", algorithm="sha512", encoding="base64"),
    SignatureScheme(
        scheme="hmac", header="x-sig", algorithm="sha256", encoding="base64", prefix="v1="
    ),
]


def hmac_request(scheme: SignatureScheme, secret: str, body: bytes) -> WebhookRequest:
    value = scheme.prefix + sign(secret, body, scheme.algorithm, scheme.encoding)
    return WebhookRequest(body, {scheme.header.lower(): value}, NOW)


@pytest.mark.parametrize("scheme", HMAC_SCHEMES, ids=lambda s: f"{s.algorithm}-{s.encoding}")
def test_generic_hmac_scheme(scheme: SignatureScheme) -> None:
    adapter = Generic(scheme)
    body = json.dumps(SAMPLE).encode()
    adapter.verify(hmac_request(scheme, "gen_new", body), ["gen_old", "gen_new"])
    adapter.verify(hmac_request(scheme, "gen_old", body), ["gen_old", "gen_new"])
    signed = hmac_request(scheme, "gen_new", body)
    with pytest.raises(SignatureError):
        adapter.verify(WebhookRequest(body[:-1] + b" ", signed.headers, NOW), ["gen_new"])
    with pytest.raises(SignatureError):
        adapter.verify(hmac_request(scheme, "gen_wrong", body), ["gen_old", "gen_new"])
    with pytest.raises(SignatureError, match="missing"):
        adapter.verify(WebhookRequest(body, {}, NOW), ["gen_new"])
    # The other algorithm or encoding does not pass for this one.
    other = SignatureScheme(
        scheme="hmac",
        header=scheme.header,
        algorithm="sha512" if scheme.algorithm == "sha256" else "sha256",
        encoding=scheme.encoding,
        prefix=scheme.prefix,
    )
    with pytest.raises(SignatureError):
        adapter.verify(hmac_request(other, "gen_new", body), ["gen_new"])


def test_generic_hmac_prefix_is_required() -> None:
    scheme = SignatureScheme(scheme="hmac", prefix="sha256=")
    body = b'{"event": "payment.success"}'
    bare = WebhookRequest(body, {"x-signature": sign("gen", body)}, NOW)
    with pytest.raises(SignatureError, match="does not start with"):
        Generic(scheme).verify(bare, ["gen"])


def test_generic_scheme_from_settings_normalises_and_validates() -> None:
    given: dict[str, Any] = {
        "scheme": "HMAC",
        "algorithm": "SHA512",
        "encoding": "Base64",
        "prefix": "sha512=",
    }
    settings = Settings(
        **{f"generic_signature_{name}": value for name, value in given.items()},
        generic_signature_header="X-Acme-Signature",
        generic_timestamp_tolerance_seconds=120,
    )
    assert SignatureScheme.from_settings(settings) == SignatureScheme(
        "hmac", "X-Acme-Signature", "sha512", "base64", "sha512=", tolerance_seconds=120
    )
    for field, value in (
        ("generic_signature_scheme", "jwt"),
        ("generic_signature_algorithm", "md5"),
        ("generic_signature_encoding", "base32"),
    ):
        with pytest.raises(ValueError, match=field):
            SignatureScheme.from_settings(Settings.model_validate({field: value}))
    with pytest.raises(ValueError, match="header"):
        SignatureScheme(scheme="hmac", header=" ")


def test_generic_default_scheme_is_read_from_settings_lazily(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []

    def fake_settings() -> Settings:
        calls.append(1)
        return Settings(generic_signature_scheme="hmac", generic_signature_header="x-gen-sig")

    monkeypatch.setattr("ingest.providers.generic.get_settings", fake_settings)
    adapter = Generic()
    assert calls == []
    body = b'{"event": "payment.success"}'
    adapter.verify(WebhookRequest(body, {"x-gen-sig": sign("gen", body)}, NOW), ["gen"])
    adapter.verify(WebhookRequest(body, {"x-gen-sig": sign("gen", body)}, NOW), ["gen"])
    assert calls == [1]
