"""Run a WSGI app on 127.0.0.1 in a background thread."""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any, Self

import httpx
from werkzeug.serving import make_server

__all__ = ["LoopbackServer", "HelpdeskSandbox"]

# One access-log line per request drowns the demo's own output.
logging.getLogger("werkzeug").setLevel(logging.WARNING)


class LoopbackServer:
    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = make_server(host, port, app, threaded=True)
        self.host = host
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"loopback-{self.port}")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class HelpdeskSandbox:
    """What the loopback helpdesks share: an API server and a signed-URL file host."""

    api: LoopbackServer
    files: Any  # deskmark.sandbox.files.SignedFileHost

    @property
    def url(self) -> str:
        """The API root (ZENDESK_BASE_URL / FRESHDESK_BASE_URL)."""
        return self.api.url

    @property
    def files_host(self) -> str:
        """host:port of the signed-URL server, for DESKMARK_ATTACHMENT_HOSTS."""
        return str(self.files.host)

    def start(self) -> Self:
        self.files.start()
        self.api.start()
        return self

    @functools.cached_property
    def webhooks(self) -> httpx.Client:
        """The client the helpdesk sends its webhooks with, kept like the vendor keeps its own:
        a client per webhook would load the CA roots every time (~25 ms of CPU), which in a
        benchmark is CPU taken from deskmark by a stand-in for someone else's servers."""
        return httpx.Client(timeout=15)

    def stop(self) -> None:
        self.api.stop()
        self.files.stop()
        if "webhooks" in self.__dict__:
            self.webhooks.close()
