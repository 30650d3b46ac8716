"""Claim signals about the customer's photo: its own content credentials saying a generative
model made it, camera facts, and the same photo sent on another ticket. In the note, the Slack
review, the dashboard and the tags; never blocking."""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from typing import Any

import httpx
from PIL import Image

from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.photos import camera_photo, damaged_product, generated_photo, scene
from deskmark.sandbox.server import LoopbackServer
from deskmark.sandbox.slack import SandboxSlack
from deskmark.sandbox.zendesk import SandboxZendesk
from integrations.events import job_id_for
from integrations.i18n import ENGLISH
from tests.helpers import WorkerProcess, recompressed, review_message, wait_for
from worker import credentials
from worker.signals import checks_line, read_signals
from worker.store import Store

CUSTOMER = SandboxZendesk.CUSTOMER_ID
ANOTHER_CUSTOMER = 1002


def photo_ticket(zendesk: SandboxZendesk, store: Store, photo: bytes, author: int = CUSTOMER,
                 tags: tuple[str, ...] = ()) -> tuple[int, str]:
    """A ticket whose customer sends `photo`; its job id once the job is done."""
    ticket_id = zendesk.create_ticket(f"Damaged {uuid.uuid4().hex[:8]}", "It came like this.",
                                      tags=list(tags))
    comment = zendesk.add_comment(ticket_id, author, "photo", [("IMG_0001.jpg", photo, "image/jpeg")])
    return ticket_id, job_id_for("zendesk", str(ticket_id), str(comment.attachments[0].id))


def test_a_photo_its_own_credentials_call_generated_is_flagged_everywhere_and_still_marked(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk, slack: SandboxSlack,
    openai_fake: SandboxOpenAI, deskmark_env: dict[str, str],
) -> None:
    subject = f"Shattered vase {uuid.uuid4().hex[:8]}"
    ticket_id = zendesk.create_ticket(subject, "It came like this.", tags=["order-77"])
    photo = generated_photo(tool="DALL·E 3", seed=160)
    comment = zendesk.add_comment(ticket_id, CUSTOMER, "photo", [("vase.jpg", photo, "image/jpeg")])
    job_id = job_id_for("zendesk", str(ticket_id), str(comment.attachments[0].id))
    store = Store.from_url(deskmark_env["REDIS_URL"])
    wait_for(lambda: store.job(job_id).get("state") == "done", timeout=60)

    [note] = [n for n in zendesk.notes(ticket_id) if n.attachments]
    assert ("Checks: the photo's own content credentials say DALL·E 3 generated it "
            "(trainedAlgorithmicMedia)") in note.html_body
    assert zendesk.tickets[ticket_id].tags == ["order-77", "deskmark_annotated", "warranty_review",
                                               "deskmark_ai_generated"]
    review = review_message(slack, f"Zendesk ticket #{ticket_id}")
    texts = [b["text"]["text"] for b in review.blocks if b.get("type") == "section"]
    assert any("DALL·E 3 generated it" in t for t in texts)
    assert [b["type"] for b in review.blocks][-1] == "actions"  # the checks sit above the buttons
    page = httpx.get(f"{web.url}/", timeout=10).text
    row = page[page.index(f'data-job="{job_id}"'):]
    assert "DALL·E 3 generated it" in row[:row.index("</tr>")]  # on the dashboard too
    job_page = httpx.get(f"{web.url}/jobs/{job_id}", timeout=10)
    assert job_page.status_code == 200
    for shown in ("DALL·E 3 generated it", "valid", "(self-signed)",
                  hashlib.sha256(photo).hexdigest(), "gpt-image-2 (AI composite)",
                  f"/jobs/{job_id}/before.jpg", f"/jobs/{job_id}/marked.jpg", f"/jobs/{job_id}/model.jpg"):
        assert shown in job_page.text, shown
    for name in ("before", "marked", "model"):  # the customer's, the delivered, the model's own
        image = httpx.get(f"{web.url}/jobs/{job_id}/{name}.jpg", timeout=10)
        assert image.status_code == 200 and image.content[:3] == b"\xff\xd8\xff", name
    assert httpx.get(f"{web.url}/jobs/dm-not-a-job", timeout=10).status_code == 404
    # Marked and signed all the same: the flag never blocks.
    summary = credentials.read(note.attachments[0].data)
    assert summary is not None and summary.valid and summary.job_id == job_id


def test_ordinary_photos_are_not_flagged() -> None:
    received = time.time()
    for photo in (damaged_product(seed=161), camera_photo(seed=162)):
        signals = read_signals(io.BytesIO(photo), "image/jpeg", received)
        assert "generated_by" not in signals
    # Our own signed output declares an AI composite: read as a customer photo, that is flagged.
    keys = credentials.throwaway_keys()
    ours = credentials.sign(damaged_product(seed=163), io.BytesIO(damaged_product(seed=163)),
                            "image/jpeg", credentials.Provenance("dm-x", "zendesk", "1", "a.jpg",
                                                                 "gpt-image-2", []), keys)
    assert read_signals(io.BytesIO(ours), "image/jpeg", received)["source_type"] == \
        "compositeWithTrainedAlgorithmicMedia"


def test_camera_facts_are_facts() -> None:
    taken = time.strftime("%Y:%m:%d %H:%M:%S", time.gmtime(time.time() - 3 * 86400))
    signals = read_signals(io.BytesIO(camera_photo("Google", "Pixel 9", taken, seed=164)),
                           "image/jpeg", time.time())
    assert signals["camera"] == "Google Pixel 9" and 2.9 <= signals["taken_days_before"] <= 3.1
    assert checks_line(signals) == "Checks: camera Google Pixel 9; taken 3 days before deskmark received it."
    bare = read_signals(io.BytesIO(damaged_product(seed=165, fmt="PNG")), "image/png", time.time())
    assert checks_line(bare) == "Checks: no camera metadata (normal for screenshots and messaging apps)."
    # A PNG's camera facts are read too (from an eXIf chunk ahead of its pixels, without
    # decoding them).
    png = io.BytesIO()
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Apple", "iPhone 15"
    Image.open(io.BytesIO(damaged_product(seed=173, fmt="PNG"))).save(png, "PNG", exif=exif)
    assert read_signals(png, "image/png", time.time())["camera"] == "Apple iPhone 15"
    broken = read_signals(io.BytesIO(b"\xff\xd8\xff\xe0 not really a jpeg"), "image/jpeg", time.time())
    assert broken == {}


def test_the_same_photo_recompressed_on_another_customers_ticket_is_flagged_and_names_the_first(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk, slack: SandboxSlack,
    openai_fake: SandboxOpenAI, deskmark_env: dict[str, str],
) -> None:
    store = Store.from_url(deskmark_env["REDIS_URL"])
    photo = damaged_product(seed=166)
    first, first_job = photo_ticket(zendesk, store, photo)
    wait_for(lambda: store.job(first_job).get("state") == "done", timeout=60)
    assert "deskmark_duplicate_photo" not in zendesk.tickets[first].tags  # the first is not a re-use

    second, second_job = photo_ticket(zendesk, store, recompressed(photo), author=ANOTHER_CUSTOMER,
                                      tags=("order-78",))
    wait_for(lambda: store.job(second_job).get("state") == "done", timeout=60)
    today = ENGLISH.date(time.strftime("%Y-%m-%d", time.gmtime()))  # "Dec 7, 2026": the locale's
    said = (f"the same photo was sent on Zendesk ticket #{first} on {today} by another customer "
            f"(requester {CUSTOMER})")
    [note] = [n for n in zendesk.notes(second) if n.attachments]
    assert said in note.html_body
    assert zendesk.tickets[second].tags == ["order-78", "deskmark_annotated", "warranty_review",
                                            "deskmark_duplicate_photo"]
    review = review_message(slack, f"Zendesk ticket #{second}")
    sections = [b["text"]["text"] for b in review.blocks if b.get("type") == "section"]
    # In Slack, where guests may read it, the earlier ticket without the other customer's id.
    in_slack = f"the same photo was sent on Zendesk ticket #{first} on {today} by another customer"
    assert any(in_slack in text for text in sections) and not any(str(CUSTOMER) in t for t in sections)
    assert [b["type"] for b in review.blocks][-1] == "actions"  # above the buttons
    page = httpx.get(f"{web.url}/", timeout=10).text
    row = page[page.index(f'data-job="{second_job}"'):]
    assert said in row[:row.index("</tr>")]
    job_page = httpx.get(f"{web.url}/jobs/{second_job}", timeout=10).text
    assert said in job_page and f'href="/jobs/{first_job}"' in job_page  # the first photo's page
    # Marked and delivered all the same: the flag never blocks.
    assert credentials.read(note.attachments[0].data) is not None


def test_twenty_different_photos_flag_nothing(
    worker: WorkerProcess, zendesk: SandboxZendesk, openai_fake: SandboxOpenAI,
    deskmark_env: dict[str, str],
) -> None:
    store = Store.from_url(deskmark_env["REDIS_URL"])
    sent = [photo_ticket(zendesk, store, scene(seed), author=2000 + seed) for seed in range(950, 970)]
    assert len(sent) == 20
    wait_for(lambda: all(store.job(job_id).get("state") == "done" for _, job_id in sent), timeout=240)
    for ticket_id, _ in sent:
        assert zendesk.tickets[ticket_id].tags == ["deskmark_annotated", "warranty_review"], ticket_id
        [note] = [n for n in zendesk.notes(ticket_id) if n.attachments]
        assert "the same photo was sent" not in note.html_body


def test_a_broken_duplicate_index_never_blocks_the_marking(
    worker: WorkerProcess, zendesk: SandboxZendesk, openai_fake: SandboxOpenAI,
    deskmark_env: dict[str, str],
) -> None:
    store = Store.from_url(deskmark_env["REDIS_URL"])
    photo = damaged_product(seed=172)
    _, first_job = photo_ticket(zendesk, store, photo)
    wait_for(lambda: store.job(first_job).get("state") == "done", timeout=60)
    # The index's lists turn into something else (a stray write, a restore gone wrong): Redis
    # answers the next lookup of the same photo with WRONGTYPE.
    index_keys = list(store.r.scan_iter("dm:ph:*"))
    assert index_keys
    for key in index_keys:
        store.r.set(key, b"not a list")
    try:
        ticket_id, job_id = photo_ticket(zendesk, store, photo, author=ANOTHER_CUSTOMER)
        wait_for(lambda: store.job(job_id).get("state") == "done", timeout=60)
        assert zendesk.tickets[ticket_id].tags == ["deskmark_annotated", "warranty_review"]
        [note] = [n for n in zendesk.notes(ticket_id) if n.attachments]
        assert "Checks:" in note.html_body and credentials.read(note.attachments[0].data) is not None
        assert "seen_before" not in store.job(job_id)["mark"]["signals"]
    finally:
        store.r.delete(*index_keys)  # an empty index for the tests after this one


def test_customer_written_text_is_capped_and_slack_blocks_stay_within_slacks_limits() -> None:
    from integrations.slack.notifier import Review, review_message, share_message

    long_make = "Phone\x07Maker\u202e" + "X" * 5000
    photo = camera_photo(make=long_make, model="Model\x1b[31m 9", seed=167)
    found = read_signals(io.BytesIO(photo), "image/jpeg", time.time())
    assert len(found["camera"]) <= 64 and "\x07" not in found["camera"] and "\u202e" not in found["camera"]
    assert found["camera"].startswith("PhoneMaker")
    forged: Any = {"generated_by": "Tool\x00" + "Y" * 3000, "source_type": "z" * 500,
                    "camera": "C" * 4000, "credentials_unreadable": "\x1b" + "r" * 900}
    line = checks_line(forged)  # a record written by an older deskmark, or tampered with
    assert len(line) < 600 and "\x00" not in line and "\x1b" not in line
    review = Review("dm-x", "zendesk", "1", "http://x/1", "a" * 5000 + ".jpg", b"\xff\xd8", "w" * 9000,
                    "crack", "$0", checks="Checks: " + "c" * 9000)
    text, blocks = review_message(review, buttons=True)
    assert blocks and all(len(b["text"]["text"]) <= 3000 for b in blocks if b["type"] == "section")
    assert [b["type"] for b in blocks] == ["section", "section", "actions"]
    title, comment = share_message(review)
    assert len(title) <= 250 and len(comment) <= 3000
