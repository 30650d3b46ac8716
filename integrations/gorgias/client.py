"""All of deskmark's Gorgias REST API calls, over httpx; implements `integrations.events.Helpdesk`.

- Auth: HTTP Basic `email:API_KEY` (a private app's key; it acts as that user).
- Messages: `GET /api/messages?ticket_id=…`, cursor paging (`meta.next_cursor`). Photos come from
  customer messages only: agent messages and internal notes (deskmark's own among them) start
  nothing.
- Attachments (`{url, name, size, content_type}`, no id) live on Gorgias's file host. The URL is
  tried as given, without credentials; if the host refuses it (a private file), the API's
  download endpoint (the same path under `/api/attachment/download`) is asked with credentials,
  and its redirect to a short-lived signed URL is followed without them.
- A note with an image is two calls: `POST /api/upload?type=attachment` (multipart), then an
  `internal-note` message carrying the upload.
- Tags: `POST /api/tickets/{id}/tags` adds (a PUT there, or a ticket PUT with `tags`, would
  replace them). Team: `PUT /api/tickets/{id}` with `assignee_team`.
- Rate limit: 40 calls per 20 s per API key (leaky bucket); a 429 carries `Retry-after`, and
  this client then pauses every call until it has passed (`integrations.http.Paced`).
"""

from __future__ import annotations

import html
import re
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from integrations.downloads import DownloadPolicy, fetch, plain_path
from integrations.errors import PermanentError
from integrations.events import Credential, NoteFile, SourcePhoto, Ticket
from integrations.gorgias.settings import GorgiasSettings
from integrations.http import Paced, make_http_client

__all__ = ["GorgiasClient", "GORGIAS_ATTACHMENT_HOSTS", "PAGE_SIZE"]

# Where Gorgias serves files: uploads.gorgias.io, and the signed URLs its download endpoint
# redirects to. A signed-URL host elsewhere goes into DESKMARK_ATTACHMENT_HOSTS (SETUP.md).
GORGIAS_ATTACHMENT_HOSTS = ("*.gorgias.io", "*.gorgias.com")
PAGE_SIZE = 100  # messages per page (Gorgias allows 1 to 100)
INTERNAL_NOTE = "internal-note"


class GorgiasClient:
    vendor = "gorgias"
    _own: str | None = None  # deskmark's own user id, learnt once

    def __init__(self, settings: GorgiasSettings, extra_hosts: tuple[str, ...] = (),
                 tokens: object = None) -> None:  # tokens: only for OAuth clients
        self.settings = settings
        self.http = make_http_client(settings.base_url, auth=(settings.email, settings.api_key))
        self.paced = Paced(self.http, self.vendor)
        origin = urlsplit(settings.base_url)
        self.policy = DownloadPolicy(vendor=self.vendor,
                                     vendor_origin=f"{origin.scheme}://{origin.netloc}",
                                     known_hosts=GORGIAS_ATTACHMENT_HOSTS, extra_hosts=extra_hosts)

    def close(self) -> None:
        self.http.close()

    def credential(self) -> Credential:
        return Credential("API key (GORGIAS_API_KEY)")

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        response = self.paced.request(method, path, **kw)
        return response.json() if response.content else {}

    # --- reading --------------------------------------------------------------------------------
    def own_user_id(self) -> str:
        if self._own is None:  # the API user does not change while deskmark runs
            try:
                self._own = str(self._json("GET", "/api/users/0")["id"])  # "the current user"
            except PermanentError as exc:
                if exc.status != 404:
                    raise
                # Not every account answers /users/0: look the key's user up by its email.
                found = self._json("GET", "/api/users", params={"email": self.settings.email})
                users = found.get("data") or []
                if not users:
                    raise PermanentError(f"Gorgias has no user {self.settings.email} (GORGIAS_EMAIL)",
                                         vendor=self.vendor, status=404) from exc
                self._own = str(users[0]["id"])
        return self._own

    def ticket_url(self, ticket_id: str) -> str:
        return f"{self.settings.base_url}/app/ticket/{ticket_id}"

    def _ticket(self, ticket_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/api/tickets/{ticket_id}"))

    def ticket(self, ticket_id: str) -> Ticket:
        data = self._ticket(ticket_id)
        return Ticket(id=str(data["id"]), subject=data.get("subject") or "",
                      description=data.get("excerpt") or "",
                      tags=tuple(t["name"] for t in data.get("tags") or () if t.get("name")),
                      url=self.ticket_url(ticket_id))

    def _messages(self, ticket_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"ticket_id": ticket_id, "limit": PAGE_SIZE,
                                  "order_by": "created_datetime:asc"}
        while True:
            page = self._json("GET", "/api/messages", params=params)
            found.extend(page.get("data") or [])
            cursor = (page.get("meta") or {}).get("next_cursor")
            if not cursor:
                return found
            params = {**params, "cursor": cursor}

    def photos(self, ticket_id: str) -> list[SourcePhoto]:
        found: list[SourcePhoto] = []
        for message in self._messages(ticket_id):
            if message.get("from_agent") or message.get("channel") == INTERNAL_NOTE:
                continue  # agents' messages and internal notes (deskmark's own) start nothing
            sender = str((message.get("sender") or {}).get("id") or "") or None
            for n, attachment in enumerate(message.get("attachments") or []):
                if not attachment.get("url"):
                    continue
                found.append(SourcePhoto(
                    # Gorgias attachments have no id: the message's id and the position in it.
                    attachment_id=f"{message['id']}-{n}", filename=attachment.get("name") or "photo",
                    content_type=attachment.get("content_type") or "", url=attachment["url"],
                    author_id=sender, comment_id=str(message["id"]), size=attachment.get("size")))
        return found

    def download(self, ticket_id: str, photo: SourcePhoto) -> tuple[BinaryIO, str]:
        # Never credentials to the file host, whatever it answers.
        try:
            return fetch(photo.url, self.policy, self.http, credentials=False)
        except PermanentError as exc:
            if exc.status not in (401, 403, 404):
                raise
        # A private file: the download endpoint (the same path on the API host, with
        # credentials) redirects to a signed URL, which fetch follows without them.
        # The credentialed path is built from the customer's attachment URL: with no dot segment
        # (nor one spelt %2e, nor an encoded slash) it cannot climb out of the download endpoint.
        path = plain_path(urlsplit(photo.url).path)
        return fetch(f"{self.settings.base_url}/api/attachment/download{path}", self.policy,
                     self.http, credentials=True)

    # --- writing --------------------------------------------------------------------------------
    def post_note(self, ticket_id: str, html_body: str, files: list[NoteFile]) -> str:
        uploaded: list[dict[str, Any]] = []
        if files:
            uploaded = list(self._json(
                "POST", "/api/upload", params={"type": "attachment"},
                files=[("file", (f.filename, f.data, f.content_type)) for f in files]))
        message = self._json("POST", f"/api/tickets/{ticket_id}/messages", json={
            "channel": INTERNAL_NOTE, "via": "api", "from_agent": True,
            "sender": {"id": int(self.own_user_id())},
            "body_html": html_body, "body_text": _text(html_body),
            "attachments": [{k: u.get(k) for k in ("url", "name", "size", "content_type")}
                            for u in uploaded]})
        return str(message.get("id", ""))

    def find_note(self, ticket_id: str, marker: str) -> str | None:
        own = self.own_user_id()  # only deskmark's own internal notes count
        for message in self._messages(ticket_id):
            if (message.get("channel") == INTERNAL_NOTE
                    and str((message.get("sender") or {}).get("id")) == own
                    and marker in (message.get("body_html") or "")):
                return str(message["id"])
        return None

    def escalate(self, ticket_id: str, tags: list[str], group_id: int | None) -> None:
        ticket = self._ticket(ticket_id)
        current = {t.get("name") for t in ticket.get("tags") or ()}
        missing = [t for t in tags if t not in current]
        if missing:
            self._json("POST", f"/api/tickets/{ticket_id}/tags", json={"names": missing})  # adds
        team = (ticket.get("assignee_team") or {}).get("id")
        if group_id is not None and team != group_id:
            self._json("PUT", f"/api/tickets/{ticket_id}", json={"assignee_team": {"id": group_id}})


def _text(html_body: str) -> str:
    """The note as plain text, for Gorgias's `body_text`."""
    return html.unescape(re.sub(r"<[^>]+>", " ", html_body)).strip()

