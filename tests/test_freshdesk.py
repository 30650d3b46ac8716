"""Freshdesk end to end: automation-rule webhook → real Redis and worker → a private note with the
marked photo on the loopback Freshdesk, tags merged, group assigned."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import httpx
import pytest
import redis
from flask.testing import FlaskClient

from deskmark.sandbox.freshdesk import SandboxFreshdesk
from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.photos import damaged_product
from deskmark.sandbox.server import LoopbackServer
from integrations.config import Settings
from integrations.events import RawRequest, job_id_for
from integrations.freshdesk import SPEC as FRESHDESK
from integrations.freshdesk.client import FreshdeskClient, inline_images
from integrations.freshdesk.webhook import parse
from tests.helpers import (
    FIXTURES,
    FRESHDESK_GROUP,
    WorkerProcess,
    calls_for,
    check,
    enqueued,
    settle,
    settled,
    wait_for,
)
from webhooks import create_app
from worker.images import sniff
from worker.store import Store

CUSTOMER = SandboxFreshdesk.CUSTOMER_ID


# --- the webhook endpoint ----------------------------------------------------------------------
@pytest.fixture
def intake(deskmark_env: dict[str, str]) -> tuple[FlaskClient, redis.Redis]:
    url = deskmark_env["REDIS_URL"].rsplit("/", 1)[0] + "/5"
    queue = redis.Redis.from_url(url)
    queue.flushdb()
    app = create_app(Settings.from_env({**deskmark_env, "REDIS_URL": url}, dotenv=None))
    return app.test_client(), queue


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"freshdesk:{password}".encode()).decode()


BODY = (FIXTURES / "freshdesk" / "automation__deskmark_template.json").read_bytes()


@pytest.mark.parametrize("headers", [
    {}, {"X-Deskmark-Secret": "wrong"}, {"Authorization": basic("wrong")},
    {"Authorization": "Basic !!!not-base64"}, {"X-Deskmark-Secret": ""},
], ids=["none", "wrong header", "wrong basic", "garbled basic", "empty header"])
def test_wrong_or_missing_secret_is_401_and_enqueues_nothing(
    headers: dict[str, str], intake: tuple[FlaskClient, redis.Redis],
) -> None:
    client, queue = intake
    assert client.post("/webhooks/freshdesk", data=BODY, headers=headers).status_code == 401
    assert enqueued(queue) == []


def test_secret_by_header_or_basic_is_accepted_and_scans_coalesce(
    intake: tuple[FlaskClient, redis.Redis], freshdesk: SandboxFreshdesk,
) -> None:
    client, queue = intake
    by_header = {"X-Deskmark-Secret": freshdesk.webhook_secret}
    assert client.post("/webhooks/freshdesk", data=BODY, headers=by_header).status_code == 202
    # The same ticket again before its scan started: nothing to add.
    again = client.post("/webhooks/freshdesk", data=BODY,
                        headers={"Authorization": basic(freshdesk.webhook_secret)})
    assert again.status_code == 200 and "already queued" in again.get_json()["detail"]
    [message] = enqueued(queue)
    event = message["event"]
    assert isinstance(event, dict)
    assert event["vendor"] == "freshdesk" and event["ticket_id"] == "12"
    assert event["extra"] == {"triggered_event": "{status:{from:4,to:6}}"}


@pytest.mark.parametrize("body", [b"{not json", b'{"freshdesk_webhook": {}}',
                                  b'{"ticket_id": "{{ticket.id}}"}', b"[]"])
def test_malformed_bodies_are_400(body: bytes, intake: tuple[FlaskClient, redis.Redis],
                                  freshdesk: SandboxFreshdesk) -> None:
    client, queue = intake
    response = client.post("/webhooks/freshdesk", data=body,
                           headers={"X-Deskmark-Secret": freshdesk.webhook_secret})
    assert response.status_code == 400
    assert enqueued(queue) == []


@pytest.mark.parametrize("path", sorted((FIXTURES / "freshdesk").glob("*.json")), ids=lambda p: p.name)
def test_every_freshdesk_fixture_parses(path: Path) -> None:
    event = parse(RawRequest(path.read_bytes(), {}))
    assert event.vendor == "freshdesk" and event.ticket_id.isdigit() and event.delivery_key == ""


def test_inline_images_are_read_from_html() -> None:
    html = ('<div>see <img src="https://s3.amazonaws.com/cdn.freshdesk.com/x/original/guinea_pig.png'
            '?1383958880" class="inline-image" data-id="12744808" style=""></div><img src="a.png">')
    assert inline_images(html) == [("12744808", "https://s3.amazonaws.com/cdn.freshdesk.com/x/"
                                                "original/guinea_pig.png?1383958880")]


# --- the client against the loopback Freshdesk --------------------------------------------------
def test_the_client_pages_conversations_and_honours_429(settings: Settings,
                                                       freshdesk: SandboxFreshdesk) -> None:
    ticket_id = freshdesk.create_ticket("Paging", "many replies")
    for i in range(5):
        freshdesk.add_reply(ticket_id, f"reply {i}", [(f"r{i}.jpg", b"\xff\xd8\xff", "image/jpeg")])
    freshdesk.per_page = 2
    client = FreshdeskClient(settings.of(FRESHDESK), settings.attachment_hosts)
    try:
        assert [p.filename for p in client.photos(str(ticket_id))] == [f"r{i}.jpg" for i in range(5)]
        pages = [r for r in freshdesk.requests if r["path"].endswith(f"/{ticket_id}/conversations")]
        assert len(pages) == 3 and "include=conversations" not in str(freshdesk.requests)
        freshdesk.faults.add("GET", r"/agents/me$", 429, {"code": "rate_limited"}, {"Retry-After": "7"})
        from integrations.errors import RateLimited

        with pytest.raises(RateLimited) as limited:
            client.own_user_id()
        assert limited.value.retry_after == 7.0
        calls = len(freshdesk.requests)
        with pytest.raises(RateLimited):  # paused: no call spent on a known 429
            client.own_user_id()
        assert len(freshdesk.requests) == calls
    finally:
        freshdesk.per_page = 100
        client.close()


def test_the_sandbox_refuses_notes_that_real_freshdesk_refuses(freshdesk: SandboxFreshdesk) -> None:
    ticket_id = freshdesk.create_ticket("Multipart", "x")
    url = f"{freshdesk.url}/api/v2/tickets/{ticket_id}/notes"
    auth = (freshdesk.api_key, "X")
    nameless = httpx.post(url, auth=auth, data={"body": "hi", "private": "true"},
                          files=[("attachments[]", ("", b"\xff\xd8\xff", "application/octet-stream"))])
    assert nameless.status_code == 400 and "datatype_mismatch" in nameless.text
    missing_body = httpx.post(url, auth=auth, data={"private": "true"},
                              files=[("attachments[]", ("a.jpg", b"\xff\xd8\xff", "image/jpeg"))])
    assert missing_body.status_code == 400 and "missing_field" in missing_body.text


# --- end to end ---------------------------------------------------------------------------------
def test_a_photo_in_the_description_gets_one_note_with_tags_merged(
    worker: WorkerProcess, web: LoopbackServer, freshdesk: SandboxFreshdesk,
    openai_fake: SandboxOpenAI,
) -> None:
    subject = f"Dented fridge {uuid.uuid4().hex[:8]}"
    ticket_id = freshdesk.create_ticket(subject, "<div>It arrived dented.</div>",
                                        [("fridge.jpg", damaged_product(seed=21), "image/jpeg")],
                                        tags=["vip", "delivery"])
    assert freshdesk.fire(ticket_id) == 202
    [note] = settle(freshdesk, worker, ticket_id, 1)
    [marked] = note.attachments
    assert marked.content_type == "image/jpeg" and sniff(marked.data) == "JPEG"
    assert marked.name == "fridge-marked.jpg" and note.private
    ticket = freshdesk.tickets[ticket_id]
    assert ticket.tags == ["vip", "delivery", "deskmark_annotated", "warranty_review"]
    assert ticket.group_id == int(FRESHDESK_GROUP)
    assert len(calls_for(openai_fake, subject)) == 1
    assert freshdesk.files.requests and all(r["authorization"] is None for r in freshdesk.files.requests)


def test_a_photo_in_the_second_conversation_with_a_lying_extension_is_marked(
    worker: WorkerProcess, web: LoopbackServer, freshdesk: SandboxFreshdesk,
    openai_fake: SandboxOpenAI,
) -> None:
    subject = f"Cracked lid {uuid.uuid4().hex[:8]}"
    ticket_id = freshdesk.create_ticket(subject, "<div>Lid cracked, photo follows.</div>")
    freshdesk.add_reply(ticket_id, "<div>Thanks, we are looking.</div>", user_id=SandboxFreshdesk.AGENT_ID + 5)
    freshdesk.add_reply(ticket_id, "<div>Here it is.</div>",
                        [("lid.png", damaged_product(seed=22), "image/png")])  # JPEG bytes
    assert freshdesk.fire(ticket_id, how="basic") == 202
    [note] = settle(freshdesk, worker, ticket_id, 1)
    assert note.attachments[0].name == "lid-marked.jpg"
    assert len(calls_for(openai_fake, subject)) == 1


def test_the_same_webhook_again_by_header_and_basic_adds_no_note(
    worker: WorkerProcess, web: LoopbackServer, freshdesk: SandboxFreshdesk,
    openai_fake: SandboxOpenAI,
) -> None:
    subject = f"Torn box {uuid.uuid4().hex[:8]}"
    ticket_id = freshdesk.create_ticket(subject, "<div>Box torn.</div>",
                                        [("box.jpg", damaged_product(seed=23), "image/jpeg")])
    freshdesk.fire_on_note = True  # an Observer rule fires again on deskmark's own note
    try:
        assert freshdesk.fire(ticket_id, how="header") == 202
        settle(freshdesk, worker, ticket_id, 1)
        assert freshdesk.fire(ticket_id, how="header") in (200, 202)
        assert freshdesk.fire(ticket_id, how="basic") in (200, 202)
        settled(freshdesk, worker.env["REDIS_URL"])
    finally:
        freshdesk.fire_on_note = False
    assert len(freshdesk.notes(ticket_id)) == 1
    assert len(calls_for(openai_fake, subject)) == 1
    assert freshdesk.tickets[ticket_id].tags.count("warranty_review") == 1


def test_an_expired_s3_link_is_fetched_again_without_credentials(
    worker: WorkerProcess, web: LoopbackServer, freshdesk: SandboxFreshdesk,
) -> None:
    ticket_id = freshdesk.create_ticket(f"Expired {uuid.uuid4().hex[:8]}", "<div>photo</div>",
                                        [("late.jpg", damaged_product(seed=24), "image/jpeg")])
    before = len(freshdesk.files.requests)
    freshdesk.files.expire_next = 1
    assert freshdesk.fire(ticket_id) == 202
    settle(freshdesk, worker, ticket_id, 1)
    downloads = freshdesk.files.requests[before:]
    assert len(downloads) == 2 and all(d["authorization"] is None for d in downloads)
    lookups = [r for r in freshdesk.requests if r["path"] == f"/api/v2/tickets/{ticket_id}"]
    assert len(lookups) >= 3  # the scan, then a fresh link before each download


def test_an_inline_image_in_a_reply_is_marked(
    worker: WorkerProcess, web: LoopbackServer, freshdesk: SandboxFreshdesk,
) -> None:
    ticket_id = freshdesk.create_ticket(f"Inline {uuid.uuid4().hex[:8]}", "<div>see below</div>")
    _, html = freshdesk.inline_image("pasted.jpg", damaged_product(seed=25), "image/jpeg")
    freshdesk.add_reply(ticket_id, f"<div>pasted:</div>{html}")
    assert freshdesk.fire(ticket_id) == 202
    [note] = settle(freshdesk, worker, ticket_id, 1)
    assert note.attachments[0].name == "pasted-marked.jpg"


def test_an_inline_image_on_a_foreign_bucket_is_never_fetched(
    worker: WorkerProcess, web: LoopbackServer, freshdesk: SandboxFreshdesk, redis_url: str,
) -> None:
    # Customer-written HTML pointing at someone else's bucket on S3's shared host.
    html = ('<div><img src="https://s3.amazonaws.com/attacker-bucket/pwn.jpg" class="inline-image" '
            'data-id="424242" style=""></div>')
    ticket_id = freshdesk.create_ticket(f"Foreign {uuid.uuid4().hex[:8]}", html)
    assert freshdesk.fire(ticket_id) == 202
    store = Store.from_url(redis_url)
    job_id = job_id_for("freshdesk", str(ticket_id), "424242")
    record = wait_for(lambda: (r := store.job(job_id)).get("state") == "failed" and r, timeout=60)
    assert "s3.amazonaws.com/attacker-bucket" in record["reason"]
    assert "not freshdesk's nor an allowed attachment location" in record["reason"]


@pytest.mark.e2e  # `deskmark check` / `verify` as a process
def test_check_signs_in_to_freshdesk(deskmark_env: dict[str, str], tmp_path: Path) -> None:

    result = check(deskmark_env, tmp_path)
    assert result.returncode == 0 and "signed in as user 77000001" in result.stdout
    bad = check({**deskmark_env, "FRESHDESK_API_KEY": "nope"}, tmp_path)
    assert bad.returncode == 1 and "check FRESHDESK_API_KEY" in bad.stdout
