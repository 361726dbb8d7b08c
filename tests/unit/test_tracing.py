"""W3C Trace Context (bridge.tracing) and its propagation (bridge.correlation)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from bridge import tracing
from bridge.correlation import (
    correlated,
    current_span,
    handling,
    kafka_headers,
    outgoing_headers,
    traced,
)
from bridge.events import CanonicalEvent, Customer, EventData, new_event
from bridge.tracing import Span

# The specification's example.
EXAMPLE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
HEX = "0123456789abcdef"


def test_the_specification_example_parses() -> None:
    assert tracing.parse(EXAMPLE) == Span(
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 0x01
    )
    assert tracing.parse(EXAMPLE.encode()) == tracing.parse(EXAMPLE)
    assert tracing.parse(f" {EXAMPLE}\t") == tracing.parse(EXAMPLE)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # uppercase
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # trace id too short
        "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",  # trace id too long
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",  # parent id too short
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",  # flags too short
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # 00 has 4 fields
        "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version too short
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",  # wrong separator
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",  # not hex
        b"\xff\xfe",  # not ASCII
    ],
)
def test_invalid_headers_are_ignored(header: str | bytes | None) -> None:
    assert tracing.parse(header) is None
    started = tracing.continue_trace(header)
    assert started.trace_id != "4bf92f3577b34da6a3ce929d0e0e4736"  # a new trace instead


def test_a_later_version_is_read_by_its_first_fields() -> None:
    later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-adds"
    parsed = tracing.parse(later)
    assert parsed is not None and parsed.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_continuing_makes_a_child_with_the_sampled_flag_only() -> None:
    child = tracing.continue_trace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff")
    assert child.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert child.span_id != "00f067aa0ba902b7"
    assert child.traceparent.endswith("-01")
    assert tracing.parse(child.traceparent) == child


fields = st.tuples(
    st.text(alphabet=HEX, min_size=2, max_size=2),
    st.text(alphabet=HEX, min_size=32, max_size=32),
    st.text(alphabet=HEX, min_size=16, max_size=16),
    st.text(alphabet=HEX, min_size=2, max_size=2),
)


@given(fields)
def test_well_formed_headers_round_trip_unless_forbidden(parts: tuple[str, str, str, str]) -> None:
    version, trace_id, span_id, flags = parts
    header = "-".join(parts)
    parsed = tracing.parse(header)
    forbidden = version == "ff" or set(trace_id) == {"0"} or set(span_id) == {"0"}
    if forbidden:
        assert parsed is None
    else:
        assert parsed == Span(trace_id, span_id, int(flags, 16))
        if version == "00":
            assert parsed.traceparent == header


@given(st.text(max_size=80) | st.binary(max_size=80))
def test_the_parser_never_raises_and_accepts_only_valid_shapes(header: str | bytes) -> None:
    parsed = tracing.parse(header)
    if parsed is not None:
        assert len(parsed.trace_id) == 32 and set(parsed.trace_id) <= set(HEX)
        assert len(parsed.span_id) == 16 and set(parsed.span_id) <= set(HEX)
        assert parsed.trace_id != "0" * 32 and parsed.span_id != "0" * 16


@given(fields.map("-".join), st.sampled_from(["A", "G", " x", "-", "Z"]), st.integers(0, 54))
def test_a_corrupted_character_makes_a_header_invalid(header: str, bad: str, at: int) -> None:
    corrupted = header[:at] + bad + header[at + 1 :]
    if corrupted != header:
        assert tracing.parse(corrupted) is None


def test_new_traces_are_valid_and_distinct() -> None:
    spans = [tracing.new_trace() for _ in range(100)]
    assert len({s.trace_id for s in spans}) == 100
    assert all(tracing.parse(s.traceparent) == s for s in spans)


# --- propagation --------------------------------------------------------------------------


def event(reference: str) -> CanonicalEvent:
    data = EventData(
        provider="moniepoint",
        transaction_reference=reference,
        amount=Decimal("5000.00"),
        customer=Customer(account_number="0123456789"),
        occurred_at=datetime(2026, 1, 20, tzinfo=UTC),
    )
    return new_event(data, "payment.successful")


def test_the_event_carries_its_trace_as_attribute_and_header() -> None:
    span = tracing.new_trace()
    sent = traced(event("MNP-1"), span)
    assert CanonicalEvent.from_json(sent.to_json()).traceparent == span.traceparent
    assert kafka_headers(sent) == [("traceparent", span.traceparent.encode())]
    assert kafka_headers(event("MNP-1")) == []


def test_handling_continues_the_header_else_the_attribute() -> None:
    attribute, header = tracing.new_trace(), tracing.new_trace()
    sent = traced(event("MNP-1"), attribute)
    with handling(sent, header.traceparent.encode()) as span:
        assert span.trace_id == header.trace_id and span.span_id != header.span_id
        assert outgoing_headers() == {"traceparent": span.traceparent}
    with handling(sent) as span:
        assert span.trace_id == attribute.trace_id
    assert current_span() is None and outgoing_headers() == {}


async def test_concurrent_events_never_see_each_others_fields() -> None:
    """Lane workers are long-lived tasks handling one event after another, many at a time."""
    seen: dict[str, list[dict[str, object]]] = {}
    queue: asyncio.Queue[CanonicalEvent] = asyncio.Queue()
    for n in range(40):
        queue.put_nowait(traced(event(f"MNP-{n}"), tracing.new_trace()))

    async def worker() -> None:
        while not queue.empty():
            item = queue.get_nowait()
            assert "reference" not in structlog.contextvars.get_contextvars()  # starts clean
            with handling(item) as span:
                for _ in range(3):
                    await asyncio.sleep(0)  # let the other workers run in between
                    fields = structlog.contextvars.get_contextvars()
                    seen.setdefault(item.reference, []).append(fields)
                    assert current_span() == span
            assert current_span() is None

    await asyncio.gather(*(worker() for _ in range(8)))
    for reference, views in seen.items():
        trace = views[0]["trace_id"]
        assert all(v["reference"] == reference and v["trace_id"] == trace for v in views)
        assert all(v["event_id"] == event(reference.split(":")[1]).id for v in views)
    assert len({v[0]["trace_id"] for v in seen.values()}) == 40


def test_nested_correlation_restores_the_outer_fields() -> None:
    outer = tracing.new_trace()
    with correlated(outer, reference="a:1"):
        with correlated(event_id="e-2", reference="a:2"):
            fields = structlog.contextvars.get_contextvars()
            assert fields["reference"] == "a:2" and fields["trace_id"] == outer.trace_id
            assert current_span() == outer  # no span given: the outer one goes on
        fields = structlog.contextvars.get_contextvars()
        assert fields["reference"] == "a:1" and "event_id" not in fields
    assert "trace_id" not in structlog.contextvars.get_contextvars()
