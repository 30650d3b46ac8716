"""All of deskmark's Freshdesk API v2 calls, over httpx; implements `integrations.events.Helpdesk`.

Freshdesk's attachment links are presigned S3 URLs that live a few minutes and refuse an
Authorization header: a link is looked up again right before each download (and once more if
it has expired by then), and the download goes out without credentials. A ticket PUT replaces
the whole tag list, so tags are read, merged and written back.
"""

from __future__ import annotations

import mimetypes
from html.parser import HTMLParser
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

import httpx

from integrations.downloads import DownloadPolicy, fetch
from integrations.errors import PermanentError
from integrations.events import Credential, NoteFile, SourcePhoto, Ticket
from integrations.freshdesk.settings import FreshdeskSettings
from integrations.http import Paced, make_http_client

__all__ = ["FreshdeskClient", "FRESHDESK_ATTACHMENT_HOSTS", "inline_images"]

# Where Freshdesk serves attachments: its own domains, and its bucket on S3 (path style
# `s3.amazonaws.com/cdn.freshdesk.com/…`, or the bucket's own host name). Only that bucket: S3's
# host names are shared by everyone's buckets, and a bucket name proves nothing about its owner.
FRESHDESK_ATTACHMENT_HOSTS = ("*.freshdesk.com", "*.freshdeskusercontent.com",
                              "s3.amazonaws.com/cdn.freshdesk.com/",
                              "cdn.freshdesk.com.s3.amazonaws.com")
PER_PAGE = 100


class _InlineImages(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "img":
            return
        values = {k: v or "" for k, v in attrs}
        if "inline-image" in values.get("class", "").split() and values.get("data-id"):
            self.found.append((values["data-id"], values.get("src", "")))


def inline_images(html: str) -> list[tuple[str, str]]:
    """(data-id, src) of every `<img class="inline-image">` in a Freshdesk HTML body."""
    parser = _InlineImages()
    parser.feed(html or "")
    return parser.found


def _inline_photo(attachment_id: str, src: str, author: str | None, where: str | None) -> SourcePhoto:
    name = unquote(urlsplit(src).path.rsplit("/", 1)[-1]) or f"inline-{attachment_id}"
    return SourcePhoto(attachment_id=attachment_id, filename=name,
                       content_type=mimetypes.guess_type(name)[0] or "", url=src,
                       author_id=author, comment_id=where, inline=True)


class FreshdeskClient:
    vendor = "freshdesk"
    _own: str | None = None  # deskmark's own agent id, learnt once

    def __init__(self, settings: FreshdeskSettings, extra_hosts: tuple[str, ...] = (),
                 tokens: object = None) -> None:  # tokens: only for OAuth clients
        self.settings = settings
        # Basic auth with the API key as user; the password is ignored by Freshdesk.
        self.http = make_http_client(settings.base_url, auth=(settings.api_key, "X"))
        origin = urlsplit(settings.base_url)
        self.policy = DownloadPolicy(vendor=self.vendor,
                                     vendor_origin=f"{origin.scheme}://{origin.netloc}",
                                     known_hosts=FRESHDESK_ATTACHMENT_HOSTS,
                                     extra_hosts=extra_hosts)
        self.paced = Paced(self.http, self.vendor)

    def close(self) -> None:
        self.http.close()

    def credential(self) -> Credential:
        return Credential("API key (FRESHDESK_API_KEY)")

    # --- transport with Freshdesk's rate-limit headers ----------------------------------------
    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        response = self.paced.request(method, path, **kw)
        if response.headers.get("x-ratelimit-remaining") == "0":
            self.paced.pause(60)  # the minute's budget is spent
        return response

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        response = self._request(method, path, **kw)
        return response.json() if response.content else {}

    # --- reading --------------------------------------------------------------------------------
    def own_user_id(self) -> str:
        if self._own is None:  # the API user does not change while deskmark runs
            self._own = str(self._json("GET", "/api/v2/agents/me")["id"])
        return self._own

    def _ticket(self, ticket_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/api/v2/tickets/{ticket_id}"))

    def ticket_url(self, ticket_id: str) -> str:
        return f"{self.settings.base_url}/a/tickets/{ticket_id}"

    def ticket(self, ticket_id: str) -> Ticket:
        data = self._ticket(ticket_id)
        return Ticket(id=str(data["id"]), subject=data.get("subject") or "",
                      description=data.get("description_text") or data.get("description") or "",
                      tags=tuple(data.get("tags") or ()),
                      url=self.ticket_url(ticket_id))

    def _conversations(self, ticket_id: str) -> list[dict[str, Any]]:
        # Not `include=conversations`: that returns only the first ten.
        found: list[dict[str, Any]] = []
        url: str | None = f"/api/v2/tickets/{ticket_id}/conversations"
        params: dict[str, Any] | None = {"per_page": PER_PAGE, "page": 1}
        while url:
            response = self._request("GET", url, params=params)
            found.extend(response.json())
            url = response.links.get("next", {}).get("url")
            params = None  # the link carries them
        return found

    @staticmethod
    def _photos_of(attachments: list[dict[str, Any]], body: str, author: str | None,
                   where: str | None) -> list[SourcePhoto]:
        photos = [SourcePhoto(attachment_id=str(a["id"]), filename=a.get("name") or "photo",
                              content_type=a.get("content_type") or "",
                              url=a.get("attachment_url") or "", author_id=author,
                              comment_id=where, size=a.get("size") or a.get("file_size"))
                  for a in attachments]
        listed = {p.attachment_id for p in photos}
        photos += [_inline_photo(data_id, src, author, where)
                   for data_id, src in inline_images(body) if data_id not in listed]
        return photos

    def photos(self, ticket_id: str) -> list[SourcePhoto]:
        ticket = self._ticket(ticket_id)
        requester = str(ticket.get("requester_id") or "") or None
        found = self._photos_of(ticket.get("attachments") or [], ticket.get("description") or "",
                                requester, None)
        for conversation in self._conversations(ticket_id):
            found += self._photos_of(conversation.get("attachments") or [],
                                     conversation.get("body") or "",
                                     str(conversation.get("user_id") or "") or None,
                                     str(conversation["id"]))
        return found

    def _fresh(self, ticket_id: str, photo: SourcePhoto) -> SourcePhoto:
        """The same attachment with a link minted just now."""
        if photo.comment_id is None:
            ticket = self._ticket(ticket_id)
            candidates = self._photos_of(ticket.get("attachments") or [],
                                         ticket.get("description") or "", None, None)
        else:
            candidates = []
            for conversation in self._conversations(ticket_id):
                if str(conversation["id"]) == photo.comment_id:
                    candidates = self._photos_of(conversation.get("attachments") or [],
                                                 conversation.get("body") or "", None,
                                                 photo.comment_id)
        for candidate in candidates:
            if candidate.attachment_id == photo.attachment_id:
                return candidate
        raise PermanentError(f"attachment {photo.attachment_id} is no longer on ticket {ticket_id}",
                             vendor=self.vendor, status=404)

    def download(self, ticket_id: str, photo: SourcePhoto) -> tuple[BinaryIO, str]:
        # Freshdesk's attachment links are pre-signed (S3) or tokenized: they need no API key,
        # and inline images come from HTML the customer wrote. So none gets credentials.
        url = self._fresh(ticket_id, photo).url
        try:
            return fetch(url, self.policy, self.http, credentials=False)
        except PermanentError as exc:
            if exc.status not in (400, 403):
                raise
            # Expired between lookup and download (queue delays, slow hosts): once more.
            return fetch(self._fresh(ticket_id, photo).url, self.policy, self.http, credentials=False)

    # --- writing --------------------------------------------------------------------------------
    def post_note(self, ticket_id: str, html_body: str, files: list[NoteFile]) -> str:
        path = f"/api/v2/tickets/{ticket_id}/notes"
        if files:
            # Each part with its real filename and type: Freshdesk answers 400 otherwise.
            note = self._json("POST", path, data={"body": html_body, "private": "true"},
                              files=[("attachments[]", (f.filename, f.data, f.content_type))
                                     for f in files])
        else:
            note = self._json("POST", path, json={"body": html_body, "private": True})
        return str(note.get("id", ""))

    def find_note(self, ticket_id: str, marker: str) -> str | None:
        own = self.own_user_id()  # only deskmark's own private notes count
        for conversation in self._conversations(ticket_id):
            if (conversation.get("private") and str(conversation.get("user_id")) == own
                    and marker in (conversation.get("body") or "")):
                return str(conversation["id"])
        return None

    def escalate(self, ticket_id: str, tags: list[str], group_id: int | None) -> None:
        # A ticket PUT replaces every tag: read, merge, write, keeping the agents' tags.
        ticket = self._ticket(ticket_id)
        current = list(ticket.get("tags") or [])
        update: dict[str, Any] = {}
        merged = current + [t for t in tags if t not in current]
        if merged != current:
            update["tags"] = merged
        if group_id is not None and ticket.get("group_id") != group_id:
            update["group_id"] = group_id
        if update:
            self._json("PUT", f"/api/v2/tickets/{ticket_id}", json=update)
