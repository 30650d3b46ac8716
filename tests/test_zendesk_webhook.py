"""POST /webhooks/zendesk: signature, body formats, duplicates, status codes — against real Redis.

These tests use their own Redis database with no worker attached, so what was enqueued can be
counted on the queue itself.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
from flask.testing import FlaskClient

from deskmark.redis_server import EmbeddedRedis
from deskmark.sandbox.server import LoopbackServer
from integrations.config import Settings
from integrations.events import Ignored, RawRequest
from integrations.zendesk.webhook import ZendeskSignature, parse
from tests.helpers import FIXTURES, WEBHOOK_SECRET, enqueued, now_stamp, signed
from webhooks import create_app
from worker.app import QUEUE
from worker.store import Store

ZENDESK_FIXTURES = sorted((FIXTURES / "zendesk").glob("*.json"))
ATTACHMENT_EVENT = json.loads((FIXTURES / "zendesk" /
                               "ticket.attachment_linked_to_comment__jpeg.json").read_text())


@pytest.fixture
def intake_env(deskmark_env: dict[str, str]) -> Iterator[dict[str, str]]:
    url = deskmark_env["REDIS_URL"].rsplit("/", 1)[0] + "/3"
    redis.Redis.from_url(url).flushdb()
    yield {**deskmark_env, "REDIS_URL": url}


@pytest.fixture
def client(intake_env: dict[str, str]) -> FlaskClient:
    return create_app(Settings.from_env(intake_env, dotenv=None)).test_client()


@pytest.fixture
def queue(intake_env: dict[str, str]) -> redis.Redis:
    return redis.Redis.from_url(intake_env["REDIS_URL"])


# --- signature ---------------------------------------------------------------------------------
def test_signature_matches_zendesk_vectors() -> None:
    signer = ZendeskSignature(WEBHOOK_SECRET)
    body = b'{"ticket":{"id":"123","subject":"Test ticket","status":"open"}}'
    assert signer.generate("2024-01-15T10:30:00Z", body) == "zrM0zJbY/4R+OFzKjf7juXoFlUAPGjof2wVUOtHWAOU="
    assert signer.generate("2024-01-15T10:30:00Z", b"") == "GdVuVVoaPdTCJ6PwPs/++ixvRTMnAiGY0uTqMgTHX2U="


def test_signature_uses_the_secret_as_text_and_an_injectable_clock() -> None:
    body = b'{"ticket_id": "1"}'
    stamp = "2024-01-15T10:30:00Z"
    at = datetime(2024, 1, 15, 10, 32, tzinfo=UTC).timestamp()
    signer = ZendeskSignature(WEBHOOK_SECRET, clock=lambda: at)
    headers = {"x-zendesk-webhook-signature": signer.generate(stamp, body),
               "x-zendesk-webhook-signature-timestamp": stamp}
    assert signer.is_valid(RawRequest(body, headers))
    late = ZendeskSignature(WEBHOOK_SECRET, clock=lambda: at + 600)
    assert not late.is_valid(RawRequest(body, headers))
    decoded_key = ZendeskSignature(base64.b64decode(WEBHOOK_SECRET).decode(), clock=lambda: at)
    assert not decoded_key.is_valid(RawRequest(body, headers))


# --- the endpoint ------------------------------------------------------------------------------
def test_signed_event_is_enqueued(client: FlaskClient, queue: redis.Redis) -> None:
    body = json.dumps(ATTACHMENT_EVENT).encode()
    response = client.post("/webhooks/zendesk", data=body, headers=signed(body))
    assert response.status_code == 202
    [message] = enqueued(queue)
    assert message["task"] == "deskmark.handle_event"
    event = message["event"]
    assert isinstance(event, dict)
    assert event["ticket_id"] == "19395"
    assert event["photo"]["attachment_id"] == "8658726230270"
    assert event["delivery_key"] == "inv:inv-1"


def test_trigger_body_is_enqueued(client: FlaskClient, queue: redis.Redis) -> None:
    body = b'{"ticket_id": "7", "actor_id": "1001"}'
    response = client.post("/webhooks/zendesk", data=body, headers=signed(body))
    assert response.status_code == 202
    [message] = enqueued(queue)
    assert message["event"]["kind"] == "trigger"


def _body_first(body: bytes) -> dict[str, str]:
    stamp = now_stamp()
    import hashlib
    import hmac

    sig = base64.b64encode(hmac.new(WEBHOOK_SECRET.encode(), body + stamp.encode(),
                                    hashlib.sha256).digest()).decode()
    return {"X-Zendesk-Webhook-Signature": sig, "X-Zendesk-Webhook-Signature-Timestamp": stamp}


BODY = json.dumps(ATTACHMENT_EVENT).encode()
UNAUTHORIZED = {
    "unsigned": lambda: {"Content-Type": "application/json"},
    "wrong secret": lambda: signed(BODY, secret="not-the-secret"),
    "stale": lambda: signed(BODY, timestamp=now_stamp(-timedelta(minutes=10))),
    "future-dated": lambda: signed(BODY, timestamp=now_stamp(timedelta(minutes=10))),
    "body-first signature": lambda: _body_first(BODY),
    "signature without timestamp": lambda: {
        "X-Zendesk-Webhook-Signature": signed(BODY)["X-Zendesk-Webhook-Signature"]},
}


@pytest.mark.parametrize("case", sorted(UNAUTHORIZED))
def test_bad_signatures_are_401_and_enqueue_nothing(case: str, client: FlaskClient,
                                                    queue: redis.Redis) -> None:
    response = client.post("/webhooks/zendesk", data=BODY, headers=UNAUTHORIZED[case]())
    assert response.status_code == 401
    assert enqueued(queue) == []


def test_tampered_body_is_401(client: FlaskClient, queue: redis.Redis) -> None:
    headers = signed(BODY)
    tampered = BODY.replace(b"19395", b"19396")
    assert client.post("/webhooks/zendesk", data=tampered, headers=headers).status_code == 401
    assert enqueued(queue) == []


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"ticket_id": "abc"}',
                                  b'{"hello": "world"}',
                                  b'{"type": "zen:event-type:ticket.attachment_linked_to_comment"'
                                  b', "id": "x", "detail": {"id": "5"}, "event": {}}'])
def test_malformed_bodies_are_400(body: bytes, client: FlaskClient, queue: redis.Redis) -> None:
    assert client.post("/webhooks/zendesk", data=body, headers=signed(body)).status_code == 400
    assert enqueued(queue) == []


def test_body_over_the_limit_is_413(client: FlaskClient, queue: redis.Redis) -> None:
    body = b'{"ticket_id": "1", "pad": "' + b"x" * (12 * 1024 * 1024) + b'"}'
    assert client.post("/webhooks/zendesk", data=body, headers=signed(body)).status_code == 413
    assert enqueued(queue) == []


def test_unsupported_event_type_is_200(client: FlaskClient, queue: redis.Redis) -> None:
    body = (FIXTURES / "zendesk" / "ticket.status_changed__unsupported.json").read_bytes()
    response = client.post("/webhooks/zendesk", data=body, headers=signed(body))
    assert response.status_code == 200
    assert enqueued(queue) == []


def test_duplicates_are_200_by_invocation_id_event_id_or_body(client: FlaskClient,
                                                              queue: redis.Redis) -> None:
    body = BODY
    assert client.post("/webhooks/zendesk", data=body, headers=signed(body)).status_code == 202
    assert client.post("/webhooks/zendesk", data=body, headers=signed(body)).status_code == 200
    # No invocation id: the event id is the key.
    event = dict(ATTACHMENT_EVENT, id="another-event")
    body = json.dumps(event).encode()
    first = client.post("/webhooks/zendesk", data=body, headers=signed(body, invocation=None))
    again = client.post("/webhooks/zendesk", data=body, headers=signed(body, invocation=None))
    assert (first.status_code, again.status_code) == (202, 200)
    # A trigger body without invocation id: the body hash is the key.
    body = b'{"ticket_id": "8"}'
    first = client.post("/webhooks/zendesk", data=body, headers=signed(body, invocation=None))
    again = client.post("/webhooks/zendesk", data=body, headers=signed(body, invocation=None))
    assert (first.status_code, again.status_code) == (202, 200)
    assert len(enqueued(queue)) == 3


def test_a_replayed_request_with_a_fresh_invocation_id_is_a_duplicate(
        client: FlaskClient, queue: redis.Redis) -> None:
    body = json.dumps(dict(ATTACHMENT_EVENT, id="replayed-event")).encode()
    captured = signed(body, invocation="inv-original")
    assert client.post("/webhooks/zendesk", data=body, headers=captured).status_code == 202
    # An attacker replays the captured request within the 5 minutes, with a new invocation id.
    replay = {**captured, "X-Zendesk-Webhook-Invocation-Id": "inv-forged"}
    response = client.post("/webhooks/zendesk", data=body, headers=replay)
    assert response.status_code == 200 and response.get_json()["detail"] == "duplicate delivery"
    assert len(enqueued(queue)) == 1


def test_own_action_is_200(client: FlaskClient, queue: redis.Redis,
                           intake_env: dict[str, str]) -> None:
    Store.from_url(intake_env["REDIS_URL"]).set_own_user_id("zendesk", "900001")
    event = json.loads(json.dumps(ATTACHMENT_EVENT))
    event["detail"]["actor_id"] = "900001"
    body = json.dumps(event).encode()
    response = client.post("/webhooks/zendesk", data=body, headers=signed(body))
    assert response.status_code == 200
    assert response.get_json()["detail"] == "deskmark's own action"
    assert enqueued(queue) == []


def test_redis_down_is_503_with_retry_after(deskmark_env: dict[str, str]) -> None:
    server = EmbeddedRedis().start()
    try:
        app = create_app(Settings.from_env({**deskmark_env, "REDIS_URL": server.url},
                                           dotenv=None))
        client = app.test_client()
        body = b'{"ticket_id": "9"}'
        assert client.post("/webhooks/zendesk", data=body, headers=signed(body)).status_code == 202
        server.stop()
        body = b'{"ticket_id": "10"}'
        response = client.post("/webhooks/zendesk", data=body, headers=signed(body, invocation="x"))
        assert response.status_code == 503
        assert 0 < int(response.headers["Retry-After"]) < 60  # Zendesk retries only below 60 s
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200
        server.start()  # same port: the app reconnects by itself
        retry = client.post("/webhooks/zendesk", data=body, headers=signed(body, invocation="x"))
        assert retry.status_code == 202
    finally:
        server.cleanup()


def test_a_dropped_connection_or_a_flushed_script_costs_no_webhook(
    deskmark_env: dict[str, str],
) -> None:
    # The webhook path reuses its own Redis connections and calls the accept script by its SHA.
    # Neither a connection Redis dropped while idle, nor a script cache emptied (as after a
    # restart) may turn the next webhook into a 503, a loss or a duplicate.
    server = EmbeddedRedis().start()
    try:
        app = create_app(Settings.from_env({**deskmark_env, "REDIS_URL": server.url}, dotenv=None))
        client = app.test_client()
        admin = redis.Redis.from_url(server.url)

        def post(ticket: str, invocation: str) -> int:
            body = json.dumps({"ticket_id": ticket}).encode()
            return client.post("/webhooks/zendesk", data=body,
                               headers=signed(body, invocation=invocation)).status_code

        assert post("21", "inv-21") == 202
        assert admin.client_kill_filter(_type="normal") >= 1  # the app's idle connection
        assert post("22", "inv-22") == 202
        admin.script_flush()
        assert post("23", "inv-23") == 202
        assert post("23", "inv-23") == 200  # and de-duplication still holds
        assert sorted(m["event"]["ticket_id"] for m in enqueued(admin)) == ["21", "22", "23"]
    finally:
        server.cleanup()


def test_a_thread_per_request_server_reuses_the_webhook_connections(
    deskmark_env: dict[str, str],
) -> None:
    # werkzeug (the demo, `flask run`) starts a thread per request: a webhook must not open a
    # Redis connection of its own each time (a TCP handshake and a HELLO per webhook).
    server = EmbeddedRedis().start()
    try:
        web = LoopbackServer(create_app(Settings.from_env({**deskmark_env, "REDIS_URL": server.url},
                                                          dotenv=None))).start()
        admin = redis.Redis.from_url(server.url)
        with httpx.Client(base_url=web.url, timeout=5) as http:
            def post(n: int) -> int:
                body = json.dumps({"ticket_id": str(100 + n)}).encode()
                return http.post("/webhooks/zendesk", content=body,
                                 headers=signed(body, invocation=f"inv-{n}")).status_code

            assert post(0) == 202
            opened = admin.info("stats")["total_connections_received"]
            assert [post(n) for n in range(1, 21)] == [202] * 20
            assert admin.info("stats")["total_connections_received"] - opened <= 1
        assert len(enqueued(admin)) == 21
        web.stop()
    finally:
        server.cleanup()


def test_readyz_wants_a_worker_heartbeat(client: FlaskClient, intake_env: dict[str, str]) -> None:
    assert client.get("/readyz").status_code == 503
    Store.from_url(intake_env["REDIS_URL"]).beat("test-worker")
    assert client.get("/readyz").get_json() == {"status": "ready", "redis": "ok", "worker": "ok"}


# --- fixtures: every captured payload parses or is declared unsupported -------------------------
@pytest.mark.parametrize("path", ZENDESK_FIXTURES, ids=lambda p: p.name)
def test_every_fixture_parses_or_is_declared_unsupported(path: Path) -> None:
    request = RawRequest(path.read_bytes(), {})
    if path.stem.endswith("__unsupported"):
        with pytest.raises(Ignored):
            parse(request)
        return
    event = parse(request)
    assert event.vendor == "zendesk"
    assert event.ticket_id.isdigit()
    kinds = {"ticket.attachment_linked_to_comment": "attachment_linked_to_comment",
             "ticket.comment_added": "comment_added", "ticket.created": "ticket_created",
             "trigger": "trigger"}
    assert event.kind == kinds[path.stem.split("__")[0]]


def test_ids_that_are_not_text_are_400_not_500(client: FlaskClient, queue: redis.Redis) -> None:
    before = queue.llen(QUEUE)
    for body in (b'{"type": "zen:event-type:ticket.created", "id": "\\ud800", "detail": {"id": "5"}}',
                 b'{"ticket_id": "5", "actor_id": "\\udfff"}',
                 b'{"ticket_id": "5", "\\ud800": 1}'):
        answer = client.post("/webhooks/zendesk", data=body, headers=signed(body))
        assert answer.status_code == 400, (body, answer.get_data(as_text=True))
    assert queue.llen(QUEUE) == before
    pair = b'{"type": "zen:event-type:ticket.created", "id": "\\ud83d\\ude00", "detail": {"id": "5"}}'
    assert client.post("/webhooks/zendesk", data=pair, headers=signed(pair)).status_code == 202
