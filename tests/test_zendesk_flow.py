"""The core flow end to end: signed Zendesk webhook → real Redis → real worker process →
loopback OpenAI → a private note on the loopback Zendesk, escalated."""

from __future__ import annotations

import hashlib
import io
import threading
import uuid
from datetime import datetime, timedelta

import httpx
from PIL import Image

from deskmark.sandbox.openai import MarkingModel, SandboxOpenAI
from deskmark.sandbox.photos import damaged_product
from deskmark.sandbox.server import LoopbackServer
from deskmark.sandbox.zendesk import SandboxZendesk
from integrations.config import Settings
from integrations.events import job_id_for
from integrations.zendesk import SPEC as ZENDESK
from tests.helpers import WARRANTY_GROUP, WorkerProcess, calls_for, post_signed, settle, settled, wait_for
from worker import credentials
from worker.images import sniff
from worker.store import Store

CUSTOMER = SandboxZendesk.CUSTOMER_ID


def png_screenshot() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (900, 600), (240, 240, 240)).save(out, format="PNG")
    return out.getvalue()


def test_attachment_event_gets_exactly_one_marked_note(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk,
    openai_fake: SandboxOpenAI,
) -> None:
    subject = f"Cracked screen {uuid.uuid4().hex[:8]}"
    ticket_id = zendesk.create_ticket(subject, "It arrived like this.", tags=["vip", "delivery"])
    photo = damaged_product(seed=170)
    comment = zendesk.add_comment(ticket_id, CUSTOMER, "photo", [("IMG_0001.jpg", photo, "image/jpeg")],
                                  notify=False)
    answers_before = len(zendesk.webhook_answers)
    files_before = len(zendesk.file_requests)
    event = zendesk.event_for(ticket_id, comment, comment.attachments[0], CUSTOMER)
    assert post_signed(web.url, zendesk, event).status_code == 202

    [note] = settle(zendesk, worker, ticket_id, 1)
    [marked] = note.attachments
    assert not note.public
    assert marked.content_type == "image/jpeg" and sniff(marked.data) == "JPEG"
    assert marked.file_name.endswith(".jpg")
    job_id = job_id_for("zendesk", str(ticket_id), str(comment.attachments[0].id))
    assert job_id in note.html_body
    assert "gpt-image-2" in note.html_body and "$0.0" in note.html_body
    assert "Marked: cracked screen (circled in red by gpt-image-2)" in note.html_body
    assert "(locate $" in note.html_body and "the damage included, this is the customer's own" in note.html_body
    # Content credentials inside the delivered JPEG: the original as downloaded, the model, the job.
    summary = credentials.read(marked.data)
    assert summary is not None and summary.valid and not summary.trusted  # the throwaway signer
    assert summary.original_sha256 == hashlib.sha256(photo).hexdigest()
    assert summary.model == "gpt-image-2" and summary.ai_source == credentials.AI_COMPOSITE
    assert summary.job_id == job_id and summary.vendor == "zendesk" and summary.ticket_id == str(ticket_id)
    assert [r["label"] for r in summary.regions] == ["cracked screen"]
    assert "Content credentials (C2PA)" in note.html_body and "throwaway" in note.html_body

    ticket = zendesk.tickets[ticket_id]
    assert ticket.tags == ["vip", "delivery", "deskmark_annotated", "warranty_review"]
    assert ticket.group_id == int(WARRANTY_GROUP)

    [call] = calls_for(openai_fake, subject)
    assert call["model"] == "gpt-image-2"
    assert call["parts"] == [("photo.jpg", "image/jpeg")] and call["mask"] is True
    assert call["size"] == "1024x768"  # the photo's 4:3, long edge 1024 (MAX_REQUEST_EDGE)
    assert any(subject in r["text"] for r in openai_fake.located)  # the locator saw the ticket

    # The attachment came through its redirect; the signed-URL host never saw credentials.
    fetched = zendesk.file_requests[files_before:]
    assert fetched and all(r["authorization"] is None for r in fetched)
    # Zendesk's event for deskmark's own note attachment was answered 200 (ignored).
    assert wait_for(lambda: zendesk.webhook_answers[answers_before:]) == [200]


def test_trigger_marks_every_image_inline_included_and_skips_a_pdf(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk,
    openai_fake: SandboxOpenAI, redis_url: str,
) -> None:
    subject = f"Dented kettle {uuid.uuid4().hex[:8]}"
    ticket_id = zendesk.create_ticket(subject, "Dented on arrival, see photos.")
    first = zendesk.add_comment(ticket_id, CUSTOMER, "photos", [
        ("kettle.jpg", damaged_product(seed=1), "image/jpeg"),
        ("invoice.pdf", b"%PDF-1.4 not a photo", "application/pdf"),
    ], notify=False)
    zendesk.add_comment(ticket_id, 1002, "agent: thanks", [], notify=False)
    inline = zendesk.add_comment(ticket_id, CUSTOMER, "pasted screenshot",
                                 [("image.png", png_screenshot(), "image/png", True)],
                                 notify=False)
    zendesk.page_size = 2  # the listing has to follow the cursor to find the screenshot
    try:
        response = post_signed(web.url, zendesk,
                               {"ticket_id": str(ticket_id), "actor_id": str(CUSTOMER)})
        assert response.status_code == 202
        notes = settle(zendesk, worker, ticket_id, 2)
    finally:
        zendesk.page_size = 100
    assert len(notes) == 2
    assert sorted(n.attachments[0].file_name for n in notes) == ["image-marked.jpg",
                                                                 "kettle-marked.jpg"]
    assert len(calls_for(openai_fake, subject)) == 2
    listing = [r for r in zendesk.requests if r["path"].endswith(f"/{ticket_id}/comments.json")]
    assert listing and all("include_inline_images=true" in r["query"] for r in listing)
    store = Store.from_url(redis_url)
    pdf = store.job(job_id_for("zendesk", str(ticket_id), str(first.attachments[1].id)))
    assert pdf["state"] == "skipped" and "not an image" in pdf["reason"]
    assert store.job(job_id_for("zendesk", str(ticket_id),
                                str(inline.attachments[0].id)))["state"] == "done"


def test_repeated_deliveries_give_one_note_and_one_edit(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk,
    openai_fake: SandboxOpenAI,
) -> None:
    subject = f"Scratched lens {uuid.uuid4().hex[:8]}"
    ticket_id = zendesk.create_ticket(subject, "Scratch on the lens.")
    comment = zendesk.add_comment(ticket_id, CUSTOMER, "photo",
                                  [("lens.jpg", damaged_product(seed=3), "image/jpeg")],
                                  notify=False)
    event = zendesk.event_for(ticket_id, comment, comment.attachments[0], CUSTOMER)
    import json

    body = json.dumps(event).encode()
    headers = zendesk.signed_headers(body)  # one invocation id for all eight
    codes: list[int] = []

    def deliver() -> None:
        codes.append(httpx.post(f"{web.url}/webhooks/zendesk", content=body, headers=headers,
                                timeout=15).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200] * 7 + [202]
    settle(zendesk, worker, ticket_id, 1)
    # Later: the same delivery again, and the same event under a new invocation id, signed
    # anew a second later, as Zendesk's redelivery is (the same signature would be a replay).
    assert httpx.post(f"{web.url}/webhooks/zendesk", content=body, headers=headers,
                      timeout=15).status_code == 200
    first = datetime.strptime(headers["X-Zendesk-Webhook-Signature-Timestamp"], "%Y-%m-%dT%H:%M:%SZ")
    later = zendesk.signed_headers(body, timestamp=(first + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    later["X-Zendesk-Webhook-Invocation-Id"] = "redelivery-1"
    assert httpx.post(f"{web.url}/webhooks/zendesk", content=body, headers=later,
                      timeout=15).status_code == 202
    settled(zendesk, worker.env["REDIS_URL"])
    assert len([n for n in zendesk.notes(ticket_id) if n.attachments]) == 1
    assert len(calls_for(openai_fake, subject)) == 1
    assert zendesk.tickets[ticket_id].tags.count("warranty_review") == 1


def test_a_missing_model_mark_is_drawn_by_deskmark_and_the_note_says_so(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk,
    openai_fake: SandboxOpenAI, redis_url: str,
) -> None:
    subject = f"Chipped mug {uuid.uuid4().hex[:8]}"
    ticket_id = zendesk.create_ticket(subject, "Chipped in the box.")
    previous = openai_fake.transform
    openai_fake.transform = MarkingModel(mode="nothing")  # the model redraws, and marks nothing
    try:
        comment = zendesk.add_comment(ticket_id, CUSTOMER, "photo",
                                      [("mug.jpg", damaged_product(seed=4), "image/jpeg")])
        job_id = job_id_for("zendesk", str(ticket_id), str(comment.attachments[0].id))
        store = Store.from_url(redis_url)
        wait_for(lambda: store.job(job_id).get("state") == "done", timeout=60)
    finally:
        openai_fake.transform = previous
    [note] = [n for n in zendesk.notes(ticket_id) if n.attachments]
    assert ("Marked: cracked screen (circled by deskmark: the model's mark was missing)"
            in note.html_body)
    assert note.attachments[0].file_name == "mug-marked.jpg"
    assert store.job(job_id)["mark"]["marks"][0]["drawn_by"] == "deskmark"


def test_only_deskmarks_own_private_comment_counts_as_its_note(zendesk: SandboxZendesk,
                                                               settings: Settings) -> None:
    from integrations.events import NoteFile
    from integrations.zendesk.client import ZendeskClient

    client = ZendeskClient(settings.of(ZENDESK), settings.attachment_hosts)
    ticket_id = zendesk.create_ticket(f"Note check {uuid.uuid4().hex[:8]}", "Broken.")
    marker = "job dm-0123456789abcdef"  # derived from ids the customer can see
    zendesk.add_comment(ticket_id, CUSTOMER, f"not a note: {marker}", [], notify=False)
    zendesk.add_comment(ticket_id, 1002, f"another agent's note: {marker}", [], public=False,
                        notify=False)
    assert client.find_note(str(ticket_id), marker) is None
    note_id = client.post_note(str(ticket_id), f"<p>{marker}</p>", [NoteFile("a.jpg", b"\xff\xd8\xff", "image/jpeg")])
    assert client.find_note(str(ticket_id), marker) == note_id
