"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright.

Set DESKMARK_SCREENSHOT=path to save a screenshot of the dashboard (the README's comes from it).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable

import pytest

from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.zendesk import SandboxZendesk
from tests.helpers import Stack, marked_notes, send_photo, wait_for

pytestmark = pytest.mark.e2e  # runs deskmark's own commands as processes

CHROMIUM = os.environ.get("DESKMARK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Chromium's own background traffic is refused on a closed network: turn it off.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "dashboard-token-123"


def test_dashboard_shows_jobs_and_replays_a_dead_letter(
    make_stack: Callable[..., Stack], zendesk: SandboxZendesk, openai_fake: SandboxOpenAI,
) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip("no Chromium (apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    stack = make_stack(DESKMARK_ADMIN_TOKEN=TOKEN)
    done_ticket, done_job = send_photo(zendesk, stack.web.url, f"Browser ok {uuid.uuid4().hex[:6]}",
                                       size=(1600, 1200))
    wait_for(lambda: stack.store.job(done_job).get("state") == "done", timeout=60)
    openai_fake.faults.add("POST", "/images/edits", 400, {"error": {
        "message": "Your request was rejected by the safety system.",
        "type": "image_generation_user_error", "param": None, "code": "moderation_blocked"}})
    dead_ticket, dead_job = send_photo(zendesk, stack.web.url, f"Browser dead {uuid.uuid4().hex[:6]}",
                                       seed=71, size=(1600, 1200))
    wait_for(lambda: dead_job in stack.store.dead_ids(), timeout=60)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            anonymous = browser.new_context()
            assert anonymous.request.get(stack.web.url + "/").status == 401
            page = browser.new_context(http_credentials={"username": "admin", "password": TOKEN},
                                       viewport={"width": 1200, "height": 900}).new_page()
            answer = page.goto(stack.web.url + "/")
            assert answer is not None and answer.status == 200
            row = page.locator(f"#jobs tr[data-job='{done_job}']")
            assert row.get_attribute("data-state") == "done"
            thumbs = row.locator("img")
            assert thumbs.count() == 2
            thumbs.first.scroll_into_view_if_needed()
            page.wait_for_function(
                "els => els.every(i => i.complete && i.naturalWidth > 0)",
                arg=thumbs.element_handles(), timeout=10_000)
            dead_row = page.locator(f"#dead-letters tr[data-job='{dead_job}']")
            assert "moderation" in dead_row.inner_text()
            # Operations over time: server-side SVG charts with today's figures in them.
            for chart in ("#spend-chart", "#latency-chart"):
                assert page.locator(f"{chart} svg[role=img]").is_visible()
            spend_bars = page.locator("#spend-chart rect.spend")
            assert spend_bars.count() == 1 and spend_bars.first.bounding_box()["height"] > 0  # type: ignore[index]
            assert "$0.0" in (spend_bars.first.locator("title").text_content() or "")
            assert page.locator("#latency-chart rect.latency").count() == 1
            failures = page.locator("#failures-chart")
            assert "openai: moderation_blocked" in failures.inner_text()
            assert failures.locator("rect.failure").count() == 1
            if os.environ.get("DESKMARK_SCREENSHOT"):
                seed_history(stack)  # earlier days, for the picture only
                page.reload()
                page.screenshot(path=os.environ["DESKMARK_SCREENSHOT"], full_page=True)
            dead_row.get_by_role("button", name="Replay").click()
            page.wait_for_load_state()
            assert f"{dead_job}: queued again" in page.locator(".notice").inner_text()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if page.locator(f"#jobs tr[data-job='{dead_job}']").get_attribute("data-state") == "done":
                    break
                time.sleep(0.5)
                page.reload()
            assert page.locator(f"#jobs tr[data-job='{dead_job}']").get_attribute("data-state") == "done"
            assert page.locator("#dead-letters").count() == 0  # the list is empty again
            # The job page, from the job's link: the three photos load (the customer's, the
            # delivered one, the model's own output), the checks, the credentials.
            page.locator(f"#jobs tr[data-job='{done_job}'] a[href$='/jobs/{done_job}']").click()
            page.wait_for_load_state()
            photos = page.locator(".photos img")
            assert [photos.nth(i).get_attribute("alt") for i in range(photos.count())] == [
                "the customer's photo", "the delivered photo", "the edit model's own output"]
            page.wait_for_function("els => els.every(i => i.complete && i.naturalWidth > 0)",
                                   arg=photos.element_handles(), timeout=10_000)
            assert page.locator("section.checks").inner_text().count("Checks:") == 1
            credentials = page.locator("section.credentials").inner_text()
            assert "valid (self-signed)" in credentials and "original sha256" in credentials
            assert "gpt-image-2 (AI composite)" in credentials
        finally:
            browser.close()
    assert len(marked_notes(zendesk, dead_ticket)) == 1 and len(marked_notes(zendesk, done_ticket)) == 1


def seed_history(stack: Stack) -> None:
    """Four weeks of made-up activity, so that the README's screenshot shows what the charts
    look like in use (the test's own assertions run before this)."""
    import math
    import random

    from worker.store import EDIT_BUCKETS, day_key

    rng = random.Random(5)
    for back in range(1, 29):
        day = day_key(time.time() - back * 86400)
        calls = rng.randint(20, 90)
        stack.store.r.set(f"dm:spend:{day}", calls * rng.uniform(0.05, 0.09), ex=86400)
        typical = rng.uniform(25, 55)
        seconds = [rng.lognormvariate(math.log(typical), 0.35) for _ in range(calls)]
        stack.store.r.hset(f"dm:edits:{day}", mapping={
            **{str(le): sum(s <= le for s in seconds) for le in EDIT_BUCKETS},
            "+Inf": calls, "sum": sum(seconds)})
        if back <= 6 and rng.random() < 0.6:
            stack.store.r.hset(f"dm:failures:{day}", mapping={"openai: rate_limit_exceeded": rng.randint(1, 4),
                                                              "photo unusable": rng.randint(0, 2)})
