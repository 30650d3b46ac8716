"""Runs last (by name): the logs of the whole run are JSON lines with no secret in them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deskmark.sandbox.helpscout import SandboxHelpScout
from deskmark.sandbox.zendesk import SandboxZendesk
from tests.helpers import WorkerProcess


def test_no_secret_appears_in_the_worker_logs(worker: WorkerProcess, deskmark_env: dict[str, str],
                                              tmp_path_factory: pytest.TempPathFactory,
                                              zendesk: SandboxZendesk, helpscout: SandboxHelpScout) -> None:
    base = Path(worker.log).parent.parent
    logs = [p for p in base.rglob("*.log") if p.stat().st_size]
    assert worker.log in logs
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert "HTTP Request" in text and "job_id" in text  # the logs did record the run
    secrets = [deskmark_env[k] for k in ("OPENAI_API_KEY", "ZENDESK_CLIENT_SECRET", "ZENDESK_WEBHOOK_SECRET",
                                         "FRESHDESK_API_KEY", "FRESHDESK_WEBHOOK_SECRET",
                                         "GORGIAS_API_KEY", "GORGIAS_WEBHOOK_SECRET",
                                         "HELPSCOUT_APP_SECRET", "HELPSCOUT_WEBHOOK_SECRET",
                                         "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")]
    # ... and every access token the OAuth clients were granted during the run.
    secrets += zendesk.tokens_issued() + helpscout.tokens_issued()
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:3]}…) is in the logs"
    assert "X-Amz-Signature=[redacted]" in text and "/attachments/token/[redacted]/" in text
    for line in worker.output().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            assert {"time", "level", "logger", "message"} <= entry.keys()
