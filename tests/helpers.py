"""What the tests share: constants, waiting, sending signed events, processes and stacks.

Fixtures live in conftest.py; everything a test module calls lives here, once. No test module
imports another.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis
from PIL import Image

from deskmark.redis_server import EmbeddedRedis
from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.photos import damaged_product
from deskmark.sandbox.server import HelpdeskSandbox, LoopbackServer
from deskmark.sandbox.slack import Message, SandboxSlack
from deskmark.sandbox.zendesk import SandboxZendesk
from integrations.config import Settings
from integrations.events import job_id_for
from integrations.zendesk.webhook import ZendeskSignature
from worker.app import QUEUE
from worker.records import JobRecord
from worker.store import Store

WEBHOOK_SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="
WARRANTY_GROUP = "4242"
FRESHDESK_GROUP = "5353"
GORGIAS_SECRET = "gorgias-webhook-secret-for-tests"
HELPSCOUT_SECRET = "helpscout-webhook-secret-for-tests"
APPROVER = "U0APPROVER1"
FIXTURES = Path(__file__).parent / "fixtures"

for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
    os.environ.pop(name, None)


# --- waiting -------------------------------------------------------------------------------------
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

    def quiet_twice() -> bool:
        seen.append(quiet())
        return seen[-2:] == [True, True]

    wait_for(quiet_twice, timeout=timeout)
    client.close()


def settle(sandbox: HelpdeskSandbox, running: WorkerProcess | Stack, ticket_id: int, count: int,
           timeout: float = 60) -> list[Any]:
    """Wait for `count` notes with files on the sandbox's ticket, then until nothing more can
    happen (see `settled`: `running` is the worker or the stack whose Redis to watch), and
    return the notes with files: an extra note would be among them."""
    notes = sandbox.notes
    wait_for(lambda: len([n for n in notes(ticket_id) if n.attachments]) >= count, timeout=timeout)
    settled(sandbox, running.env["REDIS_URL"])
    return [n for n in notes(ticket_id) if n.attachments]


def job_reaches(store: Store, job_id: str, *states: str, timeout: float = 60) -> JobRecord:
    """Wait until the job's record is in one of `states` ("done", "failed", ...); return it."""
    def reached() -> JobRecord | None:
        record = store.job(job_id)
        return record if record.get("state") in states else None

    found: JobRecord = wait_for(reached, timeout=timeout)
    return found


def calls_for(openai_fake: SandboxOpenAI, subject: str) -> list[dict[str, object]]:
    """The model calls made for one ticket (its subject is in the prompt)."""
    return [c for c in openai_fake.calls if subject in str(c["prompt"])]


def marked_notes(zendesk: SandboxZendesk, ticket_id: int) -> list[Any]:
    return [n for n in zendesk.notes(ticket_id) if n.attachments]


def review_message(slack: SandboxSlack, label: str) -> Message:
    """Wait for the Slack review of the photo labelled `label`, and return it."""
    def found() -> Message | None:
        messages = slack.messages_about(label)
        return messages[0] if messages else None

    message: Message = wait_for(found, timeout=60)
    return message


# --- sending -------------------------------------------------------------------------------------
def now_stamp(offset: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + offset).strftime("%Y-%m-%dT%H:%M:%SZ")


def signed(body: bytes, secret: str = WEBHOOK_SECRET, timestamp: str | None = None,
           invocation: str | None = "inv-1") -> dict[str, str]:
    timestamp = timestamp or now_stamp()
    headers = {
        "Content-Type": "application/json",
        "X-Zendesk-Webhook-Signature": ZendeskSignature(secret).generate(timestamp, body),
        "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
    }
    if invocation:
        headers["X-Zendesk-Webhook-Invocation-Id"] = invocation
    return headers


def post_signed(web_url: str, zendesk: SandboxZendesk, payload: dict[str, Any] | bytes,
                **header_overrides: str) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = zendesk.signed_headers(body, WEBHOOK_SECRET)
    headers.update(header_overrides)
    return httpx.post(f"{web_url}/webhooks/zendesk", content=body, headers=headers, timeout=15)


def send_photo(zendesk: SandboxZendesk, web_url: str, subject: str, seed: int = 40,
               size: tuple[int, int] = (800, 600), locale: str | None = None) -> tuple[int, str]:
    """A Zendesk ticket with one customer photo, its event delivered (signed) to `web_url`:
    (ticket id, job id). `locale`: the requester's (Zendesk's "ja", "de")."""
    ticket_id = zendesk.create_ticket(subject, "Damaged on arrival.", locale=locale)
    comment = zendesk.add_comment(ticket_id, SandboxZendesk.CUSTOMER_ID, "photo",
                                  [("photo.jpg", damaged_product(*size, seed=seed), "image/jpeg")],
                                  notify=False)
    event = zendesk.event_for(ticket_id, comment, comment.attachments[0], SandboxZendesk.CUSTOMER_ID)
    assert post_signed(web_url, zendesk, event).status_code == 202
    return ticket_id, job_id_for("zendesk", str(ticket_id), str(comment.attachments[0].id))


def enqueued(queue: redis.Redis) -> list[dict[str, Any]]:
    """The task messages waiting on deskmark's queue, decoded."""
    messages = []
    for raw in queue.lrange(QUEUE, 0, -1):
        envelope = json.loads(raw)
        args = json.loads(base64.b64decode(envelope["body"]))[0]
        messages.append({"task": envelope["headers"]["task"], "event": args[0]})
    return messages


# --- photos --------------------------------------------------------------------------------------
def png_with_header_only(width: int, height: int) -> bytes:
    """A tiny file that claims width x height pixels: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + chunk(b"IEND", b""))


def recompressed(data: bytes, quality: int = 70, scale: float = 0.8) -> bytes:
    image = Image.open(io.BytesIO(data))
    out = io.BytesIO()
    image.resize((int(image.width * scale), int(image.height * scale))).save(out, "JPEG", quality=quality)
    return out.getvalue()


# --- the log check ------------------------------------------------------------------------------
# Every secret a test configured (deskmark_env, every Stack: from Settings.secrets(), so each
# helpdesk's own settings say what is secret) and every sandbox that grants tokens. The session
# fixture in conftest.py greps every log of the run for all of them at the end.
CONFIGURED_SECRETS: set[str] = set()
TOKEN_ISSUERS: list[Any] = []


def configured(settings: Settings) -> Settings:
    """Note a configuration's secrets for the log check; return the settings."""
    CONFIGURED_SECRETS.update(settings.secrets())
    return settings


def secrets_of_the_run() -> list[str]:
    """Every secret configured so far, and every token a sandbox granted."""
    issued = [token for sandbox in TOKEN_ISSUERS for token in sandbox.tokens_issued()]
    return sorted(CONFIGURED_SECRETS | set(issued))


def leaks(logs: list[Path], secrets: list[str]) -> list[str]:
    """Where a secret appears in the logs: "<file>: <first 3 characters>…", one per find."""
    found = []
    for log in logs:
        text = log.read_text(errors="replace")
        found += [f"{log.name}: {secret[:3]}…" for secret in secrets if secret and secret in text]
    return found


# --- processes -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("OPENAI_", "DESKMARK_", "ZENDESK_", "FRESHDESK_", "GORGIAS_",
                                  "HELPSCOUT_", "SLACK_"))}
    return subprocess.run([sys.executable, "-m", "deskmark.cli", "check"], env={**clean, **env},
                          capture_output=True, text=True, timeout=60, cwd=cwd)


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
        self.settings = configured(Settings.from_env(self.env, dotenv=None))
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
