"""The logs are JSON lines with no secret in them.

The check of every log of a run lives in conftest.py (a session fixture, so it holds whatever
order or part of the suite runs); this module runs a Zendesk and a Freshdesk photo through a
worker on its own, so `pytest tests/test_zz_logs.py` checks a real run alone, and shows that
the check reads its secrets from the configuration: a new helpdesk's are caught unlisted.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deskmark.sandbox.freshdesk import SandboxFreshdesk
from deskmark.sandbox.photos import damaged_product
from deskmark.sandbox.server import LoopbackServer
from deskmark.sandbox.zendesk import SandboxZendesk
from integrations import registry, zendesk
from integrations.config import Settings
from integrations.env import Reader
from integrations.events import Helpdesk
from integrations.helpdesk import HelpdeskSpec
from integrations.tokens import TokenCache
from tests.helpers import WorkerProcess, leaks, secrets_of_the_run, send_photo, settle


def test_a_run_logs_json_lines_with_every_secret_and_token_redacted(
        worker: WorkerProcess, web: LoopbackServer, zendesk: SandboxZendesk,
        freshdesk: SandboxFreshdesk) -> None:
    ticket_id, _ = send_photo(zendesk, web.url, f"Logged {uuid.uuid4().hex[:8]}", seed=71)
    fd_ticket = freshdesk.create_ticket(f"Logged {uuid.uuid4().hex[:8]}", "<div>Dented.</div>",
                                        [("dent.jpg", damaged_product(seed=72), "image/jpeg")])
    assert freshdesk.fire(fd_ticket) == 202
    assert len(settle(zendesk, worker, ticket_id, 1)) == 1
    assert len(settle(freshdesk, worker, fd_ticket, 1)) == 1
    text = worker.output()
    assert "HTTP Request" in text and "job_id" in text  # the log did record the run
    # Both helpdesks' download URLs were logged with their secret parts taken out.
    assert "X-Amz-Signature=[redacted]" in text and "/attachments/token/[redacted]/" in text
    secrets = secrets_of_the_run()
    assert zendesk.tokens_issued() and set(zendesk.tokens_issued()) <= set(secrets)
    assert leaks([worker.log], secrets) == []
    entries = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert entries
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys()


@dataclass(frozen=True)
class AcmeSettings:
    """A helpdesk added after this test was written: nothing here names its secret."""

    base_url: str
    api_key: str = field(repr=False)
    warranty_target: int | None = None

    def secrets(self) -> list[str]:
        return [self.api_key]

    def warnings(self) -> list[str]:
        return []


def read_acme(r: Reader) -> AcmeSettings | None:
    key = r.get("ACMEDESK_API_KEY")
    return AcmeSettings("https://acme.example", key) if key else None


def no_client(settings: AcmeSettings, hosts: tuple[str, ...], cache: TokenCache | None) -> Helpdesk:
    raise AssertionError("the log check needs no client")


def test_a_new_helpdesks_secret_is_caught_without_editing_the_check(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spec = HelpdeskSpec(
        key="acmedesk", title="Acmedesk", variables=("ACMEDESK_API_KEY",), read=read_acme,
        verifier=lambda s: lambda request: False, rejected="", parse=zendesk.SPEC.parse,
        client=no_client, auth_hint="", where_hint="", sandbox="", setup="")
    monkeypatch.setitem(registry.HELPDESKS, "acmedesk", spec)
    planted = f"acme-{uuid.uuid4().hex}"
    settings = Settings.from_env({"ACMEDESK_API_KEY": planted}, dotenv=None)
    log = tmp_path / "worker.log"
    log.write_text(json.dumps({"message": f"GET https://acme.example/?key={planted}"}) + "\n")
    clean = tmp_path / "other.log"
    clean.write_text(json.dumps({"message": "GET https://acme.example/?key=[redacted]"}) + "\n")
    assert leaks([log, clean], settings.secrets()) == ["worker.log: acm…"]
