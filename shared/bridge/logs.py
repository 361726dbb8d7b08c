"""structlog set-up: JSON lines, with phone numbers and secrets masked before output.

Every way a line can leave the process goes through the same masking: structlog's own lines
(the event, every value, nested dicts and lists, and the rendered traceback), and records
of the standard `logging` module (uvicorn, aiokafka, faust, asyncpg…), which are masked as
they are created, so even a handler a library installs itself (faust replaces the root
handlers) writes masked text.

Finding phone numbers: a regex finds digit runs shaped like a phone number (a `+`, `00`,
a trunk `0`, parentheses, or digits grouped by spaces, dashes or dots); only those few
candidates are judged, and only the ambiguous ones (no `+`, no trunk `0`) are asked of
phonenumbers. A whole log line (structlog to JSON) costs 29-40 µs this way, against 22-30 µs
with the former narrow regex and 170-290 µs with phonenumbers' PhoneNumberMatcher run over
every value; the matcher also missed two numbers in a row and, at its lenient setting,
took 10-digit account numbers, ports and epoch timestamps for phones.

Our own lines (issue 11) go through one fused processor (`_line`) and are flushed once per
event-loop iteration (`_Stdout`), not once per line: a normal exit loses none, a SIGKILL may
lose the lines of the loop iteration it interrupts.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import logging.config
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, MutableMapping
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TextIO, cast

import orjson
import phonenumbers
import structlog
from structlog.contextvars import _CONTEXT_VARS
from structlog.contextvars import STRUCTLOG_KEY_PREFIX_LEN as _PREFIX_LEN

# A candidate: digits with single separators, maybe a leading `+`/`(`. The look-arounds keep
# it off the middle of words, references (MNP-2026-…), decimals, IP addresses and times.
_CANDIDATE = re.compile(r"(?<![\w+\-.])(?:\+|\(\+?)?\d[\d().\- \u00a0]{5,30}\d(?![\w\-:]|\.\d)")
_SPACES = re.compile(r"([ \u00a0]+)")
_NON_DIGIT = re.compile(r"\D")
_AMOUNT = re.compile(r"\d+\.\d{1,2}")
# Where a number written without `+` or trunk `0` is most likely from.
_HOME_REGION = "NG"

# Keys whose values never reach a log: exact names, and name parts.
_SENSITIVE_KEYS = frozenset({"phone", "to", "from", "msisdn", "text", "authorization", "password"})
_SENSITIVE_PARTS = ("phone", "secret", "api_key", "token")


def mask_phone(value: str) -> str:
    """Keep the last three digits, enough to tell two customers apart in a log."""
    digits = _NON_DIGIT.sub("", value)
    return "***" + digits[-3:] if digits else "***"


def _valid(number: str, region: str | None) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(number, region))
    except phonenumbers.NumberParseException:
        return False


def is_phone(text: str) -> bool:
    """Whether one candidate (no surrounding text) is a phone number.

    Ten bare digits stay readable: that is a NUBAN account number (a 10-digit national number
    written without separators cannot be told from one).
    """
    digits = _NON_DIGIT.sub("", text)
    count = len(digits)
    if count < 9 or count > 17 or _AMOUNT.fullmatch(text):
        return False
    bare = text == digits
    if text.startswith(("+", "(+")):
        return count <= 15
    if digits.startswith("00") and (not bare or count >= 12):
        return count - 2 <= 15  # 00 is the international prefix in most of Africa
    if text.startswith("("):
        return count <= 15  # an area code in parentheses: (0803) 123-4567, (415) 555-2671
    if digits.startswith("0"):
        return count == 11 if bare else count <= 12
    if count > 15 or (bare and count <= 10):
        return False
    # A country code without its `+` (2348031234567, 254 712 345 678), or a home mobile
    # number without its trunk 0 (803 123 4567): only what phonenumbers accepts as real.
    return _valid("+" + digits, None) or (not bare and count == 10 and _valid(digits, _HOME_REGION))


def _mask_candidate(match: re.Match[str]) -> str:
    # Several numbers may sit side by side ("0803 123 4567 0803 123 4568"): from each
    # space-separated group on, the longest run of groups that is a phone is masked.
    parts = _SPACES.split(match.group())  # groups at even indexes, the spaces at odd ones
    groups = len(parts) // 2 + 1
    out: list[str] = []
    start = 0
    while start < groups:
        end, piece = start + 1, parts[2 * start]
        for last in range(groups, start, -1):
            candidate = "".join(parts[2 * start : 2 * last - 1])
            if is_phone(candidate):
                end, piece = last, mask_phone(candidate)
                break
        out.append(piece)
        if end < groups:
            out.append(parts[2 * end - 1])
        start = end
    return "".join(out)


# A phone has at least 9 digits (`is_phone`) with nothing but these separators between them
# (`_CANDIDATE`): with them deleted and every digit made a 0, an ASCII text that has no run
# of nine 0s holds no phone. Checked in C, 3-4 times cheaper than `_CANDIDATE` on an id.
_SEPARATORS = b" ().-"
_DIGITS_AS_ZEROS = bytes.maketrans(b"123456789", b"000000000")
_NINE_DIGITS = b"0" * 9


def mask_text(text: str) -> str:
    """`text` with every phone number in it masked."""
    if text.isascii() and _NINE_DIGITS not in text.encode().translate(
        _DIGITS_AS_ZEROS, _SEPARATORS
    ):
        return text
    return _CANDIDATE.sub(_mask_candidate, text)


# Integers with fewer digits than any phone (`is_phone`: 9) are written as they are.
_SHORT = 10**8
_ORJSON_INTEGERS = range(-(2**63), 2**64)  # what orjson writes as a number


def _long_integer(value: int) -> int | str:
    """A long integer as logs show it: a phone number held as an integer (2348031234567) is
    masked like its text; one beyond 64 bits (a uuid's int) is written as its digits, which
    orjson would otherwise refuse with an error to whoever logged it."""
    text = str(value)
    shown = mask_text(text)
    return value if shown == text and value in _ORJSON_INTEGERS else shown


def masked(value: Any) -> Any:
    """`value` as logs show it: phone numbers in its text masked, sensitive keys' values
    replaced, nested dicts and lists alike (the CLI's output goes through it too)."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: ("***" if _is_sensitive(str(k)) else masked(v)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [masked(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -_SHORT < value < _SHORT:
        return _long_integer(value)
    if value is None or isinstance(value, int | float):
        return value
    # Anything else is rendered with repr() by the JSON renderer: mask that text.
    return mask_text(repr(value))


# Cached: every line asks it of each of its keys, which are nearly always the same few.
@lru_cache(maxsize=1024)
def _is_sensitive(key: str) -> bool:
    lowered = key.lower()
    return lowered in _SENSITIVE_KEYS or any(part in lowered for part in _SENSITIVE_PARTS)


# Written over by the logging set-up itself (the time, the level): nothing a caller passes
# can be in them.
_OWN_KEYS = frozenset({"timestamp", "level"})


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if _is_sensitive(key):
            event_dict[key] = "***"
        elif key not in _OWN_KEYS:
            event_dict[key] = masked(event_dict[key])
    return event_dict


def _dumps(value: Any, default: Callable[[Any], Any] | None = None, **_: Any) -> str:
    # orjson: a third of the standard library's cost per line. Non-string keys (a dict of
    # counts by number) are written as strings, as `json` would.
    return orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS).decode()


# Rendering, then masking: the traceback is text by the time `redact` sees it, so the numbers
# in exception messages and frames' locals are masked too.
_render = structlog.processors.JSONRenderer(serializer=_dumps)
_OUTPUT: list[Any] = [structlog.processors.format_exc_info, redact, _render]


class _MaskingRecordFactory:
    """Masks a stdlib record's message, arguments and traceback as it is created.

    The message is rendered once here (`msg % args`) because an argument that is not a
    string (an exception, a dict) would otherwise bring its number back at formatting time.
    """

    def __init__(self, wrapped: Callable[..., logging.LogRecord]) -> None:
        self.wrapped = wrapped

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.wrapped(*args, **kwargs)
        try:
            record.msg = mask_text(record.getMessage())
            record.args = ()  # not None: faust's formatter wraps None into (None,) and fails
        except Exception:  # noqa: S110 - a bad format string: logging reports it when formatting
            pass
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            # Formatters use exc_text when it is set: it is rendered once, masked.
            record.exc_text = mask_text("".join(traceback.format_exception(*record.exc_info)))
            record.exc_text = record.exc_text.rstrip("\n")
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return record


def _install_record_factory() -> None:
    current = logging.getLogRecordFactory()
    if not isinstance(current, _MaskingRecordFactory):
        logging.setLogRecordFactory(_MaskingRecordFactory(current))


# The process's service name, on every line. Not a contextvar: threads with loops of their
# own (faust's consumer thread) do not inherit the main thread's context.
_service: str | None = None


def _add_service(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if _service is not None:
        event_dict.setdefault("service", _service)
    return event_dict


# structlog's contextvars (`bind_contextvars`), by key. `merge_contextvars` walks the whole
# context (every library's variables too) for each line; these are the few of structlog's
# own, and the registry only grows, so its size tells when to take them again.
_bound: tuple[tuple[str, ContextVar[Any]], ...] = ()


def _merge_contextvars(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """`merge_contextvars`, the keys in the order they were first bound in the process
    (structlog's order follows the variables' hashes, which change from run to run)."""
    global _bound
    if len(_bound) != len(_CONTEXT_VARS):
        _bound = tuple((name[_PREFIX_LEN:], var) for name, var in list(_CONTEXT_VARS.items()))
    for key, var in _bound:
        value = var.get()
        if value is not Ellipsis:  # unbound (structlog's marker)
            event_dict.setdefault(key, value)
    return event_dict


# `TimeStamper(fmt="iso", utc=True)`'s text (datetime.now's microseconds, "Z" for +00:00,
# no fraction when it is 0) with the date and time of the current second made once.
_second: tuple[int, str] = (-1, "")


def iso_timestamp(micros: int) -> str:
    global _second
    seconds, fraction = divmod(micros, 1_000_000)
    cached, prefix = _second
    if seconds != cached:
        prefix = datetime.fromtimestamp(seconds, UTC).isoformat().removesuffix("+00:00")
        _second = (seconds, prefix)
    return f"{prefix}.{fraction:06d}Z" if fraction else prefix + "Z"


def _add_timestamp(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict["timestamp"] = iso_timestamp(time.time_ns() // 1000)
    return event_dict


def _line(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
    """Our own lines' whole chain in one processor (structlog's loop over seven cost as much
    as some of them): the same steps in the same order as the library records' chain."""
    _merge_contextvars(logger, method, event_dict)
    _add_service(logger, method, event_dict)
    structlog.processors.add_log_level(logger, method, event_dict)
    _add_timestamp(logger, method, event_dict)
    if "exc_info" in event_dict:
        structlog.processors.format_exc_info(logger, method, event_dict)
    redact(logger, method, event_dict)
    return cast(str, _render(logger, method, event_dict)) + "\n"  # `_dumps`: a str


class _Stdout:
    """Where our lines go: written at once, flushed once per event-loop iteration.

    A flush is a write syscall; a webhook's line paid one of its own. Inside a running
    asyncio loop (each thread's own: faust's consumer thread has one) the line stays in the
    stream's buffer until a callback at the loop's next turn flushes all that iteration's
    lines; without a loop (scripts, executor threads) a line is flushed at once. Lines keep
    their order (one buffer: the library records' handler writes to the same stream, and
    flushes ours with its own). A normal exit, a fork and a closed loop flush (atexit,
    os.register_at_fork, the next line); a SIGKILL loses at most one loop iteration's lines.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._scheduled = threading.local()  # .loop: the loop a flush is scheduled on

    def msg(self, line: str) -> None:
        with self._lock:
            self._stream.write(line)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if getattr(self._scheduled, "loop", None) is not loop:
            self._scheduled.loop = loop
            loop.call_soon(self._flush_iteration)

    debug = info = warning = error = critical = exception = msg

    def _flush_iteration(self) -> None:
        self._scheduled.loop = None
        self.flush()

    def flush(self) -> None:
        with self._lock:
            if not self._stream.closed:
                self._stream.flush()


_stdout: _Stdout | None = None


def _flush_stdout() -> None:
    if _stdout is not None:
        _stdout.flush()


atexit.register(_flush_stdout)
os.register_at_fork(before=_flush_stdout)  # else the child would write them again


def _json_formatter() -> logging.Formatter:
    """Libraries' records as the same JSON lines (masked again after the traceback is
    rendered)."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            _merge_contextvars,
            _add_service,
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            _add_timestamp,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *_OUTPUT],
    )


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """The standard library's set-up (`logging.config.dictConfig`): every record as a JSON
    line on stdout. A framework that configures logging itself can be given this (faust:
    `faust.App(logging_config=...)`)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": _json_formatter}},
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "stream": sys.stdout, "formatter": "json"}
        },
        "root": {"handlers": ["stdout"], "level": level.upper()},
    }


def configure_logging(service: str, level: str = "INFO") -> None:
    global _service, _stdout
    _service = service
    level = level.upper()
    _install_record_factory()
    logging.config.dictConfig(logging_config(level))
    _flush_stdout()  # what the former set-up's stream still holds
    # The stdout of now: faust's worker later points sys.stdout at a logger (so that a
    # stray print becomes a JSON record); our own lines must not go through it again.
    # (PrintLogger would: it prints to whatever sys.stdout is at the time.)
    _stdout = out = _Stdout(sys.stdout)
    structlog.configure(
        processors=[_line],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=lambda *_: out,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
