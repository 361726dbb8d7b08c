"""Issue 10: the operations console in a real headless browser (Debian's chromium, driven by
Playwright) against the whole pipeline as processes.

An operator signs in with a support token, finds a `missing_contact` dead letter by filtering
the list, opens it; the directory is fixed (the real `bridge customers import`); the operator
clicks retry, searches the reference and sees the message delivered. Then a bulk close runs as
a job, and the health page shows the figures.

The times an operator waits are printed (not asserted): search to story, and sign-in to the
delivered story. Screenshots go to a temporary directory, or to CONSOLE_SCREENSHOTS (e.g.
`CONSOLE_SCREENSHOTS=docs/screenshots`) to refresh the documentation's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from .harness import (
    ROOT,
    Pipeline,
    make_pipeline,
    new_reference,
    payment,
    running,
    stack_env,
    wait_for,
)

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"  # the system browser: Playwright never downloads one here


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str) -> Iterator[Pipeline]:
    # The background retrier waits an hour: the retry the operator clicks is the one that sends.
    with running(make_pipeline(stack_env(), DLQ_RETRY_INTERVAL_SECONDS="3600")) as pipeline:
        yield pipeline


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


class Shots:
    """Screenshots into one folder, and the time they took (not the operator's time)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.seconds = 0.0

    def take(self, page: Page, name: str) -> None:
        started = time.perf_counter()
        page.screenshot(path=self.folder / f"console-{name}.png", full_page=True)
        self.seconds += time.perf_counter() - started


@pytest.fixture
def shots(tmp_path: Path) -> Shots:
    target = os.environ.get("CONSOLE_SCREENSHOTS")
    return Shots((ROOT / target) if target else tmp_path / "screenshots")


def token(pipeline: Pipeline, role: str) -> str:
    pairs = dict(p.split(":", 1) for p in pipeline.env["API_TOKENS"].split(","))
    return pairs[role]


def dead_letter_of(pipeline: Pipeline, reference: str) -> dict[str, Any] | None:
    answer = httpx.get(
        f"http://127.0.0.1:{pipeline.ports['dispatcher-1']}/dlq",
        params={"reference": reference},
        headers={"Authorization": f"Bearer {token(pipeline, 'support')}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()["entries"]
    return entries[0] if entries else None


def unreachable_customer(pipeline: Pipeline, tmp_path: Path) -> tuple[str, str, int]:
    """A paid customer whose number the directory lacks: (account, reference, dead letter)."""
    account = pipeline.new_customer(tmp_path, phone="")
    ref = new_reference()
    assert pipeline.post_moniepoint(payment("payment.successful", account, ref)).status_code == 200
    reference = f"moniepoint:{ref}"
    entry = wait_for(lambda: dead_letter_of(pipeline, reference), timeout=30)
    assert (entry["status"], entry["reason"]) == ("manual_review", "missing_contact")
    return account, reference, int(entry["id"])


def sign_in(page: Page, pipeline: Pipeline, role: str) -> None:
    page.goto(f"{pipeline.console}/signin")
    page.fill("#token", token(pipeline, role))
    page.get_by_role("button", name="Sign in").click()


def filter_missing_contacts(page: Page) -> None:
    page.select_option("select[name=status]", "manual_review")
    page.fill("input[name=reason]", "missing_contact")
    page.fill("input[name=provider]", "moniepoint")
    page.get_by_role("button", name="Filter").click()


def test_an_operator_fixes_a_missing_contact(
    pipeline: Pipeline, browser: Browser, tmp_path: Path, shots: Shots
) -> None:
    account, reference, entry_id = unreachable_customer(pipeline, tmp_path)
    page = browser.new_page(viewport={"width": 1400, "height": 900})

    signed_in_at = time.perf_counter()
    sign_in(page, pipeline, "support")
    expect(page.get_by_role("heading", name="Dead letters", exact=True)).to_be_visible()
    filter_missing_contacts(page)
    expect(page.get_by_role("link", name=reference)).to_be_visible()
    shots.take(page, "list")

    page.get_by_role("link", name=reference).click()
    expect(page.get_by_role("heading", name=f"Dead letter {entry_id}")).to_be_visible()
    expect(page.locator(".facts")).to_contain_text("missing_contact")
    expect(page.locator(".timeline")).to_contain_text("dead_lettered")
    find_seconds = time.perf_counter() - signed_in_at - shots.seconds
    shots.take(page, "detail")

    # The directory is fixed the way operators do it: `bridge customers import`.
    pipeline.import_customers(tmp_path, [(account, "08037654321", "first_time", 0)])
    page.get_by_role("button", name="Retry now").click()
    expect(page.get_by_role("status")).to_be_visible()
    wait_for(lambda: pipeline.sandbox_get("messages", reference=reference), timeout=30)

    searched_at = time.perf_counter()
    page.fill("input[name=reference]", reference)
    page.press("input[name=reference]", "Enter")
    expect(page.get_by_role("heading", name=f"Story of {reference}")).to_be_visible()
    search_seconds = time.perf_counter() - searched_at

    def delivered() -> bool:
        if (page.locator("#story-status").text_content() or "") in ("delivered", "read"):
            return True
        page.reload()  # the sandbox's receipts arrive a moment after the send
        return False

    wait_for(delivered, timeout=30, interval=0.5)
    story_seconds = time.perf_counter() - signed_in_at - shots.seconds
    expect(page.locator(".timeline")).to_contain_text("retried")
    expect(page.locator(".timeline")).to_contain_text("delivered")
    expect(page.locator("table.entries")).to_contain_text("completed")
    shots.take(page, "story")
    assert len(pipeline.sandbox_get("messages", reference=reference)) == 1

    print(
        f"\nconsole: sign-in to the dead letter's page {find_seconds:.2f} s;"
        f" search to story {search_seconds * 1000:.0f} ms;"
        f" sign-in to the delivered story (find, fix, retry, search) {story_seconds:.1f} s"
    )
    page.close()


def test_bulk_close_runs_as_a_job_and_health_shows_the_figures(
    pipeline: Pipeline, browser: Browser, tmp_path: Path, shots: Shots
) -> None:
    entries = [unreachable_customer(pipeline, tmp_path)[2] for _ in range(3)]
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    sign_in(page, pipeline, "support")
    filter_missing_contacts(page)
    for entry_id in entries:
        page.check(f"input[name=id][value='{entry_id}']")
    page.select_option("select[name=action]", "close")
    page.fill("input[name=note]", "test payments, customer never reachable")
    page.get_by_role("button", name="Start job").click()
    expect(page.get_by_role("heading", name="Bulk close")).to_be_visible()
    expect(page.locator("[data-state]")).to_have_text("finished", timeout=30_000)
    expect(page.locator("[data-done]")).to_have_text("3")
    expect(page.locator("[data-failed]")).to_have_text("0")
    shots.take(page, "job")
    for entry_id in entries:
        entry = wait_for(lambda i=entry_id: dead_letter_of_id(pipeline, i))
        assert entry["status"] == "failed"

    page.goto(f"{pipeline.console}/health")
    # Rates compare two readings at least a second apart: the second look has them.
    page.wait_for_timeout(1500)
    page.reload()
    expect(page.get_by_role("heading", name="Dead letters by status and reason")).to_be_visible()
    expect(page.locator("table.figures").first).to_contain_text("Events processed")
    shots.take(page, "health")
    page.close()


def test_analysts_see_the_health_page_only(pipeline: Pipeline, browser: Browser) -> None:
    page = browser.new_page()
    sign_in(page, pipeline, "analyst")
    expect(page.get_by_role("heading", name="Health", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Dead letters")).to_have_count(0)
    page.goto(f"{pipeline.console}/dlq")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    page.close()


def dead_letter_of_id(pipeline: Pipeline, entry_id: int) -> dict[str, Any]:
    answer = httpx.get(
        f"http://127.0.0.1:{pipeline.ports['dispatcher-1']}/dlq/{entry_id}",
        headers={"Authorization": f"Bearer {token(pipeline, 'support')}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body
