"""Bad input and vendor faults on the Zendesk flow: retried where that can help, reported on the
ticket where it cannot, and never a duplicate note."""

from __future__ import annotations

import uuid

from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.photos import damaged_product
from deskmark.sandbox.server import LoopbackServer
from deskmark.sandbox.zendesk import SandboxZendesk
from integrations.events import job_id_for
from tests.conftest import WorkerProcess, post_signed, wait_for
from tests.test_zendesk_flow import calls_for, settle
from worker.store import Store

CUSTOMER = SandboxZendesk.CUSTOMER_ID


def send_photo(zendesk: SandboxZendesk, web: LoopbackServer, subject: str,
               files: list[tuple[str, bytes, str]]) -> int:
    ticket_id = zendesk.create_ticket(subject, "See the attached photo.")
    comment = zendesk.add_comment(ticket_id, CUSTOMER, "photo", files, notify=False)
    for attachment in comment.attachments:
        event = zendesk.event_for(ticket_id, comment, attachment, CUSTOMER)
        assert post_signed(web.url, zendesk, event).status_code == 202
    return ticket_id


def test_a_lost_answer_to_the_note_does_not_post_it_twice(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk,
    openai_fake: SandboxOpenAI,
) -> None:
    # Zendesk creates the note, but deskmark never hears back (a 500 after the work is done).
    zendesk.faults.add("PUT", r"/api/v2/tickets/\d+\.json$", 500, {"error": "timeout"},
                       after=True)
    subject = f"Lost answer {uuid.uuid4().hex[:8]}"
    ticket_id = send_photo(zendesk, web, subject, [("a.jpg", damaged_product(seed=11), "image/jpeg")])
    wait_for(lambda: "warranty_review" in zendesk.tickets[ticket_id].tags, timeout=60)
    notes = settle(zendesk, ticket_id, 1)
    assert len(notes) == 1
    assert len(calls_for(openai_fake, subject)) == 1  # the retry reused the paid-for edit


def test_an_openai_outage_is_retried_to_one_note(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk,
    openai_fake: SandboxOpenAI,
) -> None:
    openai_fake.faults.add("POST", "/images/edits", 500,
                           {"error": {"message": "The server had an error", "type": "server_error",
                                      "param": None, "code": None}})
    subject = f"Outage {uuid.uuid4().hex[:8]}"
    ticket_id = send_photo(zendesk, web, subject, [("b.jpg", damaged_product(seed=12), "image/jpeg")])
    assert len(settle(zendesk, ticket_id, 1, timeout=60)) == 1
    assert len(calls_for(openai_fake, subject)) == 2


def test_a_moderation_block_is_not_retried_and_the_agents_are_told(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk,
    openai_fake: SandboxOpenAI, redis_url: str,
) -> None:
    openai_fake.faults.add("POST", "/images/edits", 400, {"error": {
        "message": "Your request was rejected by the safety system.",
        "type": "image_generation_user_error", "param": None, "code": "moderation_blocked"}})
    subject = f"Blocked {uuid.uuid4().hex[:8]}"
    ticket_id = send_photo(zendesk, web, subject, [("c.jpg", damaged_product(seed=13), "image/jpeg")])
    note = wait_for(lambda: zendesk.notes(ticket_id), timeout=30)[0]
    assert "could not mark the photo" in note.html_body and "moderation" in note.html_body
    assert not note.attachments
    job_id = job_id_for("zendesk", str(ticket_id),
                        str(zendesk.tickets[ticket_id].comments[1].attachments[0].id))
    record = Store.from_url(redis_url).job(job_id)
    assert record["state"] == "failed"
    assert record["last_error"]["code"] == "moderation_blocked"
    assert len(calls_for(openai_fake, subject)) == 1
    assert "warranty_review" not in zendesk.tickets[ticket_id].tags


def test_a_fake_jpeg_is_reported_and_a_good_photo_beside_it_is_marked(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk,
    openai_fake: SandboxOpenAI, redis_url: str,
) -> None:
    subject = f"Mixed files {uuid.uuid4().hex[:8]}"
    ticket_id = send_photo(zendesk, web, subject, [
        ("photo.jpg", b"<html><body>not a photo</body></html>", "image/jpeg"),
        ("good.jpg", damaged_product(seed=14), "image/jpeg"),
    ])
    marked = settle(zendesk, ticket_id, 1)
    assert [n.attachments[0].file_name for n in marked] == ["good-marked.jpg"]
    report = wait_for(lambda: [n for n in zendesk.notes(ticket_id) if not n.attachments])[0]
    assert "photo.jpg" in report.html_body and "not an image" in report.html_body
    fake = zendesk.tickets[ticket_id].comments[1].attachments[0]
    record = Store.from_url(redis_url).job(job_id_for("zendesk", str(ticket_id), str(fake.id)))
    assert record["state"] == "failed" and "not an image" in record["reason"]
    assert len(calls_for(openai_fake, subject)) == 1
