"""The file drop's metrics (bridge.metrics: `bridge_filedrop_*`), kept out of the watcher."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.metrics import FILEDROP_FILES, FILEDROP_PENDING, FILEDROP_ROWS

from .filedrop_reader import Plan

if TYPE_CHECKING:  # the watcher imports this module
    from .filedrop import ScanReport


def count_scan(report: ScanReport) -> None:
    """Each file handled by its outcome, and what is left in the inbox after the scan."""
    for result in report.results:
        FILEDROP_FILES.labels(result.outcome).inc()
    FILEDROP_PENDING.set(report.pending)


def count_rows(plan: Plan) -> None:
    """The rows of a file recorded as processed or failed."""
    for outcome, rows in (
        ("emitted", len(plan.events)),
        ("skipped", len(plan.skipped)),
        ("rejected", len(plan.bad)),
    ):
        FILEDROP_ROWS.labels(outcome).inc(rows)
