"""Gorgias end to end: HTTP-integration webhook → real Redis and worker → an internal note with the
marked photo on the loopback Gorgias (upload, then message), tags added beside the existing
ones, the warranty team assigned; the photo read from the second cursor page, downloaded from a
private file through the download endpoint, never with credentials on the file host."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from deskmark.sandbox.gorgias import SandboxGorgias
from deskmark.sandbox.photos import damaged_product
from deskmark.sandbox.server import LoopbackServer
from deskmark.sandbox.slack import SandboxSlack
from integrations.events import job_id_for
from integrations.gorgias import SPEC as GORGIAS
from tests.helpers import APPROVER, GORGIAS_SECRET, WorkerProcess, check, review_message, wait_for
from worker.store import Store


def scans(worker: WorkerProcess, ticket_id: int) -> int:
    """How many webhooks for the ticket the worker has read to the end (its log says so)."""
    done = 0
    for line in worker.output().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if (record.get("ticket_id") == str(ticket_id) and record.get("vendor") == "gorgias"
                and "photo jobs queued" in record.get("message", "")):
            done += 1
    return done


def seed(gorgias: SandboxGorgias) -> int:
    """A ticket whose photo is its third message: with two messages a page, on page two."""
    ticket_id = gorgias.create_ticket("Blender arrived broken", "My order came today.",
                                      tags=["vip", "order-1042"], notify=False)
    gorgias.add_message(ticket_id, "Sorry to hear that! Could you send a photo?", from_agent=True,
                        notify=False)
    gorgias.add_message(ticket_id, "Here it is.", [("IMG_7781.jpg", damaged_product(seed=141), "image/jpeg")])
    return ticket_id


def test_a_photo_on_the_second_page_gets_one_internal_note(
    gorgias: SandboxGorgias, worker: WorkerProcess, redis_url: str,
) -> None:
    files_before = len(gorgias.files.requests)
    ticket_id = seed(gorgias)
    assert gorgias.webhook_answers[-1] == 202
    wait_for(lambda: "warranty_review" in gorgias.ticket_tags(ticket_id), timeout=90)
    # deskmark's own note fired the integration too; the worker read that webhook and added nothing.
    wait_for(lambda: scans(worker, ticket_id) >= 2, timeout=30)

    [note] = gorgias.notes(ticket_id)
    assert note.channel == "internal-note" and note.via == "api"
    [marked] = note.attachments
    assert marked.content_type == "image/jpeg" and marked.name.endswith(".jpg")
    assert Image.open(io.BytesIO(marked.data)).format == "JPEG"
    assert "IMG_7781.jpg" in note.body_html
    assert gorgias.ticket_tags(ticket_id) == ["vip", "order-1042", "deskmark_annotated",
                                              "warranty_review"]
    assert gorgias.warranty_assignee(ticket_id) == SandboxGorgias.WARRANTY_TARGET

    # The messages were read across cursors.
    listed = [r for r in gorgias.requests if r["path"] == "/api/messages"]
    assert any("cursor=" in r["query"] for r in listed)
    # The file is private: the direct URL was refused, the download endpoint (with the API
    # key) redirected to a signed URL; the file host never saw credentials.
    file_requests = gorgias.files.requests[files_before:]
    assert len(file_requests) >= 2
    assert all(r["authorization"] is None for r in file_requests)
    assert any(r["path"].startswith("/api/attachment/download/") for r in gorgias.requests)
    # Tags were added with POST (a PUT would replace the agents' tags).
    tag_calls = [r for r in gorgias.requests if r["path"] == f"/api/tickets/{ticket_id}/tags"]
    assert [r["method"] for r in tag_calls] == ["POST"]

    store = Store.from_url(redis_url)
    job_id = job_id_for("gorgias", str(ticket_id), f"{gorgias.tickets[ticket_id].messages[2].id}-0")
    wait_for(lambda: store.job(job_id).get("state") == "done", timeout=30)  # after Slack's review
    assert store.job(job_id)["vendor"] == "gorgias"


def test_a_redelivery_and_agent_messages_add_nothing(
    gorgias: SandboxGorgias, worker: WorkerProcess,
) -> None:
    ticket_id = seed(gorgias)
    wait_for(lambda: "warranty_review" in gorgias.ticket_tags(ticket_id), timeout=90)
    wait_for(lambda: scans(worker, ticket_id) >= 2, timeout=30)

    assert gorgias.fire(ticket_id) == 202  # Gorgias retrying a delivery
    # An agent's message with an image, and an internal note with one: neither is a customer's.
    gorgias.add_message(ticket_id, "Like this one?", [("reference.jpg", damaged_product(seed=142), "image/jpeg")],
                        from_agent=True)
    gorgias.add_message(ticket_id, "note to self", [("note.png", damaged_product(seed=143), "image/jpeg")],
                        from_agent=True, channel="internal-note")
    wait_for(lambda: scans(worker, ticket_id) >= 5, timeout=30)

    assert len(gorgias.notes(ticket_id)) == 1
    assert gorgias.ticket_tags(ticket_id).count("warranty_review") == 1


@pytest.mark.parametrize("headers", [{}, {"X-Deskmark-Secret": "wrong"}, {"X-Deskmark-Secret": ""},
                                     {"Authorization": f"Basic {GORGIAS_SECRET}"}],
                         ids=["none", "wrong", "empty", "not a header Gorgias sends"])
def test_a_wrong_or_missing_secret_is_401(headers: dict[str, Any], web: LoopbackServer) -> None:
    answer = httpx.post(f"{web.url}/webhooks/gorgias", json={"ticket_id": "41000"},
                        headers=headers, timeout=10)
    assert answer.status_code == 401
    assert "X-Deskmark-Secret" in answer.json()["detail"]


@pytest.mark.parametrize("body", [b"{}", b'{"ticket_id": "{{ticket.id}}"}', b"[]", b"not json"])
def test_bodies_without_a_ticket_id_are_400(body: bytes, web: LoopbackServer) -> None:
    answer = httpx.post(f"{web.url}/webhooks/gorgias", content=body,
                        headers={"X-Deskmark-Secret": GORGIAS_SECRET}, timeout=10)
    assert answer.status_code == 400


def test_429_with_retry_after_is_honoured(gorgias: SandboxGorgias, worker: WorkerProcess) -> None:
    # Gorgias's answer when the key's bucket is empty; the scan waits what it says, then runs.
    gorgias.faults.add("GET", r"^/api/messages$", 429, {"error": {"msg": "Too many requests"}},
                       headers={"Retry-after": "2"})
    ticket_id = seed(gorgias)
    wait_for(lambda: "warranty_review" in gorgias.ticket_tags(ticket_id), timeout=90)
    assert len(gorgias.notes(ticket_id)) == 1
    listed = [r["time"] for r in gorgias.requests
              if r["path"] == "/api/messages" and f"ticket_id={ticket_id}" in r["query"]]
    assert listed[1] - listed[0] >= 2.0  # the refused call, then the retry after Retry-after


def test_the_client_pauses_while_the_bucket_is_empty(deskmark_env: dict[str, str]) -> None:
    from integrations.config import Settings
    from integrations.errors import RateLimited
    from integrations.gorgias.client import GorgiasClient

    sandbox = SandboxGorgias(bucket=3).start()
    try:
        own = Settings.from_env({**deskmark_env, **sandbox.environment("s3cret-s3cret")},
                                dotenv=None).of(GORGIAS)
        client = GorgiasClient(own)
        ticket_id = sandbox.create_ticket("t", "hello", notify=False)
        for _ in range(3):
            client.ticket(str(ticket_id))
        with pytest.raises(RateLimited) as refused:
            client.ticket(str(ticket_id))
        assert refused.value.status == 429 and refused.value.retry_after is not None
        assert 15 <= refused.value.retry_after <= 20  # the 20 s window of a 3-call bucket
        sent = len(sandbox.requests)
        with pytest.raises(RateLimited):
            client.ticket(str(ticket_id))  # paused: not even sent
        assert len(sandbox.requests) == sent
    finally:
        sandbox.stop()


def test_a_warranty_approval_in_slack_flows_back_to_the_gorgias_ticket(
    gorgias: SandboxGorgias, worker: WorkerProcess, slack: SandboxSlack,
) -> None:
    ticket_id = seed(gorgias)
    message = review_message(slack, f"Gorgias ticket #{ticket_id}")
    assert slack.click(message, "warranty_approve", APPROVER, "dana.reviewer") == 200
    wait_for(lambda: "warranty_approved" in gorgias.ticket_tags(ticket_id))
    decision = wait_for(lambda: [n for n in gorgias.notes(ticket_id) if "Warranty claim" in n.body_html])
    assert "approved" in decision[0].body_html and "dana.reviewer" in decision[0].body_html
    assert {"vip", "deskmark_annotated"} <= set(gorgias.ticket_tags(ticket_id))  # added, not replaced


def test_a_refused_upload_is_a_dead_letter_with_a_note_and_replays(
    gorgias: SandboxGorgias, worker: WorkerProcess, redis_url: str,
) -> None:
    # Gorgias refusing the upload (a key without the right) fails the job for good: it is a dead
    # letter, the agents get a note saying so, and a replay after the fix finishes it.
    gorgias.faults.add("POST", r"^/api/upload$", 403, {"error": {"msg": "Forbidden"}})
    ticket_id = seed(gorgias)
    store = Store.from_url(redis_url)
    job_id = job_id_for("gorgias", str(ticket_id), f"{gorgias.tickets[ticket_id].messages[2].id}-0")
    record = wait_for(lambda: (r := store.job(job_id)).get("state") == "failed" and r, timeout=60)
    assert "gorgias answered 403 to POST /api/upload" in record["reason"]
    assert job_id in store.dead_ids()
    [failure] = wait_for(lambda: gorgias.notes(ticket_id))
    assert not failure.attachments and job_id in failure.body_html

    from integrations.config import Settings
    from worker.replay import replay
    assert replay(Settings.from_env(worker.env, dotenv=None), [job_id], failed=False,
                  echo=lambda _: None) == 0
    wait_for(lambda: store.job(job_id).get("state") == "done", timeout=60)
    assert [len(n.attachments) for n in gorgias.notes(ticket_id)] == [0, 1]
    assert job_id not in store.dead_ids()


def test_without_users_0_the_own_user_is_found_by_email(deskmark_env: dict[str, str]) -> None:
    from integrations.config import Settings
    from integrations.gorgias.client import GorgiasClient

    sandbox = SandboxGorgias(users_zero=False).start()
    try:
        own = Settings.from_env({**deskmark_env, **sandbox.environment("s3cret-s3cret")},
                                dotenv=None).of(GORGIAS)
        assert GorgiasClient(own).own_user_id() == str(SandboxGorgias.AGENT_ID)
        paths = [r["path"] for r in sandbox.requests]
        assert paths == ["/api/users/0", "/api/users"]
    finally:
        sandbox.stop()


@pytest.mark.e2e  # `deskmark check` / `verify` as a process
def test_check_signs_in_to_gorgias(deskmark_env: dict[str, str], tmp_path: Path) -> None:

    result = check(deskmark_env, tmp_path)
    assert result.returncode == 0
    assert f"signed in as user {SandboxGorgias.AGENT_ID}" in result.stdout
    bad = check({**deskmark_env, "GORGIAS_API_KEY": "nope"}, tmp_path)
    assert bad.returncode == 1 and "check GORGIAS_EMAIL / GORGIAS_API_KEY" in bad.stdout


@pytest.mark.parametrize("path", ["/../../api/tickets/1", "/a1b2c3/..", "/a1b2c3/%2e%2e/api/users",
                                  "/a1b2c3/x/y/../../../api/account", "/a1b2c3/%2E./%2e%2E/api/users/0"])
def test_the_private_file_fallback_never_builds_another_api_path(gorgias: SandboxGorgias, path: str,
                                                                 redis_url: str) -> None:
    from integrations.config import Settings
    from integrations.errors import UnsafeURL
    from integrations.events import SourcePhoto
    from integrations.gorgias.client import GorgiasClient

    settings = Settings.from_env({"REDIS_URL": redis_url, **gorgias.environment(GORGIAS_SECRET),
                                  "DESKMARK_ATTACHMENT_HOSTS": gorgias.files_host}, dotenv=None)
    client = GorgiasClient(settings.of(GORGIAS), settings.attachment_hosts)
    before = len(gorgias.requests)
    photo = SourcePhoto("1-0", "x.jpg", "image/jpeg", f"http://{gorgias.files_host}{path}")
    try:
        with pytest.raises(UnsafeURL):
            client.download("1", photo)
    finally:
        client.close()
    assert [r for r in gorgias.requests[before:] if r["path"].startswith("/api/") and
            not r["path"].startswith("/api/attachment/download/")] == []
