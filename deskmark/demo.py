"""`deskmark demo`: the whole flow on this machine, with no accounts and no servers to install.

An embedded Redis, the web app, one worker process, and a sandbox helpdesk (Zendesk, or any
other in the registry with `--helpdesk`) seeded with a ticket whose customer attached a photo
of a cracked phone. The sandbox sends the webhook the real helpdesk would send; the demo waits
for deskmark's private note and saves the marked photo.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from deskmark.redis_server import EmbeddedRedis
from deskmark.sandbox.photos import damaged_product
from deskmark.sandbox.server import HelpdeskSandbox, LoopbackServer
from integrations.config import Settings
from integrations.helpdesk import HelpdeskSpec
from integrations.registry import HELPDESKS

__all__ = ["run_demo", "make_sandbox"]

NOTE_TIMEOUT_SECONDS = 300  # an OpenAI edit can take two minutes or more


def _say(message: str) -> None:
    print(f"deskmark demo: {message}", flush=True)


def make_sandbox(spec: HelpdeskSpec[Any]) -> HelpdeskSandbox:
    """The helpdesk's loopback stand-in, named by its spec ("module:Class"), not started."""
    module, _, name = spec.sandbox.partition(":")
    sandbox: HelpdeskSandbox = getattr(importlib.import_module(module), name)()
    return sandbox


def demo_environment(redis_url: str, sandbox: HelpdeskSandbox, secret: str) -> dict[str, str]:
    """The worker's environment: the user's own, minus any real vendor, plus the sandbox."""
    vendors = (*(f"{key.upper()}_" for key in HELPDESKS), "SLACK_", "REDIS_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(vendors)}
    env.update({"REDIS_URL": redis_url, "DESKMARK_ATTACHMENT_HOSTS": sandbox.files_host,
                "DESKMARK_DEMO": "1"})  # without a model, the sample photo gets the local guess
    env.update(sandbox.environment(secret))
    return env


SUBJECT = "Phone arrived with a cracked screen"
DESCRIPTION = ("Hi, my new phone arrived today and the screen is cracked near the top right. "
               "Photo attached. Can I get a replacement?")


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # `docker stop`, systemd and `kill` send SIGTERM: stop as on Ctrl-C, so that the worker and
    # the embedded Redis are stopped with the demo (by the `finally` below), not left running.
    raise KeyboardInterrupt


def run_demo(out_dir: str = "deskmark-demo", serve: bool = False, port: int = 0,
             helpdesk: str = "zendesk") -> int:
    started = time.monotonic()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
    redis = EmbeddedRedis().start()
    _say(f"embedded Redis on {redis.url}")
    spec = HELPDESKS[helpdesk]
    sandbox = make_sandbox(spec).start()
    _say(f"sandbox {spec.title} on {sandbox.url}")
    secret = secrets.token_urlsafe(24)
    env = demo_environment(redis.url, sandbox, secret)
    settings = Settings.from_env(env, dotenv=None)
    from webhooks import create_app

    web = LoopbackServer(create_app(settings), port=port).start()
    _say(f"web app on {web.url} (edit provider: {settings.edit_provider}"
         + (f", model {settings.edit_model})" if settings.edit_provider == "openai" else
            ": local annotator, no AI model; set OPENAI_API_KEY to use OpenAI)"))
    worker = subprocess.Popen(
        [sys.executable, "-m", "deskmark.cli", "worker", "--concurrency", "4",
         "--loglevel", "WARNING", "--quiet"],
        # A throwaway worker on loopback: Celery's warning about running as root (as in most
        # containers) would only bury the demo's own lines. `deskmark worker` keeps it.
        env={**env, "PYTHONWARNINGS": "ignore:You're running the worker with superuser"},
    )
    try:
        sandbox.webhook_url = f"{web.url}/webhooks/{helpdesk}"
        photo = damaged_product()
        ticket_id = sandbox.customer_photo_ticket(SUBJECT, DESCRIPTION,
                                                  ("IMG_4032.jpg", photo, "image/jpeg"),
                                                  tags=["shipping_damage"])
        _say(f"ticket #{ticket_id} created with a customer photo; {spec.title} sent the webhook")
        note = _wait_for_note(sandbox, ticket_id, worker)
        if note is None:
            _say("no note arrived: see the worker's messages above")
            return 1
        data, content_type = note
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        original = out / f"{helpdesk}-ticket-{ticket_id}-original.jpg"
        original.write_bytes(photo)
        extension = ".jpg" if content_type == "image/jpeg" else ".png"
        marked = out / f"{helpdesk}-ticket-{ticket_id}-marked{extension}"
        marked.write_bytes(data)
        _say(f"note posted on ticket #{ticket_id} after {time.monotonic() - started:.1f} s")
        _say(f"tags now: {', '.join(sandbox.ticket_tags(ticket_id))}; warranty review assigned "
             f"to {sandbox.warranty_assignee(ticket_id)}")
        print(f"marked image: {marked.resolve()}")
        print(f"original:     {original.resolve()}")
        print(f"dashboard:    {web.url}/")
        # The demo's signer lives in its embedded Redis, gone when it exits: name it by fingerprint.
        print(f"credentials:  {command_name()} verify{_trust(redis.url)} {shlex.quote(str(marked))}")
        if serve:
            _say("serving; press Ctrl-C to stop")
            while worker.poll() is None:
                time.sleep(1)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut this short
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
        web.stop()
        sandbox.stop()
        redis.cleanup()


def _trust(redis_url: str) -> str:
    """` --trust SHA256` for the demo's throwaway signer, or "" if it has none."""
    from worker import credentials
    from worker.store import Store

    signer = Store.from_url(redis_url).signer_if_any()
    if signer is None:
        return ""
    ca = credentials.issuer_pem(credentials.Keys.from_json(signer).chain_pem)
    return f" --trust {credentials.fingerprint(ca)}"


def _wait_for_note(sandbox: HelpdeskSandbox, ticket_id: int,
                   worker: subprocess.Popen[bytes]) -> tuple[bytes, str] | None:
    deadline = time.monotonic() + NOTE_TIMEOUT_SECONDS
    next_report = time.monotonic() + 10
    while time.monotonic() < deadline:
        notes = sandbox.marked_notes(ticket_id)
        # The note comes first, the escalation (tags, group) right after: wait for both, so
        # that what the demo prints is the ticket as deskmark leaves it.
        if notes and "warranty_review" in sandbox.ticket_tags(ticket_id):
            return notes[0]
        if worker.poll() is not None:
            _say(f"the worker exited with code {worker.returncode}")
            return None
        if time.monotonic() > next_report:
            _say("waiting for the worker to mark the photo…")
            next_report += 10
        time.sleep(0.2)
    return None


def command_name() -> str:
    """How to run `deskmark` again from here: `deskmark` when that is on PATH and is this very
    command, else the path this one was started by (`.venv/bin/deskmark` after the README's
    install, which puts nothing on PATH)."""
    invoked = Path(sys.argv[0])
    if invoked.name != "deskmark":  # `python -m deskmark.cli demo`: say the command's name
        return "deskmark"
    found = shutil.which("deskmark")
    if found and Path(found).resolve() == invoked.resolve():
        return "deskmark"
    path = invoked.resolve()
    with contextlib.suppress(ValueError):
        path = path.relative_to(Path.cwd().resolve())
    return shlex.quote(str(path) if "/" in str(path) else f"./{path}")
