"""The webhook endpoints under hostile bodies, properly signed (the attacker may hold a secret, or
replay a captured request's signature scheme): every answer is a 2xx or a 4xx, never a 500.

Named edges first (each failed before its fix), then seeded random mutations of the captured
fixtures, so a new parser path that can raise is found here rather than in production.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable, Iterator
from urllib.parse import quote

import httpx
import pytest
import redis
from flask.testing import FlaskClient

from deskmark.sandbox.server import LoopbackServer
from integrations.config import Settings
from tests.helpers import FIXTURES, signed
from webhooks import MAX_BODY_BYTES, create_app

Send = Callable[[bytes], int]


@pytest.fixture
def env(deskmark_env: dict[str, str]) -> Iterator[dict[str, str]]:
    url = deskmark_env["REDIS_URL"].rsplit("/", 1)[0] + "/4"
    redis.Redis.from_url(url).flushdb()
    yield {**deskmark_env, "REDIS_URL": url}


@pytest.fixture
def client(env: dict[str, str]) -> FlaskClient:
    return create_app(Settings.from_env(env, dotenv=None)).test_client()


def slack_form(payload: bytes) -> bytes:
    return b"payload=" + quote(payload).encode()


def slack_headers(body: bytes, secret: str) -> dict[str, str]:
    stamp = str(int(time.time()))
    mac = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": f"v0={mac}"}


@pytest.fixture
def senders(client: FlaskClient, env: dict[str, str]) -> dict[str, Send]:
    """Each endpoint, with its own authentication done right: only the body is hostile."""
    def zendesk(body: bytes) -> int:
        return client.post("/webhooks/zendesk", data=body, headers=signed(body)).status_code

    def freshdesk(body: bytes) -> int:
        return client.post("/webhooks/freshdesk", data=body, headers={
            "Content-Type": "application/json",
            "X-Deskmark-Secret": env["FRESHDESK_WEBHOOK_SECRET"]}).status_code

    def slack(body: bytes) -> int:
        form = slack_form(body)
        return client.post("/webhooks/slack/interactions", data=form,
                           headers=slack_headers(form, env["SLACK_SIGNING_SECRET"])).status_code

    return {"zendesk": zendesk, "freshdesk": freshdesk, "slack": slack}


EDGES = {
    "deep nesting": b"[" * 50_000 + b"]" * 50_000,
    "deep nesting in an object": b'{"ticket_id": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001,
    "an integer of 5,000 digits": b'{"ticket_id": ' + b"9" * 5000 + b"}",
    "a float beyond double": b'{"ticket_id": 1e400}',
    "NaN": b'{"ticket_id": NaN}',
    "a superscript digit": '{"ticket_id": "²"}'.encode(),
    "Arabic-Indic digits": '{"ticket_id": "١٢٣"}'.encode(),
    "fullwidth digits": '{"ticket_id": "１２３"}'.encode(),
    "an id of 21 digits": b'{"ticket_id": "123456789012345678901"}',
    "a negative id": b'{"ticket_id": "-5"}',
    "not UTF-8": b'{"ticket_id": "\xff\xfe"}',
    "a NUL in the id": b'{"ticket_id": "12\\u00003"}',
}


@pytest.mark.parametrize("endpoint", ["zendesk", "freshdesk"])
@pytest.mark.parametrize("edge", sorted(EDGES))
def test_hostile_bodies_are_400_not_500(senders: dict[str, Send], endpoint: str, edge: str) -> None:
    assert senders[endpoint](EDGES[edge]) == 400


@pytest.mark.parametrize("edge", ["deep nesting", "an integer of 5,000 digits", "NaN"])
def test_a_hostile_slack_payload_is_400_not_500(senders: dict[str, Send], edge: str) -> None:
    assert senders["slack"](EDGES[edge]) == 400


def test_an_event_envelope_with_a_non_ascii_ticket_id_is_400(senders: dict[str, Send]) -> None:
    event = json.loads((FIXTURES / "zendesk" / "ticket.attachment_linked_to_comment__jpeg.json").read_text())
    event["detail"]["id"] = "５１５８"
    assert senders["zendesk"](json.dumps(event).encode()) == 400
    event["detail"]["id"] = "5158"
    event["event"]["comment"]["attachment"]["id"] = "1²"
    assert senders["zendesk"](json.dumps(event).encode()) == 400


@pytest.fixture
def live(env: dict[str, str]) -> Iterator[str]:
    """The app on a real HTTP server: the test client cannot send a chunked body."""
    server = LoopbackServer(create_app(Settings.from_env(env, dotenv=None))).start()
    yield server.url
    server.stop()


@pytest.mark.parametrize("path", ["/webhooks/zendesk", "/webhooks/freshdesk", "/webhooks/slack/interactions"])
def test_a_chunked_body_over_the_limit_is_413(live: str, env: dict[str, str], path: str) -> None:
    body = b'{"ticket_id": "1", "pad": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}'

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    headers = {**signed(body), "X-Deskmark-Secret": env["FRESHDESK_WEBHOOK_SECRET"]}
    answer = httpx.post(live + path, content=chunks(), headers=headers, timeout=30)
    assert answer.status_code == 413
    # Just under the limit, chunked, is read whole (and then judged on its merits: 2xx/4xx).
    small = b'{"ticket_id": "1", "pad": "' + b"x" * 1000 + b'"}'
    answer = httpx.post(live + path, content=iter([small[:500], small[500:]]),
                        headers={**signed(small), "X-Deskmark-Secret": env["FRESHDESK_WEBHOOK_SECRET"]},
                        timeout=30)
    assert answer.status_code != 413 and answer.status_code < 500


def mutations(seed: bytes, rng: random.Random, count: int) -> Iterator[bytes]:
    for _ in range(count):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 6)):
            choice = rng.random()
            at = rng.randrange(len(data) or 1)
            if choice < 0.3 and data:
                data[at] = rng.randrange(256)  # flip a byte
            elif choice < 0.5:
                data[at:at] = rng.choice([b"[", b"{", b'"', b"\\u", b"9" * 50, b"\xff", b"-", b"null"])
            elif choice < 0.7 and data:
                del data[at:at + rng.randint(1, 20)]
            else:
                data = data[:at]  # truncate
        yield bytes(data)


def test_random_mutations_of_real_payloads_never_answer_500(senders: dict[str, Send]) -> None:
    rng = random.Random(20261129)
    seeds = {"zendesk": [p.read_bytes() for p in sorted((FIXTURES / "zendesk").glob("*.json"))],
             "freshdesk": [p.read_bytes() for p in sorted((FIXTURES / "freshdesk").glob("*.json"))]}
    answers: dict[int, int] = {}
    for endpoint, bodies in seeds.items():
        for body in bodies:
            for mutated in mutations(body, rng, 40):
                status = senders[endpoint](mutated)
                answers[status] = answers.get(status, 0) + 1
                assert status < 500, (endpoint, mutated[:200])
    assert answers.get(400, 0) > 0  # the fuzzing did reach the parsers
