"""What the end-to-end benchmarks share: an embedded Redis, a sandbox Zendesk that sends its
webhooks to the web app (in this process), a loopback OpenAI, and `deskmark worker` processes."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deskmark.redis_server import EmbeddedRedis  # noqa: E402
from deskmark.sandbox.openai import SandboxOpenAI  # noqa: E402
from deskmark.sandbox.server import LoopbackServer  # noqa: E402
from deskmark.sandbox.zendesk import SandboxZendesk  # noqa: E402
from integrations.config import Settings  # noqa: E402

__all__ = ["Loopback", "ROOT"]

SECRET = "bench-webhook-secret"


@dataclass
class Loopback:
    redis: EmbeddedRedis
    zendesk: SandboxZendesk
    openai: SandboxOpenAI
    web: LoopbackServer
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def start(cls, openai: SandboxOpenAI, appendonly: bool = False, **env: str) -> Loopback:
        """Everything up, deskmark at its defaults but for `env` and no edit rate limit."""
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            os.environ.pop(name, None)
        redis = EmbeddedRedis(appendonly=appendonly).start()
        zendesk = SandboxZendesk().start()
        openai.start()
        environment = {**os.environ, "REDIS_URL": redis.url, "OPENAI_API_KEY": openai.api_key,
                       "OPENAI_BASE_URL": openai.url, "DESKMARK_EDIT_RATE_PER_MINUTE": "0",
                       "ZENDESK_BASE_URL": zendesk.url, "ZENDESK_EMAIL": zendesk.email,
                       "ZENDESK_API_TOKEN": zendesk.api_token, "ZENDESK_WEBHOOK_SECRET": SECRET,
                       "DESKMARK_ATTACHMENT_HOSTS": zendesk.files_host, **env}
        from webhooks import create_app

        web = LoopbackServer(create_app(Settings.from_env(environment, dotenv=None))).start()
        zendesk.webhook_url, zendesk.webhook_secret = f"{web.url}/webhooks/zendesk", SECRET
        return cls(redis, zendesk, openai, web, environment)

    def start_worker(self, log: Path, *args: str) -> subprocess.Popen[bytes]:
        worker = subprocess.Popen(
            [sys.executable, "-m", "deskmark.cli", "worker", "--loglevel", "WARNING", "--quiet", *args],
            env={**self.env, "DESKMARK_HEALTH_FILE": str(log.with_suffix(".alive"))}, cwd=ROOT,
            stdout=log.open("ab"), stderr=subprocess.STDOUT)
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(60)
        self.web.stop()
        self.zendesk.stop()
        self.openai.stop()
        self.redis.cleanup()
