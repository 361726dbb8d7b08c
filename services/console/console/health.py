"""The health page's figures: rates, dead-letter depth, consumer lag, outbox backlog.

Two sources give the same `Health`:
- Prometheus's HTTP API when PROMETHEUS_URL is set (rates over its 5-minute window);
- otherwise the services' own /metrics pages: two readings, the previous one kept by the
  console, give the rates between them.

Only the parsing and arithmetic live here (no I/O); a figure whose metric no service exports
is None and the page leaves it out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
Key = tuple[str, Labels]

# (title, counter sample name, the label shown per row)
RATE_SERIES: tuple[tuple[str, str, str], ...] = (
    ("Webhooks received", "bridge_webhooks_received_total", "outcome"),
    ("Events processed", "bridge_events_processed_total", "outcome"),
    ("Siteti calls", "bridge_siteti_calls_total", "status"),
    ("Delivery receipts", "bridge_receipts_total", "type"),
    ("Dead letters created", "bridge_dead_letters_total", "reason"),
)
DEPTH = "bridge_dead_letter_depth"
LAG = "bridge_consumer_lag"
OLDEST = "bridge_dead_letter_oldest_pending_seconds"
OUTBOX = "bridge_outbox_pending"
# Readings further apart than this give rates too smoothed to be "now".
MAX_RATE_GAP_SECONDS = 600.0


@dataclass(frozen=True)
class Rate:
    title: str
    label: str
    total: float
    per_minute: float | None  # None: no earlier reading to compare with


@dataclass(frozen=True)
class Health:
    source: str
    rates: list[Rate] = field(default_factory=list)
    depth: dict[str, float] = field(default_factory=dict)  # by status
    lag: list[tuple[str, str, float]] = field(default_factory=list)  # topic, partition, lag
    oldest_pending_seconds: float | None = None
    outbox_pending: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def lag_total(self) -> float | None:
        return sum(v for _, _, v in self.lag) if self.lag else None


@dataclass(frozen=True)
class Reading:
    """Every sample of one read of the /metrics pages, at `at` (seconds, monotonic)."""

    at: float
    values: dict[Key, float]


def parse_metrics(texts: Iterable[str]) -> dict[Key, float]:
    """Samples of Prometheus text pages (one per process). Counters add up across processes;
    a gauge is either global (every process exporting it gives the same figure, or 0 when it
    does not keep it) or kept by one owner per label set (a partition's lag): its largest
    value is the figure. `_created` samples are timestamps, not values: skipped."""
    values: dict[Key, float] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            combine = max if family.type == "gauge" else sum
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                key = (sample.name, tuple(sorted(sample.labels.items())))
                found = [values[key]] if key in values else []
                values[key] = float(combine([*found, float(sample.value)]))
    return values


def _by(values: Mapping[Key, float], name: str, label: str) -> dict[str, float]:
    grouped: dict[str, float] = {}
    for (sample, labels), value in values.items():
        if sample == name:
            shown = dict(labels).get(label, "")
            grouped[shown] = grouped.get(shown, 0.0) + value
    return grouped


def _one(values: Mapping[Key, float], name: str, combine: Any = sum) -> float | None:
    found = [v for (sample, _), v in values.items() if sample == name]
    return float(combine(found)) if found else None


def health_from_readings(previous: Reading | None, current: Reading) -> Health:
    """Figures of the latest reading; rates against `previous` when it is recent enough."""
    gap = current.at - previous.at if previous is not None else 0.0
    compare = previous is not None and 1.0 <= gap <= MAX_RATE_GAP_SECONDS
    rates: list[Rate] = []
    for title, name, label in RATE_SERIES:
        before = _by(previous.values, name, label) if previous is not None and compare else {}
        for shown, total in sorted(_by(current.values, name, label).items()):
            earlier = before.get(shown, 0.0) if compare else None
            # A counter that went down was reset (a restart): no rate for this pair.
            per_minute = (
                (total - earlier) * 60 / gap if earlier is not None and total >= earlier else None
            )
            rates.append(Rate(title, shown, total, per_minute))
    lag = sorted(
        (dict(labels).get("topic", ""), dict(labels).get("partition", ""), value)
        for (sample, labels), value in current.values.items()
        if sample == LAG
    )
    return Health(
        source="the services' /metrics",
        rates=rates,
        depth=_by(current.values, DEPTH, "status"),
        lag=lag,
        oldest_pending_seconds=_one(current.values, OLDEST, max),
        outbox_pending=_one(current.values, OUTBOX, max),
    )


# --- Prometheus -----------------------------------------------------------------------------


def prometheus_queries() -> dict[str, str]:
    """PromQL for every figure, by the name `health_from_prometheus` reads them under."""
    queries: dict[str, str] = {}
    for _, name, label in RATE_SERIES:
        queries[f"total:{name}"] = f"sum by ({label}) ({name})"
        queries[f"rate:{name}"] = f"sum by ({label}) (rate({name}[5m])) * 60"
    # Global gauges are exported alike by every replica: max, never sum, across them.
    queries["depth"] = f"sum by (status) (max by (status, reason) ({DEPTH}))"
    queries["lag"] = f"max by (topic, partition) ({LAG})"
    queries["oldest"] = f"max({OLDEST})"
    queries["outbox"] = f"max({OUTBOX})"
    return queries


Vector = Sequence[Mapping[str, Any]]  # Prometheus's instant-vector result


def _series(vector: Vector, label: str) -> dict[str, float]:
    return {
        str(item.get("metric", {}).get(label, "")): float(item["value"][1])
        for item in vector
        if isinstance(item.get("value"), list | tuple) and len(item["value"]) == 2
    }


def _scalar(vector: Vector) -> float | None:
    values = _series(vector, "")
    return next(iter(values.values())) if values else None


def health_from_prometheus(results: Mapping[str, Vector]) -> Health:
    """Figures from the answers to `prometheus_queries()` (a missing answer: no figure)."""
    rates: list[Rate] = []
    for title, name, label in RATE_SERIES:
        totals = _series(results.get(f"total:{name}", []), label)
        per_minute = _series(results.get(f"rate:{name}", []), label)
        rates += [
            Rate(title, shown, total, per_minute.get(shown))
            for shown, total in sorted(totals.items())
        ]
    lag = sorted(
        (str(item["metric"].get("topic", "")), str(item["metric"].get("partition", "")), value)
        for item in results.get("lag", [])
        for value in [float(item["value"][1])]
    )
    return Health(
        source="Prometheus",
        rates=rates,
        depth=_series(results.get("depth", []), "status"),
        lag=lag,
        oldest_pending_seconds=_scalar(results.get("oldest", [])),
        outbox_pending=_scalar(results.get("outbox", [])),
    )


def duration(seconds: float | None) -> str:
    """`3h 12m`, `45s`: an age for people."""
    if seconds is None:
        return "—"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or "0s"
