"""GET /metrics: Prometheus text with the series an operator graphs, moving as things happen."""

from __future__ import annotations

import re
import uuid

import httpx

from deskmark.sandbox.server import LoopbackServer
from deskmark.sandbox.zendesk import SandboxZendesk
from tests.helpers import WorkerProcess, post_signed, settle

SERIES = ["deskmark_webhooks_total", "deskmark_jobs_total", "deskmark_edit_seconds_bucket",
          "deskmark_edit_seconds_count", "deskmark_edit_seconds_sum", "deskmark_spend_usd_total",
          "deskmark_spend_today_usd", "deskmark_daily_budget_usd", "deskmark_queue_depth",
          "deskmark_dead_letters", "deskmark_worker_up"]


def sample(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def scrape(web: LoopbackServer) -> str:
    response = httpx.get(f"{web.url}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


def test_metrics_move_with_webhooks_and_jobs(worker: WorkerProcess, web: LoopbackServer,
                                             zendesk: SandboxZendesk) -> None:
    before = scrape(web)
    for name in SERIES:
        assert re.search(rf"^{name}", before, re.MULTILINE), f"{name} missing"
    unauthorized = '{outcome="unauthorized",vendor="zendesk"}'
    enqueued = '{outcome="enqueued",vendor="zendesk"}'
    assert httpx.post(f"{web.url}/webhooks/zendesk", content=b"{}", timeout=5).status_code == 401
    ticket_id = zendesk.create_ticket(f"Metrics {uuid.uuid4().hex[:6]}", "x")
    from deskmark.sandbox.photos import damaged_product

    comment = zendesk.add_comment(ticket_id, zendesk.CUSTOMER_ID, "p",
                                  [("m.jpg", damaged_product(seed=80), "image/jpeg")], notify=False)
    event = zendesk.event_for(ticket_id, comment, comment.attachments[0], zendesk.CUSTOMER_ID)
    assert post_signed(web.url, zendesk, event).status_code == 202
    settle(zendesk, worker, ticket_id, 1)
    made_up = f"probe{uuid.uuid4().hex[:8]}"  # a scanner's path: answered 404, and no new series
    assert httpx.post(f"{web.url}/webhooks/{made_up}", content=b"{}", timeout=5).status_code == 404
    after = scrape(web)
    assert made_up not in after
    webhooks = "deskmark_webhooks_total"
    assert sample(after, webhooks, unauthorized) == sample(before, webhooks, unauthorized) + 1
    assert sample(after, webhooks, enqueued) == sample(before, webhooks, enqueued) + 1
    done = '{state="done"}'
    assert sample(after, "deskmark_jobs_total", done) >= sample(before, "deskmark_jobs_total", done) + 1
    assert sample(after, "deskmark_edit_seconds_count") >= sample(before, "deskmark_edit_seconds_count") + 1
    assert sample(after, "deskmark_spend_usd_total") > sample(before, "deskmark_spend_usd_total")
    assert sample(after, "deskmark_worker_up") == 1.0
