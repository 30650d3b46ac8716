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
from deskmark.sandbox.slack import SandboxSlack
from deskmark.sandbox.zendesk import SandboxZendesk
from tests.helpers import (
    APPROVER,
    WARRANTY_GROUP,
    Stack,
    marked_notes,
    post_signed,
    review_message,
    send_photo,
    wait_for,
)

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


# Reads, in the page, the smallest text of the dashboard's charts in CSS pixels: each SVG's
# font size in its own units times how much the SVG is scaled.
SMALLEST_CHART_TEXT = """() => {
  let smallest = Infinity;
  for (const svg of document.querySelectorAll('svg.chart')) {
    const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
    for (const text of svg.querySelectorAll('text')) {
      smallest = Math.min(smallest, parseFloat(getComputedStyle(text).fontSize) * scale);
    }
  }
  return smallest;
}"""
FITS_SIDEWAYS = "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"


def test_the_console_shows_deliveries_a_ticket_a_job_story_and_redis_down(
    make_stack: Callable[..., Stack], zendesk: SandboxZendesk, slack: SandboxSlack,
) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip("no Chromium (apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import Page, sync_playwright

    stack = make_stack(DESKMARK_ADMIN_TOKEN=TOKEN)
    subject = f"Console {uuid.uuid4().hex[:6]}"
    ticket, job = send_photo(zendesk, stack.web.url, subject, seed=81, size=(1600, 1200))
    wait_for(lambda: stack.store.job(job).get("slack_ts"), timeout=60)
    message = review_message(slack, f"Zendesk ticket #{ticket}")
    went_to, slack.interactivity_url = slack.interactivity_url, f"{stack.web.url}/webhooks/slack/interactions"
    try:
        assert slack.click(message, "warranty_approve", APPROVER, "dana.reviewer") == 200
    finally:
        slack.interactivity_url = went_to
    wait_for(lambda: stack.store.job(job).get("review_shown"), timeout=60)
    forged = post_signed(stack.web.url, zendesk, {"ticket_id": str(ticket)},
                         **{"X-Zendesk-Webhook-Signature": "Zm9yZ2VkLXNpZ25hdHVyZQ=="})
    assert forged.status_code == 401

    def shot(page: Page, name: str) -> None:  # DESKMARK_SCREENSHOT=prefix: pictures to look at
        if os.environ.get("DESKMARK_SCREENSHOT"):
            page.screenshot(path=f"{os.environ['DESKMARK_SCREENSHOT']}-{name}.png", full_page=True)

    def fits_a_phone(page: Page, path: str) -> None:
        page.goto(stack.web.url + path)
        shot(page, "phone" + path.replace("/", "-").replace("?", "-"))
        assert page.evaluate(FITS_SIDEWAYS), f"{path} scrolls sideways at 390 px"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            wide = browser.new_context(http_credentials={"username": "admin", "password": TOKEN},
                                       viewport={"width": 1280, "height": 900}).new_page()
            # Deliveries: the forged one, rejected with its reason; the real one, with its ticket.
            wide.goto(stack.web.url + "/deliveries?vendor=zendesk")
            shot(wide, "deliveries")
            rejected = wide.locator("#deliveries tr[data-status='401']")
            assert rejected.count() >= 1 and "signature" in rejected.first.inner_text()
            accepted = wide.locator("#deliveries tr[data-outcome='enqueued']", has_text=f"#{ticket}")
            assert accepted.count() == 1 and "202" in accepted.inner_text()
            # ... its ticket link is the search by ticket: the job, with when it arrived.
            accepted.get_by_role("link").click()
            wide.wait_for_load_state()
            rows = wide.locator("#jobs tbody tr[data-job]")
            assert rows.count() == 1 and rows.first.get_attribute("data-job") == job
            received = rows.first.locator("td.received time").get_attribute("datetime") or ""
            assert received.startswith(time.strftime("%Y-%m-%d", time.gmtime()))
            wide.goto(stack.web.url + f"/?ticket={ticket + 100000}")
            assert "No photos of ticket" in wide.locator("#jobs").inner_text()
            # Charts legible on a wide screen.
            wide.goto(stack.web.url + "/")
            shot(wide, "dashboard")
            assert wide.evaluate(SMALLEST_CHART_TEXT) >= 11
            # The job page: what was posted, and the timeline of its steps.
            wide.goto(stack.web.url + f"/jobs/{job}")
            shot(wide, "job")
            posted = wide.locator("section.posted").inner_text()
            assert "Marked: cracked screen" in posted and job in posted  # the note's text
            assert "deskmark_annotated, warranty_review" in posted and WARRANTY_GROUP in posted
            assert f"Warranty review for Zendesk ticket #{ticket}" in posted and "(Approve / Reject)" in posted
            assert "warranty approved by dana.reviewer" in posted
            steps = wide.locator("section.timeline li").all_inner_texts()
            for what in ("queued", "running", "located by gpt-5.4", "marked: cracked screen",
                         "private note posted", "escalated: tags", "posted to Slack",
                         "warranty approved in Slack by dana.reviewer", "done"):
                assert any(what in step for step in steps), (what, steps)
            # A phone: nothing scrolls sideways, the state shows, the charts stay legible.
            phone = browser.new_context(http_credentials={"username": "admin", "password": TOKEN},
                                        viewport={"width": 390, "height": 844}).new_page()
            for path in ("/", "/deliveries", f"/jobs/{job}", f"/?ticket={ticket}"):
                fits_a_phone(phone, path)
            phone.goto(stack.web.url + "/")
            assert phone.evaluate(SMALLEST_CHART_TEXT) >= 11
            state = phone.locator(f"#jobs tr[data-job='{job}'] .state")
            state.scroll_into_view_if_needed()
            box = state.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
            # Redis down: the dashboard says so, with what to check (503), not a 500.
            stack.redis.stop()
            answer = wide.goto(stack.web.url + "/")
            assert answer is not None and answer.status == 503
            text = wide.locator("main").inner_text()
            assert "deskmark cannot reach Redis" in text and "What to check" in text and "deskmark check" in text
            shot(wide, "redis-down")
        finally:
            browser.close()
