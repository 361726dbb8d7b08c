"""The e2e modules' shared fixture: one pipeline on the shared stack per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import Pipeline, make_pipeline, running, stack_env


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str) -> Iterator[Pipeline]:
    """Provisioned and started for the module (a module may define its own instead)."""
    with running(make_pipeline(stack_env())) as pipeline:
        yield pipeline
