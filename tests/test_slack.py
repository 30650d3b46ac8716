"""Slack warranty review end to end: upload + buttons after the note, signed clicks flow back
to the ticket once, only from allowed reviewers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import pytest

from deskmark.sandbox.freshdesk import SandboxFreshdesk
from deskmark.sandbox.photos import damaged_product
from deskmark.sandbox.server import LoopbackServer
from deskmark.sandbox.slack import Message, SandboxSlack
from deskmark.sandbox.zendesk import SandboxZendesk
from integrations.config import SlackSettings
from integrations.errors import PermanentError
from integrations.events import RawRequest, job_id_for
from integrations.slack.interactions import verify
from integrations.slack.notifier import Review, SlackNotifier, review_value
from tests.helpers import (
    APPROVER,
    Stack,
    WorkerProcess,
    post_signed,
    review_message,
    send_photo,
    settled,
    wait_for,
)
from worker.store import Store

SLACK_DOCS_BODY = (
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmib"
    "IGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")


def zendesk_photo(zendesk: SandboxZendesk, web: LoopbackServer) -> int:
    ticket_id = zendesk.create_ticket(f"Cracked case {uuid.uuid4().hex[:8]}", "It came cracked.")
    comment = zendesk.add_comment(ticket_id, zendesk.CUSTOMER_ID, "photo",
                                  [("case.jpg", damaged_product(seed=31), "image/jpeg")], notify=False)
    event = zendesk.event_for(ticket_id, comment, comment.attachments[0], zendesk.CUSTOMER_ID)
    assert post_signed(web.url, zendesk, event).status_code == 202
    return ticket_id


def test_the_slack_docs_signature_vector_verifies() -> None:
    class At:
        def now(self) -> float:
            return 1531420618.0

    headers = {"x-slack-request-timestamp": "1531420618",
               "x-slack-signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"}
    request = RawRequest(SLACK_DOCS_BODY.encode(), headers)
    assert verify(request, "8f742231b10e8888abcd99yyyzzz85a5", clock=At())  # type: ignore[arg-type]
    assert not verify(request, "another-secret", clock=At())  # type: ignore[arg-type]


def test_a_marked_photo_goes_to_slack_with_approve_and_reject(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk, slack: SandboxSlack,
) -> None:
    ticket_id = zendesk_photo(zendesk, web)
    message = review_message(slack, f"Zendesk ticket #{ticket_id}")
    settled(zendesk, worker.env["REDIS_URL"])
    uploads = [u for u in slack.completed_uploads(SandboxSlack.CHANNEL)
               if f"ticket #{ticket_id}*" in (u.initial_comment or "")]
    assert len(uploads) == 1 and uploads[0].data.startswith(b"\xff\xd8\xff")
    assert "cracked screen" in (uploads[0].initial_comment or "")  # what was marked
    assert "$0.0" in (uploads[0].initial_comment or "")  # and what it cost
    assert len(slack.messages_about(f"Zendesk ticket #{ticket_id}")) == 1
    assert [b["action_id"] for b in message.buttons()] == ["warranty_approve", "warranty_reject"]
    # the three steps of files_upload_v2, in order
    methods = [c["method"] for c in slack.calls]
    assert "files.upload" not in methods
    first = methods.index("files.getUploadURLExternal")
    assert "files.completeUploadExternal" in methods[first:]


def test_an_allowed_approval_tags_notes_and_closes_the_review_once(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk, slack: SandboxSlack,
) -> None:
    ticket_id = zendesk_photo(zendesk, web)
    message = review_message(slack, f"Zendesk ticket #{ticket_id}")
    assert slack.click(message, "warranty_approve", APPROVER, "dana.reviewer") == 200
    wait_for(lambda: "warranty_approved" in zendesk.tickets[ticket_id].tags)
    note = wait_for(lambda: [n for n in zendesk.notes(ticket_id) if "Warranty claim" in n.html_body])[0]
    assert "approved" in note.html_body and "dana.reviewer" in note.html_body
    assert APPROVER in note.html_body and not note.public
    wait_for(lambda: not message.buttons())
    assert f"Approved by <@{APPROVER}>" in message.text
    # A second click, and the other button later: nothing changes, and the reviewer is told.
    tags_before = list(zendesk.tickets[ticket_id].tags)
    notes_before = len(zendesk.notes(ticket_id))
    older = Message(message.channel, message.ts, "", message.history[0]["blocks"])
    answered = len(slack.responses)
    assert slack.click(older, "warranty_approve", APPROVER) == 200
    assert slack.click(older, "warranty_reject", "U0OTHERBOSS") == 200
    wait_for(lambda: len(slack.responses) >= answered + 2)
    assert len(slack.responses[answered:]) == 2 and all(
        "Already approved" in r["text"] and r["response_type"] == "ephemeral" for r in slack.responses[answered:])
    assert zendesk.tickets[ticket_id].tags == tags_before
    assert len(zendesk.notes(ticket_id)) == notes_before
    assert "warranty_rejected" not in zendesk.tickets[ticket_id].tags


def test_a_rejection_on_a_freshdesk_ticket(
    worker: WorkerProcess, web: LoopbackServer, freshdesk: SandboxFreshdesk, slack: SandboxSlack,
) -> None:
    ticket_id = freshdesk.create_ticket(f"Broken leg {uuid.uuid4().hex[:8]}", "<div>chair leg</div>",
                                        [("leg.jpg", damaged_product(seed=32), "image/jpeg")])
    assert freshdesk.fire(ticket_id) == 202
    message = review_message(slack, f"Freshdesk ticket #{ticket_id}")
    assert slack.click(message, "warranty_reject", APPROVER, "dana.reviewer") == 200
    wait_for(lambda: "warranty_rejected" in freshdesk.tickets[ticket_id].tags)
    note = wait_for(lambda: [n for n in freshdesk.notes(ticket_id) if "Warranty claim" in n.body])[0]
    assert "rejected" in note.body and "dana.reviewer" in note.body and note.private
    assert "deskmark_annotated" in freshdesk.tickets[ticket_id].tags  # kept by the merge
    wait_for(lambda: not message.buttons())
    assert f"Rejected by <@{APPROVER}>" in message.text


def test_forged_stale_and_unlisted_clicks_change_nothing(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk, slack: SandboxSlack,
) -> None:
    ticket_id = zendesk_photo(zendesk, web)
    message = review_message(slack, f"Zendesk ticket #{ticket_id}")
    settled(zendesk, worker.env["REDIS_URL"])
    tags = list(zendesk.tickets[ticket_id].tags)
    notes = len(zendesk.notes(ticket_id))
    assert slack.click(message, "warranty_approve", APPROVER, sign=False) == 401
    assert slack.click(message, "warranty_approve", APPROVER, timestamp=int(time.time()) - 600) == 401
    answered = len(slack.responses)
    assert slack.click(message, "warranty_approve", "U0NOTALLOWED", "intern") == 200
    wait_for(lambda: len(slack.responses) > answered)
    assert "not on the list" in slack.responses[-1]["text"]
    settled(zendesk, worker.env["REDIS_URL"])
    assert zendesk.tickets[ticket_id].tags == tags and len(zendesk.notes(ticket_id)) == notes
    assert message.buttons()  # still open for a real reviewer


def test_a_slack_429_is_waited_out_and_the_upload_completes(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk, slack: SandboxSlack,
) -> None:
    slack.faults.add("POST", "/api/files.getUploadURLExternal", 429,
                     {"ok": False, "error": "ratelimited"}, {"Retry-After": "2"})
    ticket_id = zendesk_photo(zendesk, web)
    review_message(slack, f"Zendesk ticket #{ticket_id}")
    attempts = [c["time"] for c in slack.calls if c["method"] == "files.getUploadURLExternal"][-2:]
    assert attempts[1] - attempts[0] >= 2.0
    assert [u for u in slack.completed_uploads() if f"ticket #{ticket_id}*" in (u.initial_comment or "")]


@pytest.mark.parametrize(("channel", "code", "hint"), [
    ("C0ELSEWHERE", "not_in_channel", "invite the bot"),
    ("#warranty", "channel_not_found", "channel ID"),
])
def test_channel_problems_name_the_fix(slack: SandboxSlack, channel: str, code: str, hint: str) -> None:
    notifier = SlackNotifier(SlackSettings(slack.bot_token, slack.signing_secret, channel, slack.url, ()))
    review = Review("dm-x", "zendesk", "1", "http://x/1", "a.jpg", b"\xff\xd8\xff" * 10, "", "crack", "$0")
    file_id, upload_url = notifier.start_upload(review)
    with pytest.raises(PermanentError) as caught:
        notifier.finish_upload(file_id, upload_url, review)
    assert caught.value.code == code and hint in str(caught.value)


def test_a_share_and_a_review_whose_answers_were_lost_are_not_posted_twice(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk, slack: SandboxSlack,
    redis_url: str,
) -> None:
    # Slack shares the file and posts the message, and each answer is lost on the way back.
    lost = {"ok": False, "error": "internal_error"}
    slack.faults.add("POST", "/api/files.completeUploadExternal", 503, lost, after=True)
    slack.faults.add("POST", "/api/chat.postMessage", 503, lost, after=True)
    ticket_id = zendesk_photo(zendesk, web)
    photo = zendesk.tickets[ticket_id].comments[-1].attachments[0]
    job_id = job_id_for("zendesk", str(ticket_id), str(photo.id))
    store = Store.from_url(redis_url)
    wait_for(lambda: store.job(job_id).get("state") == "done", timeout=90)
    shares = [u for u in slack.completed_uploads() if f"ticket #{ticket_id}*" in (u.initial_comment or "")]
    reviews = slack.messages_about(f"Zendesk ticket #{ticket_id}")
    assert len(shares) == 1 and len(reviews) == 1
    record = store.job(job_id)
    assert record["slack_file"] == shares[0].file_id and record["slack_ts"] == reviews[0].ts
    assert reviews[0].metadata == {"event_type": "deskmark_review", "event_payload": {"job_id": job_id}}
    looked = [c for c in slack.calls if c["method"] == "conversations.history"]
    assert looked  # it looked before posting again
    assert record["attempts"] >= 3  # the share's retry, then the message's


def test_without_the_history_scope_check_says_so(slack: SandboxSlack) -> None:
    notifier = SlackNotifier(SlackSettings(slack.bot_token, slack.signing_secret, slack.CHANNEL,
                                           slack.url, ()))
    assert notifier.check()[1] == []
    slack.scopes -= {"channels:history", "groups:history"}
    try:
        who, missing = notifier.check()
        assert missing == ["channels:history", "groups:history"] and "Sandbox" in who
        with pytest.raises(PermanentError, match="missing_scope"):
            notifier.posted_since(0, "dm-x", None)
    finally:
        slack.scopes |= {"channels:history", "groups:history"}


def test_without_approvers_the_post_is_a_notification_and_no_click_decides(
    make_stack: Callable[..., Stack], zendesk: SandboxZendesk, slack: SandboxSlack,
) -> None:
    stack = make_stack(SLACK_APPROVER_IDS="")
    ticket_id, job_id = send_photo(zendesk, stack.web.url, f"No approvers {uuid.uuid4().hex[:8]}", seed=33)
    wait_for(lambda: stack.store.job(job_id).get("state") == "done", timeout=60)
    [message] = slack.messages_about(f"Zendesk ticket #{ticket_id}")
    assert message.buttons() == [] and "decide on the ticket" in message.text
    # Buttons from an older post (or a forged message) decide nothing either.
    value = review_value(job_id, "zendesk", str(ticket_id))
    old = Message(message.channel, message.ts, message.text, [{"type": "actions", "elements": [
        {"type": "button", "action_id": "warranty_approve", "value": value,
         "text": {"type": "plain_text", "text": "Approve"}}]}])
    tags, notes = list(zendesk.tickets[ticket_id].tags), len(zendesk.notes(ticket_id))
    answered = len(slack.responses)
    went_to, slack.interactivity_url = slack.interactivity_url, f"{stack.web.url}/webhooks/slack/interactions"
    try:
        assert slack.click(old, "warranty_approve", "U0ANYONE01", "guest") == 200
    finally:
        slack.interactivity_url = went_to
    wait_for(lambda: len(slack.responses) > answered, timeout=30)
    assert "decisions in Slack are off" in slack.responses[-1]["text"]
    assert slack.responses[-1]["response_type"] == "ephemeral"
    assert zendesk.tickets[ticket_id].tags == tags and len(zendesk.notes(ticket_id)) == notes
    assert "review" not in stack.store.job(job_id)


def test_customer_and_vendor_text_is_never_slack_markup(
    worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk, slack: SandboxSlack,
) -> None:
    hostile = "<!channel> <https://evil.example|update your password>"
    ticket_id = zendesk.create_ticket(f"{hostile} {uuid.uuid4().hex[:6]}", f"<@U0CEO00001> {hostile}")
    comment = zendesk.add_comment(ticket_id, zendesk.CUSTOMER_ID, "photo",
                                  [(f"{hostile}.jpg", damaged_product(seed=34), "image/jpeg")])
    message = review_message(slack, f"Zendesk ticket #{ticket_id}")
    assert slack.click(message, "warranty_approve", APPROVER, "dana.reviewer") == 200
    wait_for(lambda: not message.buttons(), timeout=30)
    share = next(u for u in slack.completed_uploads() if f"#{ticket_id}*" in (u.initial_comment or ""))
    texts = [share.initial_comment or "", message.text, json.dumps(message.history)]
    for text in texts:
        assert "<!channel>" not in text and "<https://evil" not in text and "<@U0CEO" not in text
    assert "&lt;!channel&gt;" in message.text  # shown as text, not as a mention
    assert job_id_for("zendesk", str(ticket_id), str(comment.attachments[0].id))
