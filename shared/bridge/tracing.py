"""W3C Trace Context (`traceparent`, version 00): parse, validate, format, child spans. Pure.

    traceparent: 00-<trace-id: 32 hex>-<parent-id: 16 hex>-<trace-flags: 2 hex>

A header that is not valid is ignored, as the specification asks (a new trace is started
instead): a version other than two lowercase hex digits or `ff`, a trace id or parent id of
the wrong length, not lowercase hex, or all zeros. A version above 00 is read by its first
four fields (the specification's forward compatibility) as long as what follows is `-…`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

_HEX = "[0-9a-f]"
_TRACEPARENT = re.compile(rf"({_HEX}{{2}})-({_HEX}{{32}})-({_HEX}{{16}})-({_HEX}{{2}})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
SAMPLED = 0x01
#: The one pattern the version 00 header we write always matches (the event attribute's).
TRACEPARENT_PATTERN = rf"^00-{_HEX}{{32}}-{_HEX}{{16}}-{_HEX}{{2}}$"


@dataclass(frozen=True)
class Span:
    """Where a participant stands in a trace: the trace, its own span id, the flags."""

    trace_id: str
    span_id: str
    flags: int = SAMPLED

    @property
    def traceparent(self) -> str:
        """The header that makes the receiver this span's child."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}"

    def child(self) -> Span:
        """A new span in the same trace. Only the sampled flag is carried over: what the
        others mean is not known here."""
        return Span(self.trace_id, new_span_id(), self.flags & SAMPLED)


# Ids need to be unique, not unpredictable: Python's generator, as OpenTelemetry's own
# (RandomIdGenerator), not the system's randomness (a system call for every webhook).
def new_span_id() -> str:
    while (span_id := f"{random.getrandbits(64):016x}") == _ZERO_SPAN:  # all zeros is invalid
        pass
    return span_id


def new_trace(flags: int = SAMPLED) -> Span:
    """The root span of a new trace."""
    while (trace_id := f"{random.getrandbits(128):032x}") == _ZERO_TRACE:
        pass
    return Span(trace_id, new_span_id(), flags)


def parse(header: str | bytes | None) -> Span | None:
    """The sender's span from a `traceparent` header, or None when absent or invalid."""
    if isinstance(header, bytes):
        try:
            header = header.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not header:
        return None
    # Surrounding whitespace is tolerated (HTTP's optional whitespace); nothing else is.
    match = _TRACEPARENT.fullmatch(header.strip(" \t"))
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    if version == "00" and rest is not None:  # version 00 has exactly four fields
        return None
    return Span(trace_id, span_id, int(flags, 16))


def continue_trace(header: str | bytes | None) -> Span:
    """This participant's span: a child of the sender's when its header is valid, else the
    root of a new trace."""
    return child_of(parse(header))


def child_of(parent: Span | None) -> Span:
    """A child of `parent` (`Span.child`), or the root of a new trace when there is none."""
    if parent is None:
        return new_trace()
    return parent.child()
