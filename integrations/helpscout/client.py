"""All of deskmark's Help Scout (Mailbox API 2.0) calls, over httpx; implements
`integrations.events.Helpdesk`.

- Auth: OAuth2 client credentials (`POST /v2/oauth2/token`, form-encoded), tokens of 48 hours
  with no refresh token, shared and renewed by `integrations.tokens` like Zendesk's.
- Photos: attachments of customer threads (`GET /v2/conversations/{id}/threads`, 50 a page,
  `_links.next`); agents' replies and notes (deskmark's own) start nothing. An attachment's
  bytes come from `GET …/attachments/{aid}/data` as JSON `{"data": base64}`.
- A note with the marked photo is one call (`POST …/notes`, the file inline as base64); its id
  comes back in `Resource-ID`.
- Tags: `PUT …/tags` REPLACES the whole set. The tags are read right before the write and
  merged; after the write they are read again, and if another writer's replace removed one of
  deskmark's meanwhile, merged and written once more. (A tag an agent adds in the one round
  trip between deskmark's read and its write is the only one at risk: the API has no add.)
- Assignment: `PATCH /v2/conversations/{id}` `{"op": "replace", "path": "/assignTo"}`.
- Rate limits per plan, writes counting double; a 429 carries `X-RateLimit-Retry-After`, and
  every call of this client pauses until then (`integrations.http.Paced`).
"""

from __future__ import annotations

import base64
import binascii
import json
import tempfile
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from integrations.downloads import SPOOL_BYTES, DownloadPolicy, fetch
from integrations.errors import PermanentError, UnusablePhoto
from integrations.events import Credential, NoteFile, SourcePhoto, Ticket, valid_id
from integrations.helpscout.settings import DEFAULT_BASE_URL, HelpScoutSettings
from integrations.http import Paced, make_http_client
from integrations.tokens import LocalTokenCache, OAuthBearer, TokenCache, TokenManager, cache_id, request_token

__all__ = ["HelpScoutClient", "TAG_WRITES"]

TAG_WRITES = 3  # a replace that keeps losing deskmark's tags to other writers is tried this often


class HelpScoutClient:
    vendor = "helpscout"
    _own: str | None = None  # deskmark's own user id, learnt once

    def __init__(self, settings: HelpScoutSettings, extra_hosts: tuple[str, ...] = (),
                 tokens: TokenCache | None = None) -> None:
        self.settings = settings
        self._grant_http = make_http_client(settings.base_url)
        self.tokens = TokenManager(
            self.vendor, cache_id(settings.base_url, settings.app_id, settings.app_secret),
            self._grant, tokens if tokens is not None else LocalTokenCache())
        self.http = make_http_client(settings.base_url, auth=OAuthBearer(
            self.tokens, "check that the app's user (HELPSCOUT_APP_ID's owner) may see the mailbox"))
        self.paced = Paced(self.http, self.vendor)
        origin = urlsplit(settings.base_url)
        # The attachment data endpoint is on the API itself: nothing else is ever fetched.
        self.policy = DownloadPolicy(vendor=self.vendor,
                                     vendor_origin=f"{origin.scheme}://{origin.netloc}",
                                     extra_hosts=extra_hosts)

    def close(self) -> None:
        self.http.close()
        self._grant_http.close()

    def _grant(self) -> tuple[str, float | None, str]:
        return request_token(
            self._grant_http, self.vendor, "/v2/oauth2/token",
            "check HELPSCOUT_APP_SECRET and HELPSCOUT_APP_ID (Your Profile > My Apps: the app's "
            "App ID and App Secret)",
            form={"grant_type": "client_credentials", "client_id": self.settings.app_id,
                  "client_secret": self.settings.app_secret})

    def credential(self) -> Credential:
        self.tokens.token()
        held = self.tokens.current()
        return Credential("OAuth app (HELPSCOUT_APP_ID)", held.expires_at if held else None,
                          renewed=True)

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        response = self.paced.request(method, path, **kw)
        return response.json() if response.content else {}

    # --- reading --------------------------------------------------------------------------------
    def own_user_id(self) -> str:
        if self._own is None:  # the app's user does not change while deskmark runs
            self._own = str(self._json("GET", "/v2/users/me")["id"])
        return self._own

    def ticket_url(self, ticket_id: str) -> str:
        if self.settings.base_url == DEFAULT_BASE_URL:
            return f"https://secure.helpscout.net/conversation/{ticket_id}"
        return f"{self.settings.base_url}/conversation/{ticket_id}"

    def _conversation(self, ticket_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v2/conversations/{ticket_id}"))

    def ticket(self, ticket_id: str) -> Ticket:
        data = self._conversation(ticket_id)
        return Ticket(id=str(data["id"]), subject=data.get("subject") or "",
                      description=data.get("preview") or "", tags=_tags(data),
                      url=self.ticket_url(ticket_id))

    def _threads(self, ticket_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        url = f"/v2/conversations/{ticket_id}/threads"
        for _ in range(200):  # 10,000 threads: a conversation longer than that is not paged on
            page = self._json("GET", url)
            found.extend((page.get("_embedded") or {}).get("threads") or [])
            href = ((page.get("_links") or {}).get("next") or {}).get("href")
            if not href:
                break
            # The next page's link carries the credentials' token: only to the API itself.
            if not str(href).startswith(self.settings.base_url + "/"):
                raise PermanentError(f"Help Scout's next-page link leaves the API: {str(href)[:120]}",
                                     vendor=self.vendor)
            url = str(href)
        return found

    def photos(self, ticket_id: str) -> list[SourcePhoto]:
        found: list[SourcePhoto] = []
        for thread in self._threads(ticket_id):
            if thread.get("type") != "customer":
                continue  # agents' replies and notes (deskmark's own) start nothing
            author = str((thread.get("createdBy") or {}).get("id") or "") or None
            for attachment in (thread.get("_embedded") or {}).get("attachments") or []:
                found.append(SourcePhoto(
                    attachment_id=valid_id(attachment.get("id"), "attachment id"),
                    filename=str(attachment.get("filename") or "photo"),
                    content_type=str(attachment.get("mimeType") or ""),
                    url="",  # the bytes come from the data endpoint, by id
                    author_id=author, comment_id=str(thread.get("id") or "") or None,
                    size=attachment.get("size") if isinstance(attachment.get("size"), int) else None))
        return found

    def download(self, ticket_id: str, photo: SourcePhoto) -> tuple[BinaryIO, str]:
        attachment = valid_id(photo.attachment_id, "attachment id")
        url = f"{self.settings.base_url}/v2/conversations/{ticket_id}/attachments/{attachment}/data"
        raw, _ = fetch(url, self.policy, self.http)  # JSON {"data": base64}, capped and timed
        with raw:
            try:
                data = base64.b64decode(json.load(raw)["data"], validate=True)
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise UnusablePhoto("Help Scout's attachment data is not base64 JSON") from exc
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, prefix="deskmark-photo-")  # noqa: SIM115 (the caller closes it)
        spool.write(data)
        spool.seek(0)
        return spool, photo.content_type  # type: ignore[return-value]

    # --- writing --------------------------------------------------------------------------------
    def post_note(self, ticket_id: str, html_body: str, files: list[NoteFile]) -> str:
        response = self.paced.request("POST", f"/v2/conversations/{ticket_id}/notes", json={
            "text": html_body,
            "attachments": [{"fileName": f.filename, "mimeType": f.content_type,
                             "data": base64.b64encode(f.data).decode()} for f in files]})
        return str(response.headers.get("resource-id", ""))

    def find_note(self, ticket_id: str, marker: str) -> str | None:
        own = self.own_user_id()  # only deskmark's own notes count
        for thread in self._threads(ticket_id):
            if (thread.get("type") == "note"
                    and str((thread.get("createdBy") or {}).get("id")) == own
                    and marker in (thread.get("body") or "")):
                return str(thread["id"])
        return None

    def escalate(self, ticket_id: str, tags: list[str], group_id: int | None) -> None:
        conversation = self._conversation(ticket_id)
        for _ in range(TAG_WRITES):
            current = list(_tags(conversation))
            missing = [t for t in tags if t not in current]
            if not missing:
                break
            # Read just now, so an agent's tag of a moment ago is in `current` and stays.
            self.paced.request("PUT", f"/v2/conversations/{ticket_id}/tags",
                               json={"tags": current + missing})
            conversation = self._conversation(ticket_id)
        else:
            if any(t not in _tags(conversation) for t in tags):
                raise PermanentError(f"Help Scout conversation {ticket_id}: deskmark's tags were "
                                     f"replaced by another writer {TAG_WRITES} times",
                                     vendor=self.vendor, status=409)
        assignee = (conversation.get("assignee") or {}).get("id")
        if group_id is not None and assignee != group_id:
            self.paced.request("PATCH", f"/v2/conversations/{ticket_id}",
                               json={"op": "replace", "path": "/assignTo", "value": group_id})


def _tags(conversation: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(t["tag"]) for t in conversation.get("tags") or () if isinstance(t, dict)
                 and t.get("tag"))
