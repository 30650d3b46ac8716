"""The whole flow with a Redis password (and every vendor's secret): none appears in any log
line, in `deskmark check`, on the dashboard or in the worker's start-up line."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable

import httpx

from deskmark.sandbox.slack import SandboxSlack
from deskmark.sandbox.zendesk import SandboxZendesk
from integrations.config import masked_url
from integrations.logs import Redactor
from tests.helpers import Stack, free_port, post_signed, send_photo, wait_for

PASSWORD = "redis-Pa55word-" + uuid.uuid4().hex[:8]


def test_a_redis_password_appears_nowhere(make_stack: Callable[..., Stack], zendesk: SandboxZendesk,
                                          slack: SandboxSlack) -> None:
    stack = make_stack(redis_password=PASSWORD)
    assert PASSWORD in stack.env["REDIS_URL"]
    env = {**os.environ, **stack.env}
    port = free_port()
    web = subprocess.Popen([sys.executable, "-m", "deskmark.cli", "web", "--host", "127.0.0.1",
                            "--port", str(port), "--workers", "1"], env=env, cwd=stack.workdir,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(url), timeout=30)
        ticket_id, job_id = send_photo(zendesk, url, f"Password {uuid.uuid4().hex[:8]}", seed=51)
        wait_for(lambda: stack.store.job(job_id).get("state") == "done", timeout=60)
        assert post_signed(url, zendesk, {"ticket_id": "not a number"}).status_code == 400
        dashboard = httpx.get(url + "/", timeout=10).text
        readyz = httpx.get(url + "/readyz", timeout=10).text
        metrics = httpx.get(url + "/metrics", timeout=10).text
    finally:
        web.terminate()
        web_log = web.communicate(timeout=30)[0].decode(errors="replace")
    check = subprocess.run([sys.executable, "-m", "deskmark.cli", "check"], env=env, text=True,
                           capture_output=True, timeout=60, cwd=stack.workdir)
    worker_log = stack.workers[0].output()
    assert "deskmark worker starting with" in worker_log and "HTTP Request" in web_log + worker_log
    assert "redis://:***@127.0.0.1" in check.stdout + worker_log  # the URL, shown masked
    for name, text in {"web": web_log, "worker": worker_log, "check": check.stdout + check.stderr,
                       "dashboard": dashboard, "readyz": readyz, "metrics": metrics}.items():
        assert PASSWORD not in text, f"the Redis password is in the {name} output"
    assert ticket_id


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_urls_are_masked_and_passwords_in_any_url_redacted() -> None:
    assert masked_url("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert masked_url("rediss://default:s3cret@cache.example:6380/1") == "rediss://default:***@cache.example:6380/1"
    assert masked_url("redis://localhost:6379/0") == "redis://localhost:6379/0"
    clean = Redactor([]).clean("Error connecting to redis://:hunter22@10.0.0.5:6379/0 and "
                               "https://user:p4ss@proxy.example/x")
    assert "hunter22" not in clean and "p4ss" not in clean and "redis://:[redacted]@10.0.0.5" in clean
