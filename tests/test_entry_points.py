"""The documented entry points start: `deskmark web` (gunicorn 'webhooks:create_app()') and
`celery -A worker`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from deskmark.sandbox.zendesk import SandboxZendesk
from tests.helpers import free_port, post_signed, wait_for

pytestmark = pytest.mark.e2e  # runs deskmark's own commands as processes


def test_deskmark_web_serves_the_app_under_gunicorn(deskmark_env: dict[str, str],
                                                     zendesk: SandboxZendesk,
                                                     tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, **deskmark_env, "REDIS_URL": deskmark_env["REDIS_URL"][:-2] + "/4"}
    process = subprocess.Popen(
        [sys.executable, "-m", "deskmark.cli", "web", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "2"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=30)
        for n in range(6):  # spread over both gunicorn workers
            assert post_signed(url, zendesk, {"ticket_id": str(770 + n)}).status_code == 202
        for _ in range(3):
            assert httpx.post(f"{url}/webhooks/zendesk", content=b"{}", timeout=5).status_code == 401
        # Whichever worker answers the scrape, it reports every worker's counts.
        for _ in range(4):
            text = httpx.get(f"{url}/metrics", timeout=5).text
            assert 'deskmark_webhooks_total{outcome="enqueued",vendor="zendesk"} 6.0' in text
            assert 'deskmark_webhooks_total{outcome="unauthorized",vendor="zendesk"} 3.0' in text
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode(errors="replace")
    assert "Booting worker" in output  # gunicorn's own line: it really ran under gunicorn


def test_celery_finds_the_app_with_dash_a_worker(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "celery", "-A", "worker", "report"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "deskmark" in result.stdout and "task_acks_late: True" in result.stdout


def test_deskmark_web_beyond_loopback_without_a_token_says_the_dashboard_is_off(
        deskmark_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, **deskmark_env}
    env.pop("DESKMARK_ADMIN_TOKEN", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "deskmark.cli", "web", "--host", "0.0.0.0", "--port", str(port),
         "--workers", "1"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _healthy(f"http://127.0.0.1:{port}"), timeout=30)
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode(errors="replace")
    assert "WARNING: listening on 0.0.0.0 without DESKMARK_ADMIN_TOKEN" in output
    assert "Set DESKMARK_ADMIN_TOKEN to use the dashboard from elsewhere" in output


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def listening_on(port: int) -> list[str]:
    """The local addresses (hex, as /proc/net/tcp writes them) listening on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.append(address)
    return found


def test_deskmark_web_listens_on_loopback_unless_told(deskmark_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, **deskmark_env, "REDIS_URL": deskmark_env["REDIS_URL"][:-2] + "/4"}
    process = subprocess.Popen([sys.executable, "-m", "deskmark.cli", "web", "--port", str(port),
                                "--workers", "1"], env=env, cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: listening_on(port), timeout=30)
        assert listening_on(port) == ["0100007F"]  # 127.0.0.1, not 0.0.0.0 (00000000)
        def healthy() -> bool:  # the socket listens before gunicorn's worker has booted
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=30)  # booted: a SIGTERM now is a clean stop
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
