"""Property tests (hypothesis) of everything that parses outside input (issue 7).

For arbitrary JSON-ish bodies, bytes and headers, every adapter's `parse`, every verifier in
`bridge.signing`, `js_stringify`, and the file drop's and poller's row mapping end in one of
their documented outcomes and never in any other exception:

- parse: canonical events (which validate against the model and the published schema), a
  Handshake, Ignored, PayloadError (422) or orjson.JSONDecodeError (400);
- verify: nothing (authentic) or SignatureError (401/400);
- file drop: a Plan whose events validate, whose bad rows are reported, or a file error;
- poller: a canonical event or RowError per row.

Bodies are mostly fixtures with a few values replaced by arbitrary JSON, so the generated
input reaches the code behind the envelope rather than failing at the first check.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import signing
from bridge.events import CanonicalEvent
from bridge.signing import SignatureError
from ingest.providers import PROVIDERS
from ingest.providers.base import Handshake, Ignored, PayloadError, Provider, WebhookRequest
from ingest.providers.generic import Generic, SignatureScheme
from ingest.providers.moniepoint import Moniepoint
from ingest.providers.openapi import SIGNATURE_HEADERS
from ingest.sources import RowError
from ingest.sources.filedrop_reader import (
    FiledropConfig,
    FileFormatError,
    plan_file,
    read_csv,
    read_xml,
)
from ingest.sources.poller import map_row, prepare
from tests.unit.test_event_schemas import MONIEPOINT_PAYLOAD, errors, wire
from tests.unit.test_provider_parsing import ADAPTERS, FIXTURES

#: examples per property: enough to find the crashes issue 7 lists within seconds, small
#: enough that `make test` stays fast.
EXAMPLES = 200
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ALL_ADAPTERS: dict[str, Provider] = {**ADAPTERS, "moniepoint": Moniepoint()}
NOW = 1_769_000_000.0
SECRETS = {
    "moniepoint": ["mnp_secret"],
    "monnify": ["monnify_secret"],
    "paystack": ["sk_test_secret"],
    "flutterwave": ["flw_hash"],
    "wasaapay": ["wasaapay_secret"],
    "openmarket": ["opm_private_key"],
    "generic": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
}

# --- strategies ------------------------------------------------------------------------------

# Text a JSON body can carry (lone surrogates are a JSONDecodeError: covered by raw bytes).
json_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text
    # Values the adapters look for: dates, numbers as text, an over-long or controlled text.
    | st.sampled_from(
        [
            "0001-01-01T00:00:00+05:00",
            "2026-01-20T14:30:00Z",
            "9999-12-31T23:59:59",
            "1e999999",
            "-0",
            "NaN",
            "x\x00y",
            "+2348031234567",
            "a" * 300,
            "1" * 309,
        ]
    )
)
json_values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=4)
    ),
    max_leaves=12,
)


def deeply_nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value] if depth % 2 else {"a": value}
    return value


def fixture_payloads(provider: str) -> list[Any]:
    if provider == "moniepoint":
        handshake = {"event": "webhook.verification", "challenge": "c-1"}
        return [MONIEPOINT_PAYLOAD, handshake]
    return [json.loads(p.read_text()) for p in sorted((FIXTURES / provider).glob("*.json"))]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path in `node`, deepest first (hypothesis favours the first: the leaves)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))
    yield prefix


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    target = node
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return node


@st.composite
def mutated(draw: st.DrawFn, payloads: list[Any]) -> Any:
    """A fixture payload with up to three values (or the whole) replaced by arbitrary JSON."""
    payload = copy.deepcopy(draw(st.sampled_from(payloads)))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(list(_paths(payload))))
        payload = _replace(payload, path, draw(json_values))
    return payload


def bodies(provider: str) -> st.SearchStrategy[bytes]:
    payloads = fixture_payloads(provider)
    as_json = mutated(payloads).map(lambda p: json.dumps(p).encode())
    deep = st.integers(1, 1100).map(lambda d: json.dumps({"event": deeply_nested(d)}).encode())
    # Mostly mutated payloads, which reach the code behind the envelope.
    return st.one_of(as_json, as_json, as_json, st.binary(max_size=200), deep)


header_values = (
    st.text(max_size=40)
    | st.text("0123456789", min_size=1, max_size=400)
    | st.sampled_from(["t=" + "9" * 309 + ",v1=00", "v1,AAAA", "sha256=00", "²", "-1"])
)
headers = st.dictionaries(st.sampled_from(SIGNATURE_HEADERS), header_values, max_size=5)


# --- outcomes --------------------------------------------------------------------------------


def assert_documented_parse(call: Callable[[], Any]) -> None:
    try:
        result = call()
    except (PayloadError, orjson.JSONDecodeError):
        return
    if isinstance(result, Handshake):
        json.dumps(result.response)  # answered as JSON
        return
    if isinstance(result, Ignored):
        return
    assert isinstance(result, list) and result, result
    for event in result:
        assert_valid_event(event)


def assert_valid_event(event: CanonicalEvent) -> None:
    raw = event.to_json()
    assert CanonicalEvent.from_json(raw) == event
    assert errors(wire(event)) == []


def assert_documented_verify(call: Callable[[], Any]) -> None:
    try:
        call()
    except SignatureError:
        return


# --- adapters --------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", sorted(ALL_ADAPTERS))
def test_every_adapter_parse_ends_in_a_documented_outcome(provider: str) -> None:
    adapter = ALL_ADAPTERS[provider]

    @PROPERTY
    @given(body=bodies(provider))
    def check(body: bytes) -> None:
        assert_documented_parse(lambda: adapter.parse(WebhookRequest(body, {}, NOW)))

    check()


@pytest.mark.parametrize("provider", sorted(ALL_ADAPTERS))
def test_every_adapter_verify_raises_only_signature_errors(provider: str) -> None:
    adapter = ALL_ADAPTERS[provider]

    @PROPERTY
    @given(body=bodies(provider), headers=headers)
    def check(body: bytes, headers: dict[str, str]) -> None:
        request = WebhookRequest(body, headers, NOW)
        assert_documented_verify(lambda: adapter.verify(request, SECRETS[provider]))

    check()


def test_the_registry_is_what_the_properties_cover() -> None:
    assert set(ALL_ADAPTERS) == set(PROVIDERS)


def test_generic_hmac_scheme_verify_raises_only_signature_errors() -> None:
    adapter = Generic(SignatureScheme(scheme="hmac", header="x-signature", prefix="sha256="))

    @PROPERTY
    @given(body=st.binary(max_size=100), signature=header_values)
    def check(body: bytes, signature: str) -> None:
        request = WebhookRequest(body, {"x-signature": signature}, NOW)
        assert_documented_verify(lambda: adapter.verify(request, ["generic_secret"]))

    check()


# --- bridge.signing --------------------------------------------------------------------------

texts_or_none = st.none() | header_values


@PROPERTY
@given(
    message=st.binary(max_size=100),
    signature=texts_or_none,
    secrets=st.lists(st.text(max_size=20) | st.binary(max_size=20), max_size=3),
    algorithm=st.sampled_from(["sha256", "sha512"]),
    encoding=st.sampled_from(["hex", "base64"]),
    prefix=st.sampled_from(["", "sha256=", "v1="]),
)
def test_verify_hmac_raises_only_signature_errors(
    message: bytes,
    signature: str | None,
    secrets: list[Any],
    algorithm: Any,
    encoding: Any,
    prefix: str,
) -> None:
    assert_documented_verify(
        lambda: signing.verify_hmac(
            message, signature, secrets, algorithm=algorithm, encoding=encoding, prefix=prefix
        )
    )


@PROPERTY
@given(value=texts_or_none | st.text(), secrets=st.lists(st.text(max_size=20), max_size=3))
def test_verify_shared_secret_raises_only_signature_errors(
    value: str | None, secrets: list[str]
) -> None:
    assert_documented_verify(lambda: signing.verify_shared_secret(value, secrets, header="h"))


@PROPERTY
@given(
    timestamp=texts_or_none | st.integers(),
    now=st.none() | st.floats(allow_nan=True) | st.integers(-(10**20), 10**20),
    tolerance=st.integers(0, 10**6),
)
def test_check_timestamp_raises_only_signature_errors(
    timestamp: Any, now: float | None, tolerance: int
) -> None:
    try:
        ts = signing.check_timestamp(timestamp, now, tolerance)
    except SignatureError:
        return
    assert 0 <= ts < 10**12


@PROPERTY
@given(header=texts_or_none, body=st.binary(max_size=100), now=st.floats(0, 4e9))
def test_verify_siteti_webhook_raises_only_signature_errors(
    header: str | None, body: bytes, now: float
) -> None:
    assert_documented_verify(
        lambda: signing.verify_siteti_webhook(header, body, ["siteti_secret"], now=now)
    )


@PROPERTY
@given(
    timestamp=texts_or_none,
    signature=texts_or_none,
    method=st.text(max_size=8),
    path=st.text(max_size=40),
    body=st.binary(max_size=100),
)
def test_verify_siteti_request_raises_only_signature_errors(
    timestamp: str | None, signature: str | None, method: str, path: str, body: bytes
) -> None:
    assert_documented_verify(
        lambda: signing.verify_siteti_request(
            ["siteti_secret"],
            timestamp=timestamp,
            signature=signature,
            method=method,
            path_with_query=path,
            body=body,
            now=NOW,
        )
    )


@PROPERTY
@given(
    headers=st.dictionaries(
        st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature"]), header_values
    ),
    body=st.binary(max_size=100),
    secrets=st.lists(st.text(max_size=30), max_size=2)
    | st.just(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]),
)
def test_verify_standard_webhook_raises_only_signature_errors(
    headers: dict[str, str], body: bytes, secrets: list[str]
) -> None:
    assert_documented_verify(
        lambda: signing.verify_standard_webhook(headers, body, secrets, now=NOW)
    )


# JSON values as a parser gives them (integers JavaScript holds exactly), and deep nesting.
parsed_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@PROPERTY
@given(value=parsed_json | st.integers(1, 1100).map(deeply_nested))
def test_js_stringify_writes_the_same_json_value(value: Any) -> None:
    text = signing.js_stringify(value)
    assert json.loads(text) == value


@PROPERTY
@given(value=st.integers() | st.floats() | st.text())
def test_js_stringify_of_any_scalar_is_json(value: Any) -> None:
    # Beyond 2**53, JavaScript writes the nearest double; NaN and infinities are null.
    json.loads(signing.js_stringify(value))


# --- the file drop ---------------------------------------------------------------------------

COLUMNS = ["record_id", "tenant_account", "name", "status", "amount_due", "due_date", "occurred_at"]
cells = st.text(max_size=20) | st.sampled_from(
    ["0001-01-01T00:00:00", "2026-02-05", "overdue", "due_soon", "12,500.00", "-1", "1e13", ""]
)
rows = st.lists(st.lists(cells, min_size=len(COLUMNS), max_size=len(COLUMNS)), max_size=6)


def csv_bytes(table: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    writer.writerows(table)
    return out.getvalue().encode("utf-8", "surrogatepass")


def xml_bytes(table: list[list[str]]) -> bytes:
    records = "".join(
        "<record "
        + f"id={quoteattr(row[0])}>"
        + "".join(f"<{c}>{escape(v)}</{c}>" for c, v in zip(COLUMNS[1:], row[1:], strict=True))
        + "</record>"
        for row in table
    )
    return f"<records>{records}</records>".encode("utf-8", "surrogatepass")


def assert_documented_plan(name: str, data: bytes) -> None:
    plan = plan_file(name, data, hashlib.sha256(data).hexdigest(), FiledropConfig())
    if plan.error is not None:
        return
    assert plan.rows == len(plan.events) + len(plan.skipped) + len(plan.bad)
    for _, event in plan.events:
        assert_valid_event(event)


@PROPERTY
@given(data=st.binary(max_size=300))
def test_read_csv_and_read_xml_take_any_bytes(data: bytes) -> None:
    for read in (read_csv, read_xml):
        try:
            read(data)
        except FileFormatError:
            pass


@PROPERTY
@given(table=rows, fmt=st.sampled_from(["csv", "xml"]))
def test_a_file_of_arbitrary_rows_becomes_events_or_reported_rows(
    table: list[list[str]], fmt: str
) -> None:
    data = csv_bytes(table) if fmt == "csv" else xml_bytes(table)
    assert_documented_plan(f"rent.{fmt}", data)


@PROPERTY
@given(data=st.binary(max_size=300), fmt=st.sampled_from(["csv", "xml"]))
def test_a_file_of_arbitrary_bytes_never_crashes_the_plan(data: bytes, fmt: str) -> None:
    assert_documented_plan(f"export.{fmt}", data)


# --- the poller ------------------------------------------------------------------------------

column_values = (
    leaves
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.dates()
    | st.datetimes()
    | st.datetimes(timezones=st.just(UTC))
    | st.sampled_from([date(1, 1, 1), datetime.max, datetime.now(UTC) + timedelta(days=2)])
    | st.binary(max_size=10)
    | st.lists(st.decimals(allow_nan=False, places=2), max_size=3)
)
polled_rows = st.fixed_dictionaries(
    {
        "source_id": st.text(max_size=10) | st.integers() | st.none(),
        "event_type": st.sampled_from(["order.completed", "rent.overdue", "nope"]) | st.text(),
        "amount": column_values,
        "account_number": column_values,
    },
    optional={
        "email": column_values,
        "occurred_at": column_values,
        "currency": column_values,
        "description": column_values,
        "next_due_date": column_values,
        "transaction_reference": column_values,
        "carrier": column_values,
    },
)


@PROPERTY
@given(row=polled_rows)
def test_a_polled_row_becomes_an_event_or_a_row_error(row: dict[str, Any]) -> None:
    try:
        event = map_row(row, "dbpoll")
    except RowError:
        return
    assert_valid_event(event)


@PROPERTY
@given(batch=st.lists(polled_rows, max_size=5))
def test_a_batch_of_polled_rows_is_always_prepared(batch: list[dict[str, Any]]) -> None:
    candidates, skipped = prepare(batch, "dbpoll")
    assert len(candidates) + skipped == len(batch)
    for candidate in candidates:
        assert (candidate.event is None) != (candidate.error is None)
        assert candidate.error is None or "\x00" not in candidate.error
