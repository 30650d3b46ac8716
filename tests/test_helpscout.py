"""Help Scout end to end: a signed webhook → real Redis and worker → one note per customer photo
on the loopback Help Scout (the photo read from a later threads page, its bytes from the data
endpoint), tags merged into a set the API replaces, the warranty user assigned, deskmark's own
note event ignored; and the client's tag merge against concurrent writers, in-process."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid

import httpx

from deskmark.sandbox.helpscout import HConversation, SandboxHelpScout
from deskmark.sandbox.photos import damaged_product
from deskmark.sandbox.server import LoopbackServer
from integrations.config import Settings
from integrations.events import job_id_for
from integrations.helpscout import SPEC as HELPSCOUT
from integrations.helpscout.client import HelpScoutClient
from tests.helpers import HELPSCOUT_SECRET, WorkerProcess, settled, wait_for


def test_a_conversation_photo_and_a_reply_photo_get_one_note_each(
        helpscout: SandboxHelpScout, worker: WorkerProcess, web: LoopbackServer,
        redis_url: str) -> None:
    subject = f"Lamp shade cracked {uuid.uuid4().hex[:6]}"
    cid = helpscout.create_conversation(subject, "It arrived like this.",
                                        [("IMG_1001.jpg", damaged_product(seed=501), "image/jpeg")],
                                        tags=["shipping"])
    wait_for(lambda: "warranty_review" in helpscout.ticket_tags(cid), timeout=90)
    helpscout.add_thread(cid, "message", SandboxHelpScout.OTHER_AGENT_ID, "Sorry! Another photo?", [],
                         notify=False)
    helpscout.customer_reply(cid, "Here is the base.",
                             [("IMG_1002.jpg", damaged_product(seed=502), "image/jpeg")])
    wait_for(lambda: len(helpscout.marked_notes(cid)) >= 2, timeout=90)
    settled(helpscout, redis_url)
    notes = helpscout.notes(cid)
    assert len(notes) == 2 and all(n.attachments for n in notes)
    assert [n.attachments[0].filename for n in notes] == ["IMG_1001-marked.jpg", "IMG_1002-marked.jpg"]
    assert all(n.attachments[0].content_type == "image/jpeg" for n in notes)
    assert helpscout.ticket_tags(cid) == ["shipping", "deskmark_annotated", "warranty_review"]
    assert helpscout.warranty_assignee(cid) == SandboxHelpScout.WARRANTY_TARGET
    # Every webhook was answered: the two customer events enqueued, deskmark's note events ignored.
    assert sorted(set(helpscout.webhook_answers[-4:])) == [200, 202]
    # The second photo sits on a later threads page (two threads a page), found all the same.
    assert any("page=2" in r["query"] for r in helpscout.requests)
    first = helpscout.tickets[cid].threads[0].attachments[0]
    job = job_id_for("helpscout", str(cid), str(first.id))
    assert job in notes[0].body


def test_a_forged_or_missing_signature_is_401_and_other_events_are_200(
        helpscout: SandboxHelpScout, web: LoopbackServer) -> None:
    cid = helpscout.create_conversation("Forged", "x", [], notify=False)
    body = json.dumps(helpscout.conversation_json(helpscout.tickets[cid])).encode()
    signature = base64.b64encode(hmac.new(HELPSCOUT_SECRET.encode(), body, hashlib.sha1).digest()).decode()
    url = f"{web.url}/webhooks/helpscout"

    def post(headers: dict[str, str], content: bytes = body) -> int:
        return httpx.post(url, content=content, headers={"Content-Type": "application/json", **headers},
                          timeout=10).status_code

    assert post({"X-HelpScout-Event": "convo.created"}) == 401
    assert post({"X-HelpScout-Event": "convo.created", "X-HelpScout-Signature": "AAAA"}) == 401
    assert post({"X-HelpScout-Event": "convo.created", "X-HelpScout-Signature": signature},
                body + b" ") == 401  # a changed body
    assert post({"X-HelpScout-Event": "convo.agent.reply.created", "X-HelpScout-Signature": signature}) == 200
    assert post({"X-HelpScout-Signature": signature}) == 400  # no event named
    assert post({"X-HelpScout-Event": "convo.created", "X-HelpScout-Signature": signature}) == 202
    # The same signed body again (a replay): a duplicate.
    assert post({"X-HelpScout-Event": "convo.created", "X-HelpScout-Signature": signature}) == 200


def test_tags_written_to_a_set_the_api_replaces_keep_every_other_writers_tag(
        helpscout: SandboxHelpScout, settings: Settings) -> None:
    client = HelpScoutClient(settings.of(HELPSCOUT))
    try:
        cid = helpscout.create_conversation("Tags", "x", [], tags=["vip"], notify=False)
        reads = 0

        def agents(conversation: HConversation) -> None:
            nonlocal reads
            reads += 1
            if reads == 1:  # an agent tags the conversation a moment before deskmark writes
                conversation.tags.append("agent_moment_ago")
            if reads == 2:  # another writer replaced the set after deskmark's write, dropping its tags
                conversation.tags = ["vip", "agent_moment_ago", "someone_else"]

        helpscout.on_tags_read = agents
        client.escalate(str(cid), ["deskmark_annotated", "warranty_review"], 480009)
        assert helpscout.ticket_tags(cid) == ["vip", "agent_moment_ago", "someone_else",
                                              "deskmark_annotated", "warranty_review"]
        assert helpscout.warranty_assignee(cid) == 480009
        helpscout.on_tags_read = None
        puts = [r for r in helpscout.requests if r["method"] == "PUT" and f"/{cid}/tags" in r["path"]]
        assert len(puts) == 2  # written, lost to the other writer, written once more
        client.escalate(str(cid), ["deskmark_annotated", "warranty_review"], 480009)
        assert len([r for r in helpscout.requests if r["method"] in ("PUT", "PATCH")
                    and f"/{cid}" in r["path"]]) == 3  # nothing more to write the second time
    finally:
        helpscout.on_tags_read = None
        client.close()


def test_a_429_waits_for_x_ratelimit_retry_after(helpscout: SandboxHelpScout,
                                                  settings: Settings) -> None:
    client = HelpScoutClient(settings.of(HELPSCOUT))
    try:
        cid = helpscout.create_conversation("Limited", "x", [], notify=False)
        helpscout.faults.add("GET", rf"/v2/conversations/{cid}$", 429, {"message": "Rate limit"},
                             {"X-RateLimit-Retry-After": "7"})
        try:
            client.ticket(str(cid))
        except Exception as exc:  # noqa: BLE001 - the class and the wait are the assertion
            assert type(exc).__name__ == "RateLimited" and 6 <= exc.retry_after <= 7  # type: ignore[attr-defined]
        else:
            raise AssertionError("a 429 went unnoticed")
    finally:
        client.close()
