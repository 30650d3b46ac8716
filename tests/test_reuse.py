"""A paid result is reused: the same prepared photo, with the same models, quality and prompt
template, is located and edited once, however many tickets it arrives on."""

from __future__ import annotations

import io
import uuid

import pytest
from PIL import Image

from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.photos import damaged_product
from deskmark.sandbox.server import LoopbackServer
from deskmark.sandbox.zendesk import SandboxZendesk
from integrations.errors import Throttled
from integrations.events import job_id_for
from tests.helpers import WorkerProcess, wait_for
from worker import credentials
from worker.pipeline import CLAIM_SECONDS, JobResults
from worker.store import Store

CUSTOMER = SandboxZendesk.CUSTOMER_ID


def send(zendesk: SandboxZendesk, subject: str, photo: bytes) -> str:
    """A customer ticket with the photo; Zendesk sends its webhook. Returns the photo's job id."""
    ticket_id = zendesk.create_ticket(subject, "It arrived broken, photo attached.")
    comment = zendesk.add_comment(ticket_id, CUSTOMER, "photo", [("IMG_2231.jpg", photo, "image/jpeg")])
    return job_id_for("zendesk", str(ticket_id), str(comment.attachments[0].id))


def test_the_same_photo_on_two_tickets_is_edited_once_and_the_second_note_says_so(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk,
    openai_fake: SandboxOpenAI, redis_url: str,
) -> None:
    store = Store.from_url(redis_url)
    photo = damaged_product(seed=901)
    tag = uuid.uuid4().hex[:8]
    first = send(zendesk, f"Broken lamp {tag}", photo)
    wait_for(lambda: store.job(first).get("state") == "done", timeout=60)
    # The same photo, forwarded onto another ticket: its subject and text differ.
    second = send(zendesk, f"Fwd: Broken lamp {tag}", photo)
    wait_for(lambda: store.job(second).get("state") == "done", timeout=60)

    edits = [c for c in openai_fake.calls if tag in str(c["prompt"])]
    locates = [r for r in openai_fake.located if tag in r["text"]]
    assert len(edits) == 1 and f"Broken lamp {tag}" in str(edits[0]["prompt"])
    assert len(locates) == 1

    first_ticket, second_ticket = (int(store.job(j)["ticket_id"]) for j in (first, second))
    [original] = [n for n in zendesk.notes(first_ticket) if n.attachments]
    [reused] = [n for n in zendesk.notes(second_ticket) if n.attachments]
    assert f"in job {first}: deskmark reused that result" in reused.html_body
    assert "cost $0.0000" in reused.html_body and second in reused.html_body
    # The same marked pixels; each photo's content credentials name its own job.
    decoded = [Image.open(io.BytesIO(n.attachments[0].data)).tobytes() for n in (original, reused)]
    assert decoded[0] == decoded[1]
    signed = [credentials.read(n.attachments[0].data) for n in (original, reused)]
    assert [s.job_id for s in signed if s is not None and s.valid] == [first, second]
    record = store.job(second)
    assert record["cost_usd"] == 0.0 and record["mark"]["reused_from"] == first
    assert "warranty_review" in zendesk.tickets[second_ticket].tags  # escalated all the same
    # The result is kept as long as the marked image it points to.
    key = store.job(first)["mark"]["result_key"]
    assert store.r.get(f"dm:result:{key}") == f"done:{first}".encode()
    assert 14 * 86400 - 120 < store.r.ttl(f"dm:result:{key}") <= 14 * 86400
    assert abs(store.r.ttl(f"dm:result:{key}") - store.r.ttl(f"dm:job:{first}:marked")) < 60


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store.from_url(redis_url)


def test_a_job_waits_while_another_makes_the_same_result(store: Store) -> None:
    key = uuid.uuid4().hex
    store.create_job("dm-maker", {"vendor": "zendesk", "ticket_id": "1"})
    store.update("dm-maker", {"state": "running"})
    assert JobResults(store, "dm-maker").reuse(key) is None  # the first one makes it
    assert JobResults(store, "dm-maker").reuse(key) is None  # ... and again on its retry
    with pytest.raises(Throttled, match="being marked by job dm-maker"):
        JobResults(store, "dm-waiter").reuse(key)
    assert 0 < store.r.ttl(f"dm:result:{key}") <= CLAIM_SECONDS  # a dead maker's claim lapses

    store.save_marked("dm-maker", b"marked-jpeg", {"model": "gpt-image-2", "cost_usd": 0.05})
    store.save_thumbnails("dm-maker", b"before", b"after")
    store.publish_result(key, "dm-maker")
    reused = JobResults(store, "dm-waiter").reuse(key)
    assert reused is not None and reused.job_id == "dm-maker"
    assert reused.image == b"marked-jpeg" and reused.after == b"after"


def test_a_result_whose_maker_failed_or_expired_is_made_again(store: Store) -> None:
    key = uuid.uuid4().hex
    store.create_job("dm-failed", {"vendor": "zendesk", "ticket_id": "2"})
    assert JobResults(store, "dm-failed").reuse(key) is None
    store.update("dm-failed", {"state": "failed"})
    assert JobResults(store, "dm-next").reuse(key) is None  # taken over, not waited for
    assert store.r.get(f"dm:result:{key}") == b"pending:dm-next"

    store.publish_result(key, "dm-gone")  # a result whose marked image has expired
    assert JobResults(store, "dm-later").reuse(key) is None
    assert store.r.get(f"dm:result:{key}") == b"pending:dm-later"
