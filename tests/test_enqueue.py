"""The web app's enqueue: Celery's message, published through kombu, stored by the accept script
in one step (worker/app.py Sender, worker/broker.py). These tests break if a Celery or kombu
upgrade changes what the web app's path produces, or what the installed Celery consumes."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from deskmark.sandbox.freshdesk import SandboxFreshdesk
from integrations.config import Settings
from tests.helpers import Stack, wait_for
from worker.app import QUEUE, Sender, make_celery
from worker.store import Store


@pytest.fixture
def private(redis_url: str) -> tuple[Settings, redis.Redis]:
    url = redis_url.rsplit("/", 1)[0] + "/9"
    client = redis.Redis.from_url(url)
    client.flushdb()
    return Settings.from_env({"REDIS_URL": url}, dotenv=None), client


def stored(client: redis.Redis) -> dict[str, Any]:
    [raw] = client.lrange(QUEUE, 0, -1)
    client.delete(QUEUE)
    message: dict[str, Any] = json.loads(raw)
    return message


def test_the_web_apps_message_is_the_one_celery_sends(private: tuple[Settings, redis.Redis]) -> None:
    settings, client = private
    celery = make_celery(settings)
    args = [{"vendor": "freshdesk", "ticket_id": "12", "photo": None}]
    celery.send_task("deskmark.handle_event", args=args, queue=QUEUE, ignore_result=True)
    theirs = stored(client)
    step = Store(client).acceptance("freshdesk", "12", None, "", scan=True)
    Sender(celery).send("deskmark.handle_event", args, "[freshdesk ticket 12]", accept=step)
    assert step.outcome == "enqueued"
    ours = stored(client)

    assert ours.keys() == theirs.keys()
    assert ours["headers"].keys() == theirs["headers"].keys()
    assert ours["properties"].keys() == theirs["properties"].keys()
    for field in ("task", "lang", "ignore_result", "retries", "eta", "expires", "group"):
        assert ours["headers"][field] == theirs["headers"][field], field
    assert ours["headers"]["argsrepr"] == "[freshdesk ticket 12]"  # never the arguments (URLs)
    assert ours["properties"]["delivery_info"] == theirs["properties"]["delivery_info"]
    assert ours["properties"]["body_encoding"] == theirs["properties"]["body_encoding"]
    assert ours["content-type"] == theirs["content-type"] == "application/json"
    body = json.loads(base64.b64decode(ours["body"]))
    assert body == json.loads(base64.b64decode(theirs["body"]))
    assert body[0] == args


def test_the_accept_step_is_one_atomic_decision(private: tuple[Settings, redis.Redis]) -> None:
    settings, client = private
    sender, store = Sender(make_celery(settings)), Store(client)

    def send(delivery: str, scan: bool = False, actor: str | None = None) -> str | None:
        step = store.acceptance("zendesk", "7", actor, delivery, scan)
        sender.send("deskmark.handle_event", [{}], "[zendesk ticket 7]", accept=step)
        return step.outcome

    assert send("inv:1") == "enqueued"
    assert send("inv:1") == "duplicate"
    assert send("", scan=True) == "enqueued"
    assert send("", scan=True) == "scan queued"
    client.set("dm:self:zendesk", "900001")
    assert send("inv:2", actor="900001") == "own"
    assert client.llen(QUEUE) == 2  # only what was enqueued is on the queue
    # Outside an accept step the transport is kombu's own: a plain publish.
    sender.send("deskmark.review", [{}], "[review]")
    assert client.llen(QUEUE) == 3


def test_a_message_the_web_app_enqueues_is_consumed_by_celery(
    make_stack: Callable[..., Stack], freshdesk: SandboxFreshdesk,
) -> None:
    stack = make_stack(workers=1)
    ticket_id = freshdesk.create_ticket("No photo here", "<div>just words</div>")
    answer = httpx.post(f"{stack.web.url}/webhooks/freshdesk", timeout=10,
                        json={"freshdesk_webhook": {"ticket_id": str(ticket_id)}},
                        headers={"X-Deskmark-Secret": freshdesk.webhook_secret})
    assert answer.status_code == 202
    worker = stack.workers[0]
    wait_for(lambda: f"event for freshdesk ticket {ticket_id} read: 0 photo jobs queued"
             in worker.output(), timeout=60)
    # Taken off the queue and acknowledged: nothing left for anyone, nothing to restore.
    assert stack.store.r.llen(QUEUE) == 0
    wait_for(lambda: stack.store.r.hlen("unacked") == 0, timeout=10)
    assert "Received unregistered task" not in worker.output()
