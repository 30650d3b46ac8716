"""All of deskmark's Zendesk API calls, over httpx; implements `integrations.events.Helpdesk`."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import httpx

from integrations.downloads import DownloadPolicy, fetch
from integrations.errors import VendorError
from integrations.events import Credential, NoteFile, SourcePhoto, Ticket
from integrations.http import call, make_http_client
from integrations.tokens import LocalTokenCache, OAuthBearer, TokenCache, TokenManager, cache_id, request_token
from integrations.zendesk.settings import SCOPE, ZendeskSettings, api_token_end

__all__ = ["ZendeskClient", "ZENDESK_ATTACHMENT_HOSTS"]

# content_url redirects to signed URLs on these hosts; they reject an Authorization header.
ZENDESK_ATTACHMENT_HOSTS = ("*.zdusercontent.com", "*.zendesk.com")


class ZendeskClient:
    _own: str | None = None  # deskmark's own user id, learnt once
    vendor = "zendesk"

    def __init__(self, settings: ZendeskSettings, extra_hosts: tuple[str, ...] = (),
                 tokens: TokenCache | None = None) -> None:
        self.settings = settings
        self.tokens: TokenManager | None = None
        if settings.credential == "oauth client":
            self._grant_http = make_http_client(settings.base_url)
            self.tokens = TokenManager(
                self.vendor, cache_id(settings.base_url, settings.client_id or "",
                                      settings.client_secret or "", SCOPE),
                self._grant, tokens if tokens is not None else LocalTokenCache())
            auth: httpx.Auth = OAuthBearer(self.tokens, "check that the OAuth client's user (its "
                                           "creator) is an agent with access to the ticket")
        elif settings.oauth_token:
            auth = _Bearer(settings.oauth_token)
        else:
            # API-token auth is Basic `{email}/token:{api_token}`.
            auth = httpx.BasicAuth(f"{settings.email}/token", settings.api_token or "")
        self.http = make_http_client(settings.base_url, auth=auth)
        origin = urlsplit(settings.base_url)
        self.policy = DownloadPolicy(
            vendor=self.vendor,
            vendor_origin=f"{origin.scheme}://{origin.netloc}",
            known_hosts=ZENDESK_ATTACHMENT_HOSTS,
            extra_hosts=extra_hosts,
        )

    def close(self) -> None:
        self.http.close()
        if self.tokens is not None:
            self._grant_http.close()

    def _grant(self) -> tuple[str, float | None, str]:
        """Zendesk's client-credentials grant (CONTRACT: Zendesk OAuth)."""
        return request_token(
            self._grant_http, self.vendor, "/oauth/tokens",
            "check ZENDESK_CLIENT_SECRET and ZENDESK_CLIENT_ID (the OAuth client's secret and "
            f"identifier, a confidential client), and that it may ask for the scopes {SCOPE}",
            json_body={"grant_type": "client_credentials", "client_id": self.settings.client_id or "",
                       "client_secret": self.settings.client_secret or "", "scope": SCOPE})

    def credential(self) -> Credential:
        """What deskmark signs in with, and how long it lives (`deskmark check`, the dashboard)."""
        kind = self.settings.credential
        if kind == "oauth client":
            assert self.tokens is not None
            self.tokens.token()  # a grant now, unless the deployment holds a token
            held = self.tokens.current()
            return Credential("OAuth client (ZENDESK_CLIENT_ID)", held.expires_at if held else None,
                              renewed=True)
        if kind == "api token":
            return Credential("API token (ZENDESK_API_TOKEN)", lives=api_token_end(),
                              warning="create an OAuth client and set ZENDESK_CLIENT_ID and "
                                      "ZENDESK_CLIENT_SECRET instead (integrations/zendesk/SETUP.md)")
        try:
            token = self._json("GET", "/api/v2/oauth/tokens/current.json").get("token") or {}
        except VendorError:
            token = {}  # not every user may read its own token: the lifetime stays unknown
        expires = _timestamp(token.get("expires_at"))
        warning = None
        if expires is not None:
            warning = ("ZENDESK_OAUTH_TOKEN expires and deskmark cannot renew it: create an OAuth "
                       "client and set ZENDESK_CLIENT_ID and ZENDESK_CLIENT_SECRET instead")
        return Credential("OAuth access token (ZENDESK_OAUTH_TOKEN)", expires, warning=warning)

    def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        response = call(self.http, self.vendor, method, path, **kw)
        return response.json() if response.content else {}

    def own_user_id(self) -> str:
        if self._own is None:  # the API user does not change while deskmark runs
            self._own = str(self._json("GET", "/api/v2/users/me.json")["user"]["id"])
        return self._own

    def ticket_url(self, ticket_id: str) -> str:
        return f"{self.settings.base_url}/agent/tickets/{ticket_id}"

    def ticket(self, ticket_id: str) -> Ticket:
        # The requester comes sideloaded in the same call: their locale is the ticket's language.
        found = self._json("GET", f"/api/v2/tickets/{ticket_id}.json", params={"include": "users"})
        data = found["ticket"]
        requester: dict[str, Any] = next(
            (u for u in found.get("users") or [] if u.get("id") == data.get("requester_id")), {})
        return Ticket(
            id=str(data["id"]),
            subject=data.get("subject") or "",
            description=data.get("description") or "",
            tags=tuple(data.get("tags") or ()),
            url=self.ticket_url(ticket_id),
            language=requester.get("locale"),
        )

    def _comments(self, ticket_id: str) -> list[dict[str, Any]]:
        comments: list[dict[str, Any]] = []
        url: str | None = f"/api/v2/tickets/{ticket_id}/comments.json"
        # Pasted screenshots are left out of the listing without include_inline_images.
        params: dict[str, str] | None = {"include_inline_images": "true", "page[size]": "100"}
        while url:
            page = self._json("GET", url, params=params)
            comments.extend(page.get("comments") or [])
            has_more = (page.get("meta") or {}).get("has_more")
            url = (page.get("links") or {}).get("next") if has_more else None
            params = None  # the next link carries every parameter
        return comments

    def photos(self, ticket_id: str) -> list[SourcePhoto]:
        found: list[SourcePhoto] = []
        for comment in self._comments(ticket_id):
            for attachment in comment.get("attachments") or []:
                found.append(
                    SourcePhoto(
                        attachment_id=str(attachment["id"]),
                        filename=attachment.get("file_name") or "photo",
                        content_type=attachment.get("content_type") or "",
                        url=attachment.get("content_url") or "",
                        author_id=str(comment.get("author_id") or "") or None,
                        comment_id=str(comment.get("id")),
                        inline=bool(attachment.get("inline")),
                        size=attachment.get("size"),
                    )
                )
        return found

    def download(self, ticket_id: str, photo: SourcePhoto) -> tuple[BinaryIO, str]:
        return fetch(photo.url, self.policy, self.http)

    def _upload(self, file: NoteFile) -> str:
        response = self._json(
            "POST",
            "/api/v2/uploads.json",
            params={"filename": file.filename},
            content=file.data,
            headers={"Content-Type": file.content_type},
        )
        return str(response["upload"]["token"])

    def post_note(self, ticket_id: str, html_body: str, files: list[NoteFile]) -> str:
        tokens = [self._upload(f) for f in files]
        ticket: dict[str, Any] = {
            "comment": {"html_body": html_body, "public": False, "uploads": tokens}
        }
        data = self._json("PUT", f"/api/v2/tickets/{ticket_id}.json", json={"ticket": ticket})
        for event in (data.get("audit") or {}).get("events") or []:
            if event.get("type") == "Comment":
                return str(event.get("id"))
        return ""

    def find_note(self, ticket_id: str, marker: str) -> str | None:
        # Only deskmark's own private comments: a customer can write the job id into a public
        # comment (it is derived from ids they see), and must not stop the real note.
        own = self.own_user_id()
        for comment in self._comments(ticket_id):
            if comment.get("public") or str(comment.get("author_id")) != own:
                continue
            text = (comment.get("html_body") or "") + (comment.get("body") or "")
            if marker in text or html.escape(marker) in text:
                return str(comment.get("id"))
        return None

    def escalate(self, ticket_id: str, tags: list[str], group_id: int | None) -> None:
        # PUT on /tags adds to the existing tags; `tags` in a ticket PUT would replace them all.
        self._json("PUT", f"/api/v2/tickets/{ticket_id}/tags.json", json={"tags": tags})
        if group_id is not None:
            self._json(
                "PUT", f"/api/v2/tickets/{ticket_id}.json", json={"ticket": {"group_id": group_id}}
            )


def _timestamp(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class _Bearer(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request
