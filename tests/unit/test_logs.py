"""Issue 7: no log line carries a phone number, whatever its form and whichever way it is logged.

The log paths run in a child process with the services' own `configure_logging`, and the
assertions read what it really wrote to stdout.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import phonenumbers
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.logline import previous_processors
from bridge import logs
from bridge.logs import mask_text, redact

# (as written, national significant number): the NSN's digits must not survive but the last 3.
FORMS = [
    ("0803 123 4567", "8031234567"),
    ("0803-123-4567", "8031234567"),
    ("0803.123.4567", "8031234567"),
    ("(0803) 123-4567", "8031234567"),
    ("08031234567", "8031234567"),
    ("+234 803 123 4567", "8031234567"),
    ("+234-803-123-4567", "8031234567"),
    ("+234 (0) 803 123 4567", "8031234567"),
    ("+2348031234567", "8031234567"),
    ("2348031234567", "8031234567"),
    ("234 803 123 4567", "8031234567"),
    ("234-803-123-4567", "8031234567"),
    ("234.803.123.4567", "8031234567"),
    ("00234 803 123 4567", "8031234567"),
    ("803 123 4567", "8031234567"),
    ("+254 712 345 678", "712345678"),
    ("254712345678", "712345678"),
    ("0712 345 678", "712345678"),
    ("+233 24 123 4567", "241234567"),
    ("024 123 4567", "241234567"),
    ("+27 82 123 4567", "821234567"),
    ("082-123-4567", "821234567"),
    ("+1 (415) 555-2671", "4155552671"),
    ("+44 20 7946 0958", "2079460958"),
]

# Things a log line must keep readable.
NOT_PHONES = [
    "0123456789",  # NUBAN account number
    "8031234567",  # a 10-digit account number that happens to look like a mobile
    "moniepoint:MNP-20260120-889900",
    "MNP-3f2a1b4c5d6e",
    "3f2a1b4c-1234-5678-9abc-def012345678",
    "12345678-1234-1234-1234-123456789012",
    "2026-01-20T14:30:00Z",
    "2026-01-20T14:30:00.123456+00:00",
    "2026-01-20 14:30:00+00:00",
    "1737383400",  # epoch seconds
    "1737383400000",  # epoch milliseconds
    "125000.50",
    "1250000.50",
    "5000.0",
    "127.0.0.1:9092",
    "192.168.100.200",
    "ports 8000 8001 8002",
    "partition 3 offset 1234567",
    "offsets 12 13 14 15 16 17 18 19 20",
    "123456789012345678901234567890",  # uuid.int
    "test.bridge.events.0a1b2c3d4e5f",
]


def _squeezed(text: str) -> str:
    """The text with the separators a phone number is written with removed."""
    return re.sub(r"[\s().\-+]", "", text)


def assert_masked(output: str, nsn: str) -> None:
    assert nsn[:-3] not in _squeezed(output), output
    assert "***" + nsn[-3:] in output, output


@pytest.mark.parametrize(("written", "nsn"), FORMS)
def test_every_form_is_masked_in_text(written: str, nsn: str) -> None:
    for text in (written, f"sent to {written}.", f"to={written},x", f'"{written}"', f"[{written}]"):
        assert_masked(mask_text(text), nsn)


def test_two_numbers_side_by_side_are_both_masked() -> None:
    assert mask_text("0803 123 4567 0803 123 4568") == "***567 ***568"


@pytest.mark.parametrize("text", NOT_PHONES)
def test_references_amounts_times_ids_accounts_and_ports_stay_readable(text: str) -> None:
    assert mask_text(text) == text
    line = f"webhook_accepted account={text} amount=5000.0 at 2026-01-20T14:30:00Z"
    assert mask_text(line) == line


def test_redact_masks_sensitive_keys_and_nested_values() -> None:
    event = redact(
        None,
        "info",
        {
            "event": "x",
            "phone": "whatever",
            "api_key": "k",
            "detail": {"to": "+2348031234567", "contact": ["0803 123 4567", ("(0803) 123-4567",)]},
            "timestamp": "2026-01-20T14:30:00Z",
            "count": 1737383400000,
        },
    )
    assert event["phone"] == event["api_key"] == event["detail"]["to"] == "***"
    assert event["detail"]["contact"] == ["***567", ["***567"]]
    assert event["timestamp"] == "2026-01-20T14:30:00Z"
    assert event["count"] == 1737383400000  # epoch milliseconds: a number, as it was


# Every way a line is written: structlog (event, kwarg, nested, %s args, log.exception) and the
# standard library (a library's logger, %s args, an exception as argument, exc_info).
_EMITTER = textwrap.dedent(
    """
    import json, logging, sys
    from bridge.logs import configure_logging, get_logger

    configure_logging("test", "INFO")
    log = get_logger("test")
    lib = logging.getLogger("aiokafka")
    for number in json.loads(sys.argv[1]):
        log.info(f"sent to {number}")
        log.info("sent", recipient=number)
        log.info("sent", detail={"contact": {"numbers": [number, {"alt": number}]}})
        log.info("sent to %s", number)
        try:
            raise ValueError(f"bad number {number}")
        except ValueError:
            log.exception("send_failed")
        lib.warning(f"connection to {number} lost")
        lib.warning("connection to %s lost", number)
        lib.error("failed: %s", ValueError(number))
        try:
            raise ConnectionError(f"peer {number} reset")
        except ConnectionError:
            logging.getLogger("asyncpg").exception("pool error")
            lib.warning("retrying", exc_info=True)
    # A library that replaces the root handler with its own stays masked: faust's.
    from mode.utils.logging import ExtensionFormatter

    plain = logging.StreamHandler(sys.stdout)
    plain.setFormatter(ExtensionFormatter(stream=sys.stdout, fmt="PLAIN %(message)s"))
    logging.getLogger().handlers[:] = [plain]
    for number in json.loads(sys.argv[1]):
        lib.warning("connection to %s lost", number)
        try:
            raise ConnectionError(f"peer {number} reset")
        except ConnectionError:
            lib.exception("pool error")
    """
)
_STRUCTLOG_LINES, _STDLIB_LINES = 5, 5


def test_a_phone_number_held_as_an_integer_is_masked() -> None:
    event = redact(None, "info", {"event": "x", "payer": 2348031234567, "account": 8031234567})
    assert event["payer"] == "***567"
    # Judged as its text would be: ten bare digits are a NUBAN account number.
    assert event["account"] == 8031234567


def test_an_integer_beyond_64_bits_is_written_not_refused() -> None:
    logs._service = "svc"
    try:
        line = logs._line(None, "info", {"event": "x", "id": 2**100, "big": -(2**70)})
    finally:
        logs._service = None
    written = orjson.loads(line)
    assert written["id"] == str(2**100) and written["big"] == str(-(2**70))


@given(st.integers())
def test_any_integer_renders_and_no_phone_digits_survive(value: int) -> None:
    line = logs._line(None, "info", {"event": "x", "value": value})
    shown = orjson.loads(line)["value"]
    assert shown == value or (isinstance(shown, str) and (shown == str(value) or "***" in shown))
    if "***" in str(shown):
        assert str(abs(value))[:-3] not in str(shown)


def test_every_log_path_masks_every_form() -> None:
    numbers = [written for written, _ in FORMS]
    run = subprocess.run(
        [sys.executable, "-c", _EMITTER, json.dumps(numbers)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert run.stderr == ""
    lines = run.stdout.splitlines()
    json_lines = [line for line in lines if line.startswith("{")]
    assert len(json_lines) == len(FORMS) * (_STRUCTLOG_LINES + _STDLIB_LINES)
    per_form = _STRUCTLOG_LINES + _STDLIB_LINES
    for index, (_, nsn) in enumerate(FORMS):
        for line in json_lines[index * per_form : (index + 1) * per_form]:
            record = json.loads(line)
            assert record["level"] in {"info", "warning", "error"}
            assert_masked(line, nsn)
    stdlib = [r for r in map(json.loads, json_lines) if r.get("logger") == "aiokafka"]
    assert len(stdlib) == len(FORMS) * 4
    assert all("exception" in r for r in stdlib if r["event"] == "retrying")
    # The rest: the plain handler's lines, tracebacks included.
    plain = "\n".join(line for line in lines if not line.startswith("{"))
    assert plain.count("PLAIN connection to") == len(FORMS)
    assert plain.count("Traceback") == len(FORMS)
    for _, nsn in FORMS:
        assert nsn[:-3] not in _squeezed(plain)


# Regions whose national format starts with a trunk 0 or an area code in parentheses.
_REGIONS = ["NG", "KE", "GH", "ZA", "UG", "TZ", "EG", "GB", "US", "ZM", "ET"]
_FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.NATIONAL,
]
_TYPES = [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]


@st.composite
def phone_numbers(draw: st.DrawFn) -> phonenumbers.PhoneNumber:
    """A valid number of one of the regions, the example number with random last digits."""
    region = draw(st.sampled_from(_REGIONS))
    example = phonenumbers.example_number_for_type(region, draw(st.sampled_from(_TYPES)))
    assert example is not None
    nsn = phonenumbers.national_significant_number(example)
    tail = draw(st.integers(0, 9999))
    candidate = nsn[:-4] + f"{tail:04d}"
    number = phonenumbers.parse("+" + str(example.country_code) + candidate)
    if not phonenumbers.is_valid_number(number):
        number = example
    return number


_WORDS = st.text(
    alphabet=st.characters(categories=("L", "P", "Zs"), exclude_characters="+"), max_size=30
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(phone_numbers(), st.sampled_from(_FORMATS), _WORDS, _WORDS)
def test_any_formatted_number_in_any_text_is_masked(
    number: phonenumbers.PhoneNumber, form: int, before: str, after: str
) -> None:
    written = phonenumbers.format_number(number, form)
    output = mask_text(f"{before} {written} {after}")
    nsn = phonenumbers.national_significant_number(number)
    assert nsn not in re.sub(r"\D", "", output), (written, output)


# Issue 11: our own lines through one fused processor (`_line`), the same bytes as the chain
# of processors they went through before (bench.logline.previous_processors), the phone
# pre-check and the cached timestamp proven against what they replace.

_PHONE_ALPHABET = st.sampled_from([*"0123456789", *" ().-+:x", "\u00a0", "٣", "²"])
_DIGIT_GROUPS = st.lists(st.text("0123456789", min_size=1, max_size=4), min_size=1, max_size=5)
_PHONE_LIKE = st.one_of(
    st.text(_PHONE_ALPHABET, max_size=40),
    # At the pre-check's edge: `+` and 9 digits is a phone, 8 is not.
    st.builds(lambda g, sep: "+" + sep.join(g), _DIGIT_GROUPS, st.sampled_from(" -.")),
    st.builds(lambda a, n, b: f"{a}{n}{b}", _WORDS, st.sampled_from([w for w, _ in FORMS]), _WORDS),
)


@settings(max_examples=1000)
@given(_PHONE_LIKE)
def test_the_nine_digit_pre_check_never_changes_what_mask_text_gives(text: str) -> None:
    assert mask_text(text) == logs._CANDIDATE.sub(logs._mask_candidate, text)


_MAX_MICROS = 253402300799999999  # 9999-12-31T23:59:59.999999


@given(st.lists(st.integers(0, _MAX_MICROS), min_size=1), st.integers(0, 999_999))
def test_the_cached_timestamp_is_timestampers_text(seconds: list[int], offset: int) -> None:
    for micros in [*seconds, seconds[0] - seconds[0] % 1_000_000 + offset]:  # same second
        expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
        assert logs.iso_timestamp(micros) == expected.isoformat().replace("+00:00", "Z")


_CONTEXT_KEYS = st.sampled_from(["trace_id", "event_id", "reference", "type", "phone", "ctx_a"])
_KEYS = st.one_of(_CONTEXT_KEYS, st.sampled_from(["detail", "api_key", "to", "n", "level"]))
# (orjson, before as now, writes integers of up to 64 bits.)
_INTEGERS = st.integers(-(2**63), 2**64 - 1)
_SCALARS = st.one_of(st.none(), st.booleans(), _INTEGERS, st.floats(), _PHONE_LIKE)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(_KEYS, _INTEGERS), inner, max_size=3),
    ),
    max_leaves=8,
)
_TIMESTAMP = re.compile(r'"timestamp":"[^"]*"')


def _previous(method: str, event_dict: dict[str, Any]) -> str:
    for processor in previous_processors():
        event_dict = processor(None, method, event_dict)
    return str(event_dict)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(_KEYS, _VALUES, max_size=6),
    st.dictionaries(_CONTEXT_KEYS, _PHONE_LIKE, max_size=4),
    st.sampled_from(["debug", "info", "warning", "error", "critical", "exception"]),
    st.sampled_from([None, False, True, "exception"]),
)
def test_a_line_is_the_previous_chains_line(
    event: dict[str, Any], bound: dict[str, str], method: str, exc: object
) -> None:
    event["event"] = "event_published"
    if exc is not None:
        event["exc_info"] = ValueError("bad 0803 123 4567") if exc == "exception" else exc

    def both() -> tuple[str, str]:
        structlog.contextvars.bind_contextvars(**bound)
        return logs._line(None, method, dict(event)), _previous(method, dict(event))

    logs._service = "svc"
    try:
        new, old = contextvars.copy_context().run(both)  # nothing bound outlives the example
    finally:
        logs._service = None
    assert new.endswith("\n") and "\n" not in new[:-1]
    new, old = (_TIMESTAMP.sub('"timestamp":"T"', line) for line in (new[:-1], old))
    # The keys merged from the context come in the order they were first bound, where
    # merge_contextvars gave its hash order (it changes from run to run): the rest as before.
    added = [k for k in orjson.loads(new) if k in bound and k not in event]
    if len(added) > 1:
        previous = orjson.loads(old)
        assert set(previous) == set(orjson.loads(new))
        old = orjson.dumps({k: previous[k] for k in orjson.loads(new)}).decode()
    assert new == old


_OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["bind", "reset", "unbind", "clear"]), _CONTEXT_KEYS), max_size=12
)


@given(_OPERATIONS)
def test_the_context_merge_follows_bind_reset_unbind_and_clear(operations: list[Any]) -> None:
    def check() -> None:
        tokens: list[dict[str, Any]] = []
        for number, (operation, key) in enumerate(operations):
            if operation == "bind":
                tokens.append(dict(structlog.contextvars.bind_contextvars(**{key: number})))
            elif operation == "reset" and tokens:
                structlog.contextvars.reset_contextvars(**tokens.pop())
            elif operation == "unbind":
                structlog.contextvars.unbind_contextvars(key)
            elif operation == "clear":
                structlog.contextvars.clear_contextvars()
            merged = logs._merge_contextvars(None, "info", {"event": "x"})
            assert merged == structlog.contextvars.merge_contextvars(None, "info", {"event": "x"})
            registry = [name[len("structlog_") :] for name in structlog.contextvars._CONTEXT_VARS]
            assert list(merged)[1:] == [k for k in registry if k in merged]

    contextvars.copy_context().run(check)
    # What a context bound is not seen outside it.
    assert "ctx_a" not in logs._merge_contextvars(None, "info", {})


class _Recorder(io.StringIO):
    """A stream that keeps what each flush made visible."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []

    def flush(self) -> None:
        self.flushed.append(self.getvalue())


def test_without_a_running_loop_a_line_is_flushed_at_once() -> None:
    stream = _Recorder()
    out = logs._Stdout(stream)
    out.info("one\n")
    out.info("two\n")
    assert stream.flushed == ["one\n", "one\ntwo\n"]


async def test_inside_a_loop_the_iterations_lines_are_flushed_once_in_order() -> None:
    stream = _Recorder()
    out = logs._Stdout(stream)
    lines = [f"{number}\n" for number in range(200)]
    for line in lines:
        out.info(line)
    assert stream.flushed == []  # still in the buffer
    await asyncio.sleep(0)  # the loop turns once: the flush scheduled first runs first
    assert stream.flushed == ["".join(lines)]
    out.info("next\n")
    await asyncio.sleep(0)
    assert stream.flushed == ["".join(lines), "".join(lines) + "next\n"]
