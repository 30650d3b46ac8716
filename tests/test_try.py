"""`deskmark try HELPDESK TICKET_ID`: the whole pipeline on one real ticket, as the command
runs, against each helpdesk's sandbox: the marked photo, the note (HTML and text), the tags and
the Slack message land in DIR, the spend counts against the budget, and the helpdesk sees no
write at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask
from PIL import Image

from deskmark.demo import DESCRIPTION, SUBJECT, make_sandbox
from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.photos import damaged_product
from deskmark.sandbox.server import HelpdeskSandbox, LoopbackServer
from deskmark.sandbox.slack import SandboxSlack
from integrations.registry import HELPDESKS
from worker.limits import day_key

pytestmark = pytest.mark.e2e  # runs deskmark's own commands as processes

TOKEN_PATHS = ("/oauth/tokens", "/v2/oauth2/token")  # a grant is no write to a ticket


@pytest.fixture(params=list(HELPDESKS), ids=list(HELPDESKS))
def sandbox(request: pytest.FixtureRequest) -> Iterator[HelpdeskSandbox]:
    running = make_sandbox(HELPDESKS[request.param]).start()
    running.key = request.param  # type: ignore[attr-defined]
    # Webhooks are turned on after `deskmark try`: the helpdesk's go to a receiver that drops them
    # (answering 202, as deskmark would).
    receiver = Flask("webhooks-off")
    receiver.add_url_rule("/", "drop", lambda: ("", 202), methods=["POST"])
    off = LoopbackServer(receiver).start()
    running.webhook_url = off.url + "/"
    yield running
    running.stop()
    off.stop()


def run(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("OPENAI_", "DESKMARK_", *(f"{k.upper()}_" for k in HELPDESKS), "SLACK_"))}
    return subprocess.run([sys.executable, "-m", "deskmark.cli", "try", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=120, cwd=cwd, stdin=subprocess.DEVNULL)


def test_try_marks_the_demo_ticket_and_writes_nothing_to_it(
        sandbox: HelpdeskSandbox, redis_url: str, openai_fake: SandboxOpenAI, slack: SandboxSlack,
        tmp_path: Path) -> None:
    key: str = sandbox.key  # type: ignore[attr-defined]
    url = redis_url.rsplit("/", 1)[0] + "/11"
    redis.Redis.from_url(url).flushdb()
    ticket = sandbox.customer_photo_ticket(SUBJECT, DESCRIPTION,
                                           ("IMG_4032.jpg", damaged_product(seed=610), "image/jpeg"),
                                           tags=["shipping_damage"])
    env = {"REDIS_URL": url, "OPENAI_API_KEY": openai_fake.api_key, "OPENAI_BASE_URL": openai_fake.url,
           "DESKMARK_ATTACHMENT_HOSTS": sandbox.files_host, "SLACK_BOT_TOKEN": slack.bot_token,
           "SLACK_SIGNING_SECRET": slack.signing_secret, "SLACK_CHANNEL_ID": slack.CHANNEL,
           "SLACK_API_URL": slack.url, "SLACK_APPROVER_IDS": "U0APPROVER1",
           **sandbox.environment("a-webhook-secret")}
    requests_before = len(sandbox.requests)  # type: ignore[attr-defined]
    slack_before = len(slack.calls)
    edits_before = len(openai_fake.calls)

    asked = run(env, key, str(ticket), "--out", "out", cwd=tmp_path)  # no terminal, no --yes
    assert asked.returncode == 1 and "pass --yes" in asked.stdout
    assert "estimated $0.0" in asked.stdout and len(openai_fake.calls) == edits_before  # nothing paid

    result = run(env, key, str(ticket), "--out", "out", "--yes", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    folder = tmp_path / "out" / f"{key}-ticket-{ticket}"
    [photo] = list(folder.glob("photo-*-marked.jpg"))
    with Image.open(photo) as image:
        assert image.format == "JPEG"
    [text] = list(folder.glob("photo-*-note.txt"))
    note = text.read_text()
    assert "deskmark marked the damage on IMG_4032.jpg" in note and "<p>" not in note
    assert "Model: gpt-image-2" in note
    assert "<strong>deskmark</strong>" in next(folder.glob("photo-*-note.html")).read_text()
    escalation = json.loads((folder / "escalation.json").read_text())
    assert escalation["escalation"]["tags"][:2] == ["deskmark_annotated", "warranty_review"]
    assert escalation["escalation"]["warranty_target"] == sandbox.WARRANTY_TARGET
    message = json.loads(next(folder.glob("photo-*-slack.json")).read_text())["message"]
    assert [b["type"] for b in message["blocks"]][-1] == "actions"  # approvers set: buttons
    assert HELPDESKS[key].title in message["text"]
    assert f"nothing was written to {HELPDESKS[key].title} ticket #{ticket}" in result.stdout

    # The helpdesk saw reads (and a token grant) only; Slack saw nothing; the spend counted.
    seen = sandbox.requests[requests_before:]  # type: ignore[attr-defined]
    writes = [r for r in seen if r["method"] != "GET" and r["path"] not in TOKEN_PATHS]
    assert seen and writes == []
    assert sandbox.notes(ticket) == [] and "warranty_review" not in sandbox.ticket_tags(ticket)
    assert sandbox.warranty_assignee(ticket) is None
    assert len(slack.calls) == slack_before
    assert len(openai_fake.calls) > edits_before
    assert float(redis.Redis.from_url(url).get(f"dm:spend:{day_key()}") or 0) > 0
    assert not redis.Redis.from_url(url).keys("dm:job:*")  # no job record
