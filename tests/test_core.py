"""The core, in-process: event expansion, the pipeline's steps, the reviewer's decision and the
task routing, run against the loopback vendors and a real Redis, with no worker process.
The end-to-end tests run the same code in real workers; these take seconds."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import pytest
import redis
from celery.exceptions import Reject, Retry

from deskmark.sandbox.photos import damaged_product
from deskmark.sandbox.slack import SandboxSlack
from deskmark.sandbox.zendesk import SandboxZendesk
from integrations.config import Settings
from integrations.errors import PermanentError, RetryableError, Throttled, UnusablePhoto
from integrations.events import RawRequest, TicketEvent
from integrations.registry import HELPDESKS
from integrations.slack.interactions import parse as parse_click
from integrations.slack.notifier import SlackNotifier
from integrations.zendesk.webhook import parse as parse_zendesk
from tests.helpers import APPROVER
from worker import pipeline, tasks
from worker.jobs import Job
from worker.limits import EditGate
from worker.marking import make_marker
from worker.recovery import LeaseLost
from worker.retry import MAX_RETRIES
from worker.store import Store

CUSTOMER = SandboxZendesk.CUSTOMER_ID


@pytest.fixture
def core_env(deskmark_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """deskmark's configuration on a Redis database of this module's own (no worker reads it)."""
    url = deskmark_env["REDIS_URL"].rsplit("/", 1)[0] + "/6"
    redis.Redis.from_url(url).flushdb()
    yield {**deskmark_env, "REDIS_URL": url}


def make_runtime(env: dict[str, str]) -> pipeline.Runtime:
    """What a worker process builds at start (worker.tasks.runtime), here in the test."""
    settings = Settings.from_env(env, dotenv=None)
    store = Store.from_url(settings.redis_url, retention_days=settings.retention_days)
    return pipeline.Runtime(
        settings=settings, store=store,
        helpdesks={key: HELPDESKS[key].client(own, settings.attachment_hosts, None)
                   for key, own in settings.helpdesks.items()},
        marker=make_marker(settings, EditGate(store, settings)),
        notifier=SlackNotifier(settings.slack) if settings.slack else None)


def close(runtime: pipeline.Runtime) -> None:
    for client in runtime.helpdesks.values():
        client.close()
    runtime.store.r.close()


@pytest.fixture
def rt(core_env: dict[str, str]) -> Iterator[pipeline.Runtime]:
    runtime = make_runtime(core_env)
    yield runtime
    close(runtime)


def ticket_event(zendesk: SandboxZendesk, files: list[tuple[str, bytes, str]],
                 tags: list[str] | None = None, actor: int = CUSTOMER) -> tuple[int, TicketEvent]:
    """A ticket with a comment carrying `files`, and the event of its first file, parsed as
    the web app parses it."""
    ticket_id = zendesk.create_ticket(f"Core {uuid.uuid4().hex[:8]}", "Damaged.", tags=tags)
    comment = zendesk.add_comment(ticket_id, CUSTOMER, "photos", files, notify=False)
    body = json.dumps(zendesk.event_for(ticket_id, comment, comment.attachments[0], actor)).encode()
    return ticket_id, parse_zendesk(RawRequest(body, {}))


def photo(seed: int) -> tuple[str, bytes, str]:
    return (f"p{seed}.jpg", damaged_product(640, 480, seed=seed), "image/jpeg")


# --- event expansion -----------------------------------------------------------------------------
def test_a_ticket_scan_makes_a_job_per_photo_and_records_a_skipped_file(
        rt: pipeline.Runtime, zendesk: SandboxZendesk) -> None:
    ticket_id, event = ticket_event(zendesk, [photo(1), photo(2), ("terms.pdf", b"%PDF-1.7", "application/pdf")])
    scan = replace(event, photo=None)  # a ticket-level event: every photo on the ticket
    jobs = pipeline.expand_event(scan, rt)
    assert [j.photo.filename for j in jobs] == ["p1.jpg", "p2.jpg"]
    assert {rt.store.job(j.job_id)["ticket_id"] for j in jobs} == {str(ticket_id)}
    skipped = [r for r in rt.store.recent_jobs(10) if r.get("filename") == "terms.pdf"]
    assert len(skipped) == 1 and skipped[0]["state"] == "skipped"
    assert skipped[0]["reason"] == "not an image (application/pdf)"
    # The same event again: the jobs exist and are not finished, so they are asked for again
    # (the queue's message may be lost); a finished one is not.
    rt.store.update(jobs[0].job_id, {"state": "done"})
    assert [j.photo.filename for j in pipeline.expand_event(scan, rt)] == ["p2.jpg"]


def test_deskmarks_own_action_and_untagged_tickets_are_ignored(
        core_env: dict[str, str], zendesk: SandboxZendesk) -> None:
    rt = make_runtime(core_env)
    tagged = make_runtime({**core_env, "DESKMARK_TRIGGER_TAGS": "damage"})
    try:
        _, own = ticket_event(zendesk, [photo(3)], actor=SandboxZendesk.AGENT_ID)
        assert pipeline.expand_event(own, rt) == []
        _, untagged = ticket_event(zendesk, [photo(4)], tags=["billing"])
        _, damage = ticket_event(zendesk, [photo(5)], tags=["damage"])
        assert pipeline.expand_event(untagged, tagged) == []
        assert [j.photo.filename for j in pipeline.expand_event(damage, tagged)] == ["p5.jpg"]
    finally:
        close(rt)
        close(tagged)


# --- the pipeline's steps and the decision -------------------------------------------------------
def test_a_job_runs_its_steps_once_and_a_decision_flows_back_once(
        rt: pipeline.Runtime, zendesk: SandboxZendesk, slack: SandboxSlack) -> None:
    ticket_id, event = ticket_event(zendesk, [photo(6)])
    [job] = pipeline.expand_event(event, rt)
    assert pipeline.run_job(job, rt) == "done"
    record = rt.store.job(job.job_id)
    assert record["note_id"] and record["escalated"] and record["slack_ts"]
    assert len(zendesk.marked_notes(ticket_id)) == 1
    assert {"deskmark_annotated", "warranty_review"} <= set(zendesk.tickets[ticket_id].tags)
    # Run again (a redelivered message): a finished job does nothing more.
    assert pipeline.run_job(job, rt) == "done"
    assert len(zendesk.marked_notes(ticket_id)) == 1
    # A crash after the note was posted, before it was recorded: the next attempt finds the
    # note by its marker instead of posting a second one.
    rt.store.update(job.job_id, {"state": "queued", "note_id": "", "escalated": False})
    assert pipeline.run_job(job, rt) == "done"
    assert len(zendesk.marked_notes(ticket_id)) == 1

    [message] = [m for m in slack.messages if m.ts == record["slack_ts"]]

    # Three clicks on the review as it was posted (the buttons go once it is decided).
    payloads = {who: slack.click_payload(message, "warranty_approve", user)
                for who, user in (("stranger", "U0SOMEONEELSE"), ("first", APPROVER), ("again", APPROVER))}

    def click(who: str) -> str:
        body = ("payload=" + quote(json.dumps(payloads[who]))).encode()
        return pipeline.decide(parse_click(RawRequest(body, {})), rt)

    answered = len(slack.responses)
    assert click("stranger") == "not allowed"
    assert click("first") == "approved"
    assert click("again") == "already decided"  # a second click changes nothing
    assert "warranty_approved" in zendesk.tickets[ticket_id].tags
    reviews = [n for n in zendesk.notes(ticket_id) if "warranty review" in n.html_body]
    assert len(reviews) == 1
    told = [r["text"] for r in slack.responses[answered:]]
    assert len(told) == 2 and "not on the list" in told[0] and told[1].startswith("Already approved")


def test_an_unusable_photo_fails_its_job_with_a_note_for_the_agents(
        rt: pipeline.Runtime, zendesk: SandboxZendesk) -> None:
    ticket_id, event = ticket_event(zendesk, [("broken.jpg", b"\xff\xd8\xff\xe0 not really", "image/jpeg")])
    [job] = pipeline.expand_event(event, rt)
    assert pipeline.run_job(job, rt) == "failed"
    assert job.job_id in rt.store.dead_ids()
    [note] = zendesk.notes(ticket_id)
    assert not note.attachments and job.job_id in note.html_body


# --- what an exception means (worker.tasks._routed) -----------------------------------------------
class CeleryTask:
    """The parts of a bound Celery task `_routed` uses: the request and the two re-sends."""

    def __init__(self, retries: int = 0) -> None:
        self.request = type("Request", (), {"args": [{"job": 1}], "retries": retries})()
        self.sent: list[dict[str, Any]] = []
        self.retried: list[float] = []

    def apply_async(self, args: list[Any], retries: int, countdown: float) -> None:
        self.sent.append({"args": args, "retries": retries, "countdown": countdown})

    def retry(self, countdown: float, exc: Exception) -> Retry:
        self.retried.append(countdown)
        return Retry(exc=exc, when=countdown)


@pytest.fixture
def routed(core_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[
        Callable[[BaseException, int], tuple[str | None, CeleryTask, list[str], list[str]]]]:
    for key, value in core_env.items():
        monkeypatch.setenv(key, value)
    tasks.settings.cache_clear()  # the routing reads the visibility timeout from the settings

    def run(raised: BaseException, retries: int = 0) -> tuple[str | None, CeleryTask, list[str], list[str]]:
        task = CeleryTask(retries)
        given_up: list[str] = []
        rescheduled: list[str] = []

        def work() -> str:
            raise raised

        def give_up(reason: str, error: Any) -> str:
            given_up.append(reason)
            return "failed"

        try:
            result = tasks._routed(task, "job x", work, give_up,
                                   lambda state, wait, fields: rescheduled.append(state))
        except Retry:
            result = "retry"  # what Celery's task.retry raises, to send the task again
        return result, task, given_up, rescheduled

    yield run
    tasks.settings.cache_clear()


def test_each_kind_of_exception_is_routed_as_the_table_says(routed: Any) -> None:
    result, task, given_up, rescheduled = routed(Throttled("the edit rate is spent", 12.0))
    assert result == "throttled" and rescheduled == ["waiting"] and not given_up
    assert len(task.sent) == 1 and task.sent[0]["retries"] == 0 and task.sent[0]["countdown"] >= 12.0

    result, task, given_up, rescheduled = routed(RetryableError("500", vendor="openai", status=500))
    assert result == "retry" and len(task.retried) == 1 and task.retried[0] > 0
    assert rescheduled == ["retrying"] and not given_up
    result, task, given_up, _ = routed(RetryableError("500", vendor="openai", status=500), MAX_RETRIES)
    assert result == "failed" and len(given_up) == 1
    assert given_up[0].startswith(f"gave up after {MAX_RETRIES + 1} attempts") and not task.retried

    for permanent in (PermanentError("400", vendor="openai", status=400), UnusablePhoto("not an image")):
        result, task, given_up, _ = routed(permanent)
        assert result == "failed" and len(given_up) == 1 and not task.sent and not task.retried

    result, _, given_up, _ = routed(KeyError("a bug"))
    assert result == "failed" and given_up == ["internal error (KeyError); see the worker log"]

    assert routed(LeaseLost("job x: another worker holds it"))[0] == "lease lost"

    with pytest.raises(Reject) as rejected:
        routed(redis.ConnectionError("Redis went away"))
    assert rejected.value.requeue


def test_a_job_dict_survives_the_queue(rt: pipeline.Runtime, zendesk: SandboxZendesk) -> None:
    _, event = ticket_event(zendesk, [photo(7)])
    [job] = pipeline.expand_event(event, rt)
    again = Job.from_dict(json.loads(json.dumps(job.to_dict())))
    assert again == job and again.job_id == job.job_id
    assert TicketEvent.from_dict(json.loads(json.dumps(event.to_dict()))) == event
