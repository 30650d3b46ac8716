"""Redis data with an end: every key deskmark writes, and how long it lives."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.slack import SandboxSlack
from deskmark.sandbox.zendesk import SandboxZendesk
from tests.helpers import APPROVER, Stack, post_signed, send_photo, settled, wait_for

DAY = 86400
RETENTION_DAYS = 3
DUPLICATE_DAYS = 5
LIVES = -1  # no TTL: meant to live
# Every key deskmark (or its broker) writes: pattern -> the longest TTL it may have (seconds).
KEYS: list[tuple[str, int]] = [
    (r"dm:delivery:.+", 7 * DAY),  # the duplicate-key window
    (r"dm:deliveries:[a-z]+", 7 * DAY),  # the Deliveries page: each helpdesk's newest webhooks
    (r"dm:rejected:[a-z]+", DAY),  # ... and the rejected ones, without their bodies
    (r"dm:ticket:[a-z]+:.+", RETENTION_DAYS * DAY),  # the search by ticket
    (r"dm:steps:[^:]+", RETENTION_DAYS * DAY),  # a job's timeline
    (r"dm:scan:.+", 3600),
    (r"dm:self:.+", DAY),
    (r"dm:job:[^:]+", RETENTION_DAYS * DAY),
    (r"dm:job:[^:]+:(marked|before|after|model)", RETENTION_DAYS * DAY),
    (r"dm:result:[0-9a-f]{64}", RETENTION_DAYS * DAY),
    (r"dm:lease:.+", 60),
    (r"dm:spend:\d{4}-\d\d-\d\d", 31 * DAY),
    (r"dm:edits:\d{4}-\d\d-\d\d", 31 * DAY),
    (r"dm:failures:\d{4}-\d\d-\d\d", 8 * DAY),
    (r"dm:limit:edit", 120),
    (r"dm:heartbeat:worker", 45),
    # The OAuth client's access token, shared by every process: its own lifetime (the
    # sandbox's, Zendesk's default: 30 minutes), and the renewal lock and a refusal, briefly.
    (r"dm:token:[0-9a-f]{24}", 1800),
    (r"dm:token:[0-9a-f]{24}:renewing", 30),
    (r"dm:token:[0-9a-f]{24}:refused", 120),
    (r"dm:credential:[a-z]+", DAY),  # what each helpdesk's credential is (the reaper's thread)
    # The re-used-photo index (worker.dupes): its lists end after DUPLICATE_DAYS with no addition.
    (r"dm:ph:[0-3]:[0-9a-f]{4}", DUPLICATE_DAYS * DAY),
    # Meant to live: indexes trimmed by age (or by their jobs ending), Prometheus counters.
    (r"dm:(jobs|dead|watch)", LIVES),
    (r"dm:metrics:(jobs|edit_seconds|spend_usd_total)", LIVES),
    (r"dm:c2pa:signer", LIVES),  # the deployment's throwaway signer (worker.credentials)
    # Celery's broker keys: the queue, and kombu's unacknowledged-message index.
    (r"deskmark", LIVES), (r"unacked(_index|_mutex)?", LIVES), (r"_kombu\.binding.*", LIVES),
]


def test_every_key_deskmark_writes_has_an_end_unless_it_is_meant_to_live(
    make_stack: Callable[..., Stack], zendesk: SandboxZendesk, openai_fake: SandboxOpenAI,
    slack: SandboxSlack,
) -> None:
    stack = make_stack(DESKMARK_RETENTION_DAYS=str(RETENTION_DAYS),
                       DESKMARK_DUPLICATE_DAYS=str(DUPLICATE_DAYS))
    # A done job with a Slack review decided, a job that failed, an unreadable ticket, a reuse.
    tag = uuid.uuid4().hex[:8]
    ticket_id, done = send_photo(zendesk, stack.web.url, f"Kept {tag}", seed=801)
    wait_for(lambda: stack.store.job(done).get("state") == "done", timeout=60)
    review = wait_for(lambda: slack.messages_about(f"Zendesk ticket #{ticket_id}"), timeout=30)[0]
    clicks_went_to, slack.interactivity_url = (slack.interactivity_url,
                                               f"{stack.web.url}/webhooks/slack/interactions")
    try:
        assert slack.click(review, "warranty_approve", APPROVER) == 200
    finally:
        slack.interactivity_url = clicks_went_to
    wait_for(lambda: stack.store.job(done).get("review_shown"), timeout=30)
    _, again = send_photo(zendesk, stack.web.url, f"Again {tag}", seed=801)  # the same photo
    wait_for(lambda: stack.store.job(again).get("state") == "done", timeout=60)
    openai_fake.faults.add("POST", "/images/edits", 400, {"error": {
        "message": "Your request was rejected by the safety system.", "type": "image_generation_user_error",
        "param": None, "code": "moderation_blocked"}})
    _, failed = send_photo(zendesk, stack.web.url, f"Refused {tag}", seed=802)
    wait_for(lambda: stack.store.job(failed).get("state") == "failed", timeout=60)
    assert post_signed(stack.web.url, zendesk, {"ticket_id": "4040404"}).status_code == 202
    assert post_signed(stack.web.url, zendesk, {"ticket_id": "1"},
                       **{"X-Zendesk-Webhook-Signature": "Zm9yZ2Vk"}).status_code == 401
    wait_for(lambda: any(i.startswith("ev-") for i in stack.store.dead_ids()), timeout=30)
    settled(zendesk, stack.env["REDIS_URL"])  # nothing more is written

    seen: dict[str, int] = {}
    for raw in stack.store.r.scan_iter(count=1000):
        key = raw.decode()
        ttl = int(stack.store.r.ttl(key))
        rule = next(((pattern, most) for pattern, most in KEYS if re.fullmatch(pattern, key)), None)
        assert rule is not None, f"{key} is written by deskmark but not listed here (TTL {ttl})"
        pattern, most = rule
        if most == LIVES:
            assert ttl == -1, f"{key} should live, has TTL {ttl}"
        else:
            assert 0 < ttl <= most, f"{key} has TTL {ttl}, expected at most {most}"
        seen[pattern] = seen.get(pattern, 0) + 1
    expected = {p for p, _ in KEYS} - {r"dm:scan:.+", r"dm:lease:.+", r"dm:limit:edit",
                                       r"dm:token:[0-9a-f]{24}:renewing", r"dm:token:[0-9a-f]{24}:refused",
                                       r"dm:credential:[a-z]+",
                                       r"unacked(_index|_mutex)?", r"deskmark", r"dm:watch"}
    assert expected <= set(seen), f"not written in this run: {expected - set(seen)}"

    # The attachment URL (it may carry a token) left the record once the photo was marked.
    assert stack.store.job(done)["photo"]["url"] == ""
    assert stack.store.job(failed)["photo"]["url"]  # not marked: a replay downloads it again
    failures = stack.store.series(1)[-1]["failures"]
    assert failures.get("openai: moderation_blocked") == 1
    assert any(k.startswith("zendesk ticket unreadable") for k in failures)


def test_the_job_index_and_dead_letters_are_trimmed_by_age(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(DESKMARK_RETENTION_DAYS=str(RETENTION_DAYS))
    now = time.time()
    stack.store.r.zadd("dm:jobs", {"dm-old": now - RETENTION_DAYS * DAY - 5, "dm-new": now})
    stack.store.r.zadd("dm:dead", {"dm-old": now - RETENTION_DAYS * DAY - 5, "dm-new": now})
    assert stack.store.trim(now) == 2
    assert stack.store.r.zrange("dm:jobs", 0, -1) == [b"dm-new"]
    assert stack.store.dead_ids() == ["dm-new"]
