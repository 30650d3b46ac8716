"""Run a WSGI app on 127.0.0.1 in a background thread."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, Self

import httpx
from werkzeug.serving import make_server

if TYPE_CHECKING:
    from deskmark.sandbox.files import SignedFileHost

__all__ = ["LoopbackServer", "HelpdeskSandbox"]

# One access-log line per request drowns the demo's own output.
logging.getLogger("werkzeug").setLevel(logging.WARNING)


class LoopbackServer:
    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = make_server(host, port, app, threaded=True)
        self.host = host
        self.port = self._server.server_port
        # A short poll: stop() returns within 50 ms (at the default 0.5 s, every stack and
        # sandbox the tests stop waited half a second per server).
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05}, name=f"loopback-{self.port}")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _File(Protocol):
    @property
    def data(self) -> bytes: ...
    @property
    def content_type(self) -> str: ...


class _Stored(_File, Protocol):
    @property
    def token(self) -> str: ...


class _Note(Protocol):
    @property
    def attachments(self) -> Sequence[_File]: ...


class _Ticket(Protocol):
    @property
    def tags(self) -> Sequence[str]: ...


class HelpdeskSandbox:
    """What the loopback helpdesks share: an API server and a signed-URL file host, and what
    the demo and the contract test (tests/test_helpdesk_contract.py) ask of each."""

    api: LoopbackServer
    files: SignedFileHost
    webhook_url: str | None  # where the helpdesk sends its webhooks: deskmark's endpoint
    WARRANTY_TARGET: int  # the group or team the demo configures for warranty review
    tickets: Mapping[int, _Ticket]

    def environment(self, secret: str) -> dict[str, str]:
        """The variables deskmark needs to use this sandbox (its webhooks then carry `secret`)."""
        raise NotImplementedError

    def customer_photo_ticket(self, subject: str, text: str, photo: tuple[str, bytes, str],
                              tags: list[str]) -> int:
        """A customer's new ticket with a photo (name, bytes, type); the helpdesk sends its
        webhook, as it would for real."""
        raise NotImplementedError

    def notes(self, ticket_id: int) -> Sequence[_Note]:
        """The private notes deskmark's user left on the ticket, oldest first."""
        raise NotImplementedError

    def marked_notes(self, ticket_id: int) -> list[tuple[bytes, str]]:
        """The first file (bytes, type) of each private note with a file."""
        return [(n.attachments[0].data, n.attachments[0].content_type)
                for n in self.notes(ticket_id) if n.attachments]

    def ticket_tags(self, ticket_id: int) -> list[str]:
        return list(self.tickets[ticket_id].tags)

    def stored_files(self) -> Iterable[_Stored]:
        """Every file the helpdesk holds, each behind its file-host token."""
        raise NotImplementedError

    def stored_file(self, token: str) -> tuple[bytes, str] | None:
        """The file host's lookup: (bytes, type) for a token, None if unknown."""
        for f in self.stored_files():
            if f.token == token:
                return f.data, f.content_type
        return None

    def warranty_assignee(self, ticket_id: int) -> int | None:
        raise NotImplementedError

    def forged_webhook(self, ticket_id: int) -> int:
        """This helpdesk's webhook for the ticket with a wrong secret or signature: the status."""
        raise NotImplementedError

    _sending = 0
    _sending_lock = threading.Lock()

    def in_background(self, send: Callable[..., object], *args: object) -> None:
        """Send webhooks from a thread, as the helpdesk does, without holding up the API call
        that caused them; `sending` counts those still under way."""
        with self._sending_lock:
            self._sending += 1

        def run() -> None:
            try:
                send(*args)
            finally:
                with self._sending_lock:
                    self._sending -= 1

        threading.Thread(target=run, daemon=True).start()

    @property
    def sending(self) -> int:
        """Webhooks sent in the background and not yet answered (or given up)."""
        return self._sending

    @property
    def url(self) -> str:
        """The API root (ZENDESK_BASE_URL / FRESHDESK_BASE_URL / GORGIAS_BASE_URL)."""
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
        # Webhooks still being sent from their threads finish first (bounded): closing their
        # client under them would fail them, in whatever test or demo runs next.
        deadline = time.monotonic() + 20
        while self.sending and time.monotonic() < deadline:
            time.sleep(0.05)
        self.api.stop()
        self.files.stop()
        if "webhooks" in self.__dict__:
            self.webhooks.close()
