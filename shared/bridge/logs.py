"""structlog set-up: JSON lines, with phone numbers and secrets masked before output."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# International (+234…, 234…) and Nigerian national (080…) mobile numbers in free text;
# narrow on purpose so references and account numbers stay readable.
_PHONE = re.compile(r"(?<![\w-])(?:\+?\d{11,15}|0[789][01]\d{8})(?![\w-])")
# Keys whose values never reach a log: exact names, and name parts.
_SENSITIVE_KEYS = frozenset({"phone", "to", "from", "msisdn", "text", "authorization", "password"})
_SENSITIVE_PARTS = ("phone", "secret", "api_key", "token")


def mask_phone(value: str) -> str:
    """Keep the last three digits, enough to tell two customers apart in a log."""
    digits = re.sub(r"\D", "", value)
    return "***" + digits[-3:] if digits else "***"


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return _PHONE.sub(lambda m: mask_phone(m.group()), value)
    if isinstance(value, dict):
        return {k: ("***" if _is_sensitive(k) else _mask(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def _is_sensitive(key: str) -> bool:
    lowered = key.lower()
    return lowered in _SENSITIVE_KEYS or any(part in lowered for part in _SENSITIVE_PARTS)


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if _is_sensitive(key):
            event_dict[key] = "***"
        elif key != "timestamp":
            event_dict[key] = _mask(event_dict[key])
    return event_dict


def configure_logging(service: str, level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
