"""The contract every helpdesk in the registry meets, run for each against its loopback sandbox:
a forged webhook is 401 and enqueues nothing, a real one is enqueued, every captured payload
parses or is declared unsupported, and the client does what the pipeline needs of it."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from deskmark.demo import make_sandbox
from deskmark.sandbox.photos import damaged_product
from deskmark.sandbox.server import HelpdeskSandbox, LoopbackServer
from integrations.config import Settings
from integrations.events import Ignored, NoteFile, RawRequest, TicketEvent
from integrations.helpdesk import HelpdeskSpec
from integrations.registry import HELPDESKS
from tests.helpers import FIXTURES, wait_for
from webhooks import create_app

SPECS = list(HELPDESKS.values())
# Seeds are unique across the tests: a photo deskmark has marked before is reused, not edited.
PHOTO = ("IMG_0001.jpg", damaged_product(seed=140), "image/jpeg")


class Running:
    def __init__(self, spec: HelpdeskSpec[Any], redis_url: str) -> None:
        self.spec = spec
        self.sandbox: HelpdeskSandbox = make_sandbox(spec).start()
        env = {"REDIS_URL": redis_url, "DESKMARK_ATTACHMENT_HOSTS": self.sandbox.files_host,
               **self.sandbox.environment(secrets.token_urlsafe(16))}
        self.settings = Settings.from_env(env, dotenv=None)
        self.web = LoopbackServer(create_app(self.settings)).start()
        self.sandbox.webhook_url = f"{self.web.url}/webhooks/{spec.key}"
        self.queue = redis.Redis.from_url(redis_url)

    def stop(self) -> None:
        self.web.stop()
        self.sandbox.stop()


@pytest.fixture(params=SPECS, ids=[s.key for s in SPECS])
def running(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Running]:
    # A database of its own: the queue is counted, and no worker consumes it.
    url = redis_url.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(url).flushdb()
    helpdesk = Running(request.param, url)
    yield helpdesk
    helpdesk.stop()


def test_every_helpdesk_is_wired(running: Running) -> None:
    spec = running.spec
    assert (Path(__file__).parent.parent / spec.setup).is_file()
    assert spec.key in running.settings.vendors_on()
    assert spec.variables and all(v.startswith(f"{spec.key.upper()}_") for v in spec.variables)
    assert (FIXTURES / spec.key).is_dir() and list((FIXTURES / spec.key).glob("*.json"))


def test_a_real_webhook_is_enqueued_and_a_forged_one_is_401(running: Running) -> None:
    ticket_id = running.sandbox.customer_photo_ticket("Cracked", "It arrived cracked.", PHOTO,
                                                      ["existing"])
    wait_for(lambda: running.queue.llen("deskmark") >= 1, timeout=15)
    queued = running.queue.llen("deskmark")
    assert running.sandbox.forged_webhook(ticket_id) == 401
    assert running.queue.llen("deskmark") == queued  # the 401 was answered: nothing added


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*/*.json")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_fixture_parses_or_is_declared_unsupported(path: Path) -> None:
    spec = HELPDESKS[path.parent.name]
    # Headers a vendor sends with the body (Help Scout names the event in one), where it matters.
    sidecar = path.with_suffix(".headers")
    headers = {k.lower(): v for k, v in json.loads(sidecar.read_text()).items()} if sidecar.exists() else {}
    request = RawRequest(body=path.read_bytes(), headers=headers)
    if path.stem.endswith("__unsupported"):
        with pytest.raises(Ignored):
            spec.parse(request)
        return
    event = spec.parse(request)
    assert isinstance(event, TicketEvent) and event.vendor == spec.key and event.ticket_id


def test_the_client_does_what_the_pipeline_needs(running: Running) -> None:
    sandbox, spec = running.sandbox, running.spec
    client = spec.client(running.settings.of(spec), running.settings.attachment_hosts, None)
    try:
        ticket_id = sandbox.customer_photo_ticket("Cracked lid", "It arrived cracked.", PHOTO,
                                                  ["existing"])
        own = client.own_user_id()
        assert own
        ticket = client.ticket(str(ticket_id))
        assert ticket.subject == "Cracked lid" and "existing" in ticket.tags
        assert ticket.url == client.ticket_url(str(ticket_id))

        [photo] = [p for p in client.photos(str(ticket_id)) if p.author_id != own]
        assert photo.looks_like_image() and photo.filename == PHOTO[0]
        data, content_type = client.download(str(ticket_id), photo)
        with data:
            assert data.read() == PHOTO[1]
        assert content_type.startswith("image/jpeg")

        marker = f"dm-{secrets.token_hex(8)}"
        note_id = client.post_note(str(ticket_id), f"<p>marked ({marker})</p>",
                                   [NoteFile("IMG_0001-marked.jpg", PHOTO[1], "image/jpeg")])
        assert sandbox.marked_notes(ticket_id) == [(PHOTO[1], "image/jpeg")]
        assert client.find_note(str(ticket_id), marker) == note_id
        assert client.find_note(str(ticket_id), "dm-not-posted") is None
        # deskmark's own note is never a photo to mark.
        assert [p.attachment_id for p in client.photos(str(ticket_id))  # (links are fresh per read)
                if p.author_id != own] == [photo.attachment_id]

        for _ in range(2):  # escalating twice changes nothing the second time
            client.escalate(str(ticket_id), ["deskmark_annotated", "warranty_review"],
                            sandbox.WARRANTY_TARGET)
        assert sandbox.ticket_tags(ticket_id) == ["existing", "deskmark_annotated", "warranty_review"]
        assert sandbox.warranty_assignee(ticket_id) == sandbox.WARRANTY_TARGET
    finally:
        client.close()
