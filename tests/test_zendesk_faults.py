"""Bad input and vendor faults on the Zendesk flow: retried where that can help, reported on the
ticket where it cannot, and never a duplicate note."""

from __future__ import annotations

import uuid

from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.photos import damaged_product
from deskmark.sandbox.server import LoopbackServer
from deskmark.sandbox.zendesk import SandboxZendesk
from integrations.events import job_id_for
from tests.helpers import WorkerProcess, calls_for, job_reaches, png_with_header_only, post_signed, settle, wait_for
from worker.images import sniff
from worker.store import Store

CUSTOMER = SandboxZendesk.CUSTOMER_ID


def send_files(zendesk: SandboxZendesk, web: LoopbackServer, subject: str,
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
    ticket_id = send_files(zendesk, web, subject, [("a.jpg", damaged_product(seed=11), "image/jpeg")])
    wait_for(lambda: "warranty_review" in zendesk.tickets[ticket_id].tags, timeout=60)
    notes = settle(zendesk, worker, ticket_id, 1)
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
    ticket_id = send_files(zendesk, web, subject, [("b.jpg", damaged_product(seed=12), "image/jpeg")])
    assert len(settle(zendesk, worker, ticket_id, 1, timeout=60)) == 1
    assert len(calls_for(openai_fake, subject)) == 2


def test_a_moderation_block_is_not_retried_and_the_agents_are_told(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk,
    openai_fake: SandboxOpenAI, redis_url: str,
) -> None:
    openai_fake.faults.add("POST", "/images/edits", 400, {"error": {
        "message": "Your request was rejected by the safety system.",
        "type": "image_generation_user_error", "param": None, "code": "moderation_blocked"}})
    subject = f"Blocked {uuid.uuid4().hex[:8]}"
    ticket_id = send_files(zendesk, web, subject, [("c.jpg", damaged_product(seed=13), "image/jpeg")])
    note = wait_for(lambda: zendesk.notes(ticket_id), timeout=30)[0]
    assert "could not mark the photo" in note.html_body and "moderation" in note.html_body
    assert not note.attachments
    job_id = job_id_for("zendesk", str(ticket_id),
                        str(zendesk.tickets[ticket_id].comments[1].attachments[0].id))
    record = Store.from_url(redis_url).job(job_id)
    assert record["state"] == "failed"
    assert record["last_error"] is not None and record["last_error"]["code"] == "moderation_blocked"
    assert len(calls_for(openai_fake, subject)) == 1
    assert "warranty_review" not in zendesk.tickets[ticket_id].tags


def test_hostile_files_are_reported_and_a_good_photo_beside_them_is_marked(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk,
    openai_fake: SandboxOpenAI, redis_url: str,
) -> None:
    good = damaged_product(seed=14)
    subject = f"Mixed files {uuid.uuid4().hex[:8]}"
    ticket_id = send_files(zendesk, web, subject, [
        ("bomb.png", png_with_header_only(100_000, 100_000), "image/png"),
        ("cut.jpg", good[: len(good) // 2], "image/jpeg"),
        ("photo.jpg", b"<html><body>not a photo</body></html>", "image/jpeg"),
        ("good.jpg", good, "image/jpeg"),
    ])
    marked = settle(zendesk, worker, ticket_id, 1)
    assert [n.attachments[0].file_name for n in marked] == ["good-marked.jpg"]
    reports = wait_for(lambda: (lambda r: r if len(r) == 3 else None)(
        [n.html_body for n in zendesk.notes(ticket_id) if not n.attachments]))
    store = Store.from_url(redis_url)
    expected = {"bomb.png": "decompression bomb", "cut.jpg": "truncated", "photo.jpg": "not an image"}
    for attachment in zendesk.tickets[ticket_id].comments[1].attachments[:3]:
        reason = expected[attachment.file_name]
        record = store.job(job_id_for("zendesk", str(ticket_id), str(attachment.id)))
        assert record["state"] == "failed" and reason in record["reason"]
        assert any(attachment.file_name in r and reason in r for r in reports)
    assert len(calls_for(openai_fake, subject)) == 1
    # ... and the worker is still there, marking the next photo.
    again = send_files(zendesk, web, f"After {subject}", [("next.jpg", damaged_product(seed=15),
                                                          "image/jpeg")])
    assert len(settle(zendesk, worker, again, 1)) == 1


def test_an_iphone_heic_photo_is_marked(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk,
    openai_fake: SandboxOpenAI,
) -> None:
    import io

    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()
    out = io.BytesIO()
    Image.open(io.BytesIO(damaged_product(1200, 900, seed=171, fmt="PNG"))).save(out, format="HEIF", quality=85)
    subject = f"HEIC {uuid.uuid4().hex[:8]}"
    ticket_id = send_files(zendesk, web, subject, [("IMG_0420.HEIC", out.getvalue(), "image/heic")])
    [note] = settle(zendesk, worker, ticket_id, 1)
    assert note.attachments[0].file_name == "IMG_0420-marked.jpg"
    assert sniff(note.attachments[0].data) == "JPEG"
    [call] = calls_for(openai_fake, subject)
    assert call["parts"] == [("photo.jpg", "image/jpeg")]  # converted before it left


def test_attachment_urls_pointing_inside_are_never_fetched(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk, redis_url: str,
) -> None:
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    urls = {"meta": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "redis": f"http://127.0.0.1:{port}/", "foreign": "https://attacker.example/x.jpg"}
    ticket_id = zendesk.create_ticket(f"SSRF {uuid.uuid4().hex[:8]}", "photo attached")
    store = Store.from_url(redis_url)
    clients_before = store.r.info("clients")["connected_clients"]
    ids = {name: str(9_000_001 + i) for i, name in enumerate(urls)}
    for name, url in urls.items():
        event = {"type": "zen:event-type:ticket.attachment_linked_to_comment",
                 "id": str(uuid.uuid4()), "subject": f"zen:ticket:{ticket_id}",
                 "detail": {"id": str(ticket_id), "actor_id": str(CUSTOMER)},
                 "event": {"comment": {"id": "1", "attachment": {
                     "id": ids[name], "filename": f"{name}.jpg", "content_type": "image/jpeg",
                     "content_url": url}}}}
        assert post_signed(web.url, zendesk, event).status_code == 202
    for name in urls:
        record = job_reaches(store, job_id_for("zendesk", str(ticket_id), ids[name]), "failed")
        assert "not zendesk's nor an allowed attachment location" in record["reason"]
    assert store.r.info("clients")["connected_clients"] <= clients_before + 1
