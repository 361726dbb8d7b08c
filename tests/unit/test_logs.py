"""Issue 7: no log line carries a phone number, whatever its form and whichever way it is logged.

The log paths run in a child process with the services' own `configure_logging`, and the
assertions read what it really wrote to stdout.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
            "count": 12345678901,
        },
    )
    assert event["phone"] == event["api_key"] == event["detail"]["to"] == "***"
    assert event["detail"]["contact"] == ["***567", ["***567"]]
    assert event["timestamp"] == "2026-01-20T14:30:00Z"
    assert event["count"] == 12345678901


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
