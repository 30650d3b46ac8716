"""A loopback Zendesk: the subset of the Support API deskmark uses, with Zendesk's semantics.

- auth: Basic `{email}/token:{api_token}`, `Bearer {oauth_token}` (a static token, with an
  optional end), or a token from `POST /oauth/tokens` (the client-credentials grant of a
  confidential OAuth client, CONTRACT "Zendesk OAuth"): tokens that expire after
  `token_lifetime` seconds, answered `401 invalid_token` after that, and scopes enforced per
  endpoint (`403` without them); anything else is 401. `grants` and `expired_calls` count;
- comments list with cursor paging; inline images only with `include_inline_images=true`;
- `content_url` answers (with auth) a 302 to a signed URL on a separate "zdusercontent" server
  that refuses any request carrying an Authorization header, as the real one does;
- uploads (`POST /api/v2/uploads.json?filename=`) keep the bytes and Content-Type as sent;
- `PUT /tickets/{id}.json`: a `comment` with upload tokens adds a comment by the caller,
  `tags` REPLACES the tag list, `group_id` assigns; `PUT /tags` adds, `POST /tags` replaces;
- optional signed webhooks (`ticket.attachment_linked_to_comment`) for every attachment added,
  deskmark's own notes included, so the loop guard is exercised;
- scripted faults (`faults.add(...)`) and a request log for assertions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from flask import Flask, Response, jsonify, redirect, request

from deskmark.sandbox.faults import Faults
from deskmark.sandbox.files import SignedFileHost
from deskmark.sandbox.server import HelpdeskSandbox, LoopbackServer

__all__ = ["SandboxZendesk"]


@dataclass
class Attachment:
    id: int
    file_name: str
    content_type: str
    data: bytes
    inline: bool
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class Comment:
    id: int
    author_id: int
    html_body: str
    public: bool
    attachments: list[Attachment]
    created_at: str


@dataclass
class SandboxTicket:
    id: int
    subject: str
    description: str
    tags: list[str]
    requester_id: int
    group_id: int | None = None
    comments: list[Comment] = field(default_factory=list)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, error: str, description: str = "") -> Response:
    response = jsonify({"error": error, "description": description} if description else
                       {"error": error})
    response.status_code = status
    return response


@dataclass
class Issued:
    """An access token the sandbox granted."""

    token: str
    client_id: str
    scopes: frozenset[str]
    expires_at: float


SCOPES = frozenset({"read", "write", *(f"{r}:{a}" for r in (
    "tickets", "users", "auditlogs", "organizations", "hc", "apps", "triggers", "automations",
    "targets", "webhooks", "zis") for a in ("read", "write"))})


class SandboxZendesk(HelpdeskSandbox):
    """Start with `.start()`; `.url` is the API root (ZENDESK_BASE_URL)."""

    AGENT_ID = 900001  # deskmark's own API user
    CUSTOMER_ID = 1001
    CLIENT_ID = "deskmark_sandbox"

    def __init__(self, email: str = "deskmark@example.com", api_token: str = "sandbox-token",
                 oauth_token: str | None = None, page_size: int = 100,
                 token_lifetime: float = 1800.0) -> None:
        self.email = email
        self.api_token = api_token
        self.oauth_token = oauth_token
        self.oauth_token_expires_at: float | None = None  # a static token's end, if it has one
        self.page_size = page_size
        # Confidential OAuth clients (identifier -> secret), and what their grants issued.
        self.client_secret = f"sandbox-client-secret-{uuid.uuid4().hex}"
        self.oauth_clients = {self.CLIENT_ID: self.client_secret}
        self.token_lifetime = token_lifetime
        self.issued: dict[str, Issued] = {}
        self.grants: list[dict[str, Any]] = []  # every token request, granted or refused
        self.expired_calls = 0  # API calls that came with an expired token
        self.tickets: dict[int, SandboxTicket] = {}
        # End users by id: their locale is the requester's language (`include=users`).
        self.locales: dict[int, str] = {self.CUSTOMER_ID: "en-US"}
        self.uploads: dict[str, Attachment] = {}
        self.requests: list[dict[str, Any]] = []
        self.faults = Faults()
        self.webhook_url: str | None = None
        self.webhook_secret: str | None = None
        self.webhook_answers: list[int] = []
        self._ids = itertools.count(5000)
        self._lock = threading.RLock()
        self.files = SignedFileHost(self._file)
        self.api = LoopbackServer(self._api_app())

    @property
    def file_requests(self) -> list[dict[str, Any]]:
        return self.files.requests

    # --- the demo's and the contract test's interface (HelpdeskSandbox) ---------------------
    WARRANTY_TARGET = 360000001  # a group

    def environment(self, secret: str) -> dict[str, str]:
        """An OAuth client, as a team connecting Zendesk today has (no new API tokens)."""
        self.webhook_secret = secret
        return {"ZENDESK_BASE_URL": self.url, "ZENDESK_CLIENT_ID": self.CLIENT_ID,
                "ZENDESK_CLIENT_SECRET": self.client_secret, "ZENDESK_WEBHOOK_SECRET": secret,
                "ZENDESK_WARRANTY_GROUP_ID": str(self.WARRANTY_TARGET)}

    def tokens_issued(self) -> list[str]:
        """Every access token granted so far (the log test looks for them)."""
        return list(self.issued)

    def customer_photo_ticket(self, subject: str, text: str, photo: tuple[str, bytes, str],
                              tags: list[str]) -> int:
        ticket_id = self.create_ticket(subject, text, tags=tags)
        self.add_comment(ticket_id, self.CUSTOMER_ID, "Here is a photo of the damage.", [photo])
        return ticket_id

    def warranty_assignee(self, ticket_id: int) -> int | None:
        return self.tickets[ticket_id].group_id

    def forged_webhook(self, ticket_id: int) -> int:
        comment = self.tickets[ticket_id].comments[-1]
        body = json.dumps({"ticket_id": str(ticket_id), "comment_id": str(comment.id)}).encode()
        headers = self.signed_headers(body, secret="not-the-signing-secret")
        return self.webhooks.post(self.webhook_url or "", content=body, headers=headers).status_code

    # --- seeding and inspection (Python API for the demo and the tests) ---------------------
    def create_ticket(self, subject: str, description: str, tags: list[str] | None = None,
                      ticket_id: int | None = None, locale: str | None = None) -> int:
        """A ticket; `locale`: its requester is an end user of that locale (Zendesk's "ja",
        "de", "en-US"), else the sandbox's customer (en-US)."""
        with self._lock:
            tid = ticket_id or next(self._ids)
            requester = self.CUSTOMER_ID
            if locale is not None:
                requester = next(self._ids)
                self.locales[requester] = locale
            self.tickets[tid] = SandboxTicket(tid, subject, description, list(tags or []), requester)
            self.add_comment(tid, self.CUSTOMER_ID, description, [], notify=False)
            return tid

    def add_comment(self, ticket_id: int, author_id: int, body: str,
                    files: list[tuple[str, bytes, str]] | list[tuple[str, bytes, str, bool]],
                    public: bool = True, notify: bool = True) -> Comment:
        with self._lock:
            attachments = [
                Attachment(next(self._ids), f[0], f[2], f[1], bool(f[3]) if len(f) > 3 else False)
                for f in files
            ]
            comment = Comment(next(self._ids), author_id, body, public, attachments, _now())
            self.tickets[ticket_id].comments.append(comment)
        if notify:
            self._notify(ticket_id, comment, author_id)
        return comment

    def notes(self, ticket_id: int) -> list[Comment]:
        """Private comments written by deskmark's API user."""
        return [c for c in self.tickets[ticket_id].comments
                if c.author_id == self.AGENT_ID and not c.public]

    def attachment_json(self, attachment: Attachment) -> dict[str, Any]:
        return {
            "id": attachment.id,
            "file_name": attachment.file_name,
            "content_url": f"{self.url}/attachments/token/{attachment.token}/"
                           f"?name={quote(attachment.file_name)}",
            "content_type": attachment.content_type,
            "size": len(attachment.data),
            "inline": attachment.inline,
            "malware_scan_result": "malware_not_found",
            "thumbnails": [],
        }

    def event_for(self, ticket_id: int, comment: Comment, attachment: Attachment,
                  actor_id: int) -> dict[str, Any]:
        """A `ticket.attachment_linked_to_comment` event in Zendesk's documented shape."""
        ticket = self.tickets[ticket_id]
        return {
            "account_id": 22129848,
            "detail": {
                "actor_id": str(actor_id), "id": str(ticket_id), "subject": ticket.subject,
                "description": ticket.description, "status": "OPEN", "priority": "NORMAL",
                "requester_id": str(ticket.requester_id), "tags": list(ticket.tags),
                "group_id": str(ticket.group_id) if ticket.group_id else None,
                "created_at": comment.created_at, "updated_at": _now(), "is_public": True,
                "via": {"channel": "web_service"},
            },
            "event": {
                "comment": {
                    "attachment": {
                        "content_type": attachment.content_type,
                        "content_url": self.attachment_json(attachment)["content_url"],
                        "filename": attachment.file_name,
                        "id": str(attachment.id),
                        "is_public": comment.public,
                    },
                    "id": str(comment.id),
                }
            },
            "id": str(uuid.uuid4()),
            "subject": f"zen:ticket:{ticket_id}",
            "time": _now(),
            "type": "zen:event-type:ticket.attachment_linked_to_comment",
            "zendesk_event_version": "2022-11-06",
        }

    def signed_headers(self, body: bytes, secret: str | None = None,
                       timestamp: str | None = None) -> dict[str, str]:
        timestamp = timestamp or _now()
        key = (secret or self.webhook_secret or "").encode()
        signature = base64.b64encode(
            hmac.new(key, timestamp.encode() + body, hashlib.sha256).digest()).decode()
        return {
            "Content-Type": "application/json",
            "X-Zendesk-Webhook-Signature": signature,
            "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
            "X-Zendesk-Webhook-Id": "01SANDBOXWEBHOOK",
            "X-Zendesk-Webhook-Invocation-Id": str(next(self._ids)),
            "X-Zendesk-Account-Id": "22129848",
        }

    def _notify(self, ticket_id: int, comment: Comment, actor_id: int) -> None:
        if not self.webhook_url or not comment.attachments:
            return
        events = [self.event_for(ticket_id, comment, a, actor_id) for a in comment.attachments]

        def send() -> None:
            for event in events:
                body = json.dumps(event).encode()
                headers = self.signed_headers(body)
                status = 0
                for attempt in range(4):  # Zendesk retries timeouts, and 503s with Retry-After
                    try:
                        answer = self.webhooks.post(self.webhook_url or "", content=body,
                                                    timeout=12, headers=headers)
                        status = answer.status_code
                    except httpx.HTTPError:
                        status = 0
                    if status not in (0, 503):
                        break
                    time.sleep(0.5 * (attempt + 1))
                self.webhook_answers.append(status)

        self.in_background(send)

    def _find_attachment(self, token: str) -> Attachment | None:
        for ticket in self.tickets.values():
            for comment in ticket.comments:
                for attachment in comment.attachments:
                    if attachment.token == token:
                        return attachment
        return None

    def _file(self, token: str) -> tuple[bytes, str] | None:
        attachment = self._find_attachment(token)
        return (attachment.data, attachment.content_type) if attachment else None

    # --- the API ------------------------------------------------------------------------------
    def _grant(self) -> Response:
        """POST /oauth/tokens, client credentials (JSON, as Zendesk takes it)."""
        body = request.get_json(silent=True)
        body = body if isinstance(body, dict) else {}
        record = {"time": time.time(), "client_id": body.get("client_id"), "granted": False}
        self.grants.append(record)
        if body.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type", "grant_type must be client_credentials")
        client = str(body.get("client_id") or "")
        if client not in self.oauth_clients or not hmac.compare_digest(
                self.oauth_clients[client].encode(), str(body.get("client_secret") or "").encode()):
            return _error(401, "invalid_client", "Client authentication failed due to unknown "
                          "client, no client authentication included, or unsupported "
                          "authentication method.")
        scopes = frozenset(str(body.get("scope") or "read write").split())
        if not scopes <= SCOPES:
            return _error(400, "invalid_scope", "The requested scope is invalid, unknown, or malformed.")
        lifetime = self.token_lifetime
        if body.get("expires_in") is not None:
            lifetime = float(body["expires_in"])
            if not 300 <= lifetime <= 172800:
                return _error(400, "invalid_request", "expires_in must be between 300 and 172800")
        issued = Issued(uuid.uuid4().hex + uuid.uuid4().hex, client, scopes, time.time() + lifetime)
        with self._lock:
            self.issued[issued.token] = issued
        record["granted"] = True
        return jsonify({"access_token": issued.token, "token_type": "bearer",
                        "scope": " ".join(sorted(scopes)), "expires_in": int(lifetime)})

    def _bearer(self, token: str) -> int | str | None:
        """The user a bearer token signs in as; "expired", or None when it is unknown."""
        if self.oauth_token and token == self.oauth_token:
            ended = self.oauth_token_expires_at is not None and time.time() >= self.oauth_token_expires_at
            return "expired" if ended else self.AGENT_ID
        issued = self.issued.get(token)
        if issued is None:
            return None
        if time.time() >= issued.expires_at:
            self.expired_calls += 1
            return "expired"
        resource = "users" if request.path.startswith("/api/v2/users") else "tickets"
        access = "read" if request.method == "GET" else "write"
        if not issued.scopes & {access, f"{resource}:{access}"}:
            return "forbidden"
        return self.AGENT_ID

    def _authorized(self) -> int | str | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return self._bearer(header.removeprefix("Bearer "))
        auth = request.authorization
        if auth and auth.type == "basic" and auth.username == f"{self.email}/token" and (
            auth.password == self.api_token
        ):
            return self.AGENT_ID
        return None

    def _api_app(self) -> Flask:
        app = Flask("sandbox-zendesk")

        @app.before_request
        def log_and_gate() -> Response | None:
            self.requests.append({"method": request.method, "path": request.path,
                                  "query": request.query_string.decode(), "time": time.time()})
            injected = self.faults.take(request.method, request.path)
            if injected is not None:
                return injected
            if request.path == "/oauth/tokens" and request.method == "POST":
                return self._grant()
            who = self._authorized()
            if who == "expired":
                return _error(401, "invalid_token", "The access token provided is expired, revoked, "
                              "malformed or invalid for other reasons.")
            if who == "forbidden":
                return _error(403, "Forbidden", "You do not have access to this page. Please "
                              "contact the account owner of this help desk for further help.")
            if who is None:
                return _error(401, "Couldn't authenticate you")
            return None

        @app.after_request
        def lose_the_answer(response: Response) -> Response:
            return self.faults.take(request.method, request.path, after=True) or response

        def ticket_or_404(ticket_id: int) -> SandboxTicket | Response:
            ticket = self.tickets.get(ticket_id)
            return ticket if ticket else _error(404, "RecordNotFound", "Not found")

        def ticket_json(ticket: SandboxTicket) -> dict[str, Any]:
            return {"id": ticket.id, "subject": ticket.subject, "description": ticket.description,
                    "tags": list(ticket.tags), "group_id": ticket.group_id,
                    "requester_id": ticket.requester_id, "status": "open"}

        @app.get("/api/v2/oauth/tokens/current.json")
        def current_token() -> Response:
            header = request.headers.get("Authorization", "")
            token = header.removeprefix("Bearer ")
            if not header.startswith("Bearer ") or token not in {self.oauth_token, *self.issued}:
                return _error(404, "RecordNotFound", "Not found")
            issued = self.issued.get(token)
            end = issued.expires_at if issued else self.oauth_token_expires_at
            return jsonify({"token": {
                "id": 1, "client_id": 41, "user_id": self.AGENT_ID, "token": token[:10],
                "scopes": sorted(issued.scopes) if issued else ["read", "write"],
                "created_at": _now(),
                "expires_at": datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                if end else None}})

        @app.get("/api/v2/users/me.json")
        def me() -> Response:
            return jsonify({"user": {"id": self.AGENT_ID, "name": "deskmark", "email": self.email,
                                     "role": "agent"}})

        @app.get("/api/v2/tickets/<int:ticket_id>.json")
        def show(ticket_id: int) -> Response:
            ticket = ticket_or_404(ticket_id)
            if isinstance(ticket, Response):
                return ticket
            answer: dict[str, Any] = {"ticket": ticket_json(ticket)}
            if "users" in (request.args.get("include") or "").split(","):  # sideloading
                answer["users"] = [{"id": ticket.requester_id, "name": "Customer", "role": "end-user",
                                    "locale": self.locales.get(ticket.requester_id, "en-US")}]
            return jsonify(answer)

        @app.get("/api/v2/tickets/<int:ticket_id>/comments.json")
        def comments(ticket_id: int) -> Response:
            ticket = ticket_or_404(ticket_id)
            if isinstance(ticket, Response):
                return ticket
            inline = request.args.get("include_inline_images") == "true"
            size = min(int(request.args.get("page[size]", self.page_size)), self.page_size)
            start = int(request.args.get("page[after]", "0") or 0)
            page = ticket.comments[start:start + size]
            has_more = start + size < len(ticket.comments)
            items = [{
                "id": c.id, "type": "Comment", "author_id": c.author_id, "html_body": c.html_body,
                "body": c.html_body, "plain_body": c.html_body, "public": c.public,
                "created_at": c.created_at,
                "attachments": [self.attachment_json(a) for a in c.attachments
                                if inline or not a.inline],
            } for c in page]
            next_link = None
            if has_more:
                query = "include_inline_images=true&" if inline else ""
                next_link = (f"{self.url}/api/v2/tickets/{ticket_id}/comments.json?{query}"
                             f"page[size]={size}&page[after]={start + size}")
            return jsonify({"comments": items,
                            "meta": {"has_more": has_more, "after_cursor": str(start + size)},
                            "links": {"next": next_link}})

        @app.get("/attachments/token/<token>/")
        def content(token: str) -> Any:
            attachment = self._find_attachment(token)
            if attachment is None:
                return _error(404, "RecordNotFound")
            return redirect(self.files.url(token, attachment.file_name), code=302)

        @app.post("/api/v2/uploads.json")
        def upload() -> Response:
            filename = request.args.get("filename")
            data = request.get_data()
            if not filename or not data:
                return _error(422, "RecordInvalid", "filename and a body are required")
            attachment = Attachment(next(self._ids), filename,
                                    request.headers.get("Content-Type", ""), data, False)
            self.uploads[attachment.token] = attachment
            response = jsonify({"upload": {"token": attachment.token,
                                           "expires_at": _now(),
                                           "attachment": self.attachment_json(attachment)}})
            response.status_code = 201
            return response

        @app.put("/api/v2/tickets/<int:ticket_id>.json")
        def update(ticket_id: int) -> Response:
            ticket = ticket_or_404(ticket_id)
            if isinstance(ticket, Response):
                return ticket
            payload = (request.get_json(silent=True) or {}).get("ticket")
            if not isinstance(payload, dict):
                return _error(400, "InvalidEndpoint", "body must be {\"ticket\": {...}}")
            events: list[dict[str, Any]] = []
            if "tags" in payload:
                ticket.tags = list(payload["tags"])  # a ticket PUT replaces every tag
            if "group_id" in payload:
                ticket.group_id = payload["group_id"]
            comment_in = payload.get("comment")
            if comment_in:
                files = []
                for token in comment_in.get("uploads") or []:
                    upload = self.uploads.pop(token, None)
                    if upload is None:
                        return _error(422, "RecordInvalid", f"upload token {token} is invalid")
                    files.append((upload.file_name, upload.data, upload.content_type))
                body = comment_in.get("html_body") or comment_in.get("body") or ""
                comment = self.add_comment(ticket_id, self.AGENT_ID, body, files,
                                           public=bool(comment_in.get("public", True)))
                events.append({"id": comment.id, "type": "Comment", "public": comment.public,
                               "body": body})
            return jsonify({"ticket": ticket_json(ticket),
                            "audit": {"id": next(self._ids), "events": events}})

        @app.route("/api/v2/tickets/<int:ticket_id>/tags.json", methods=["PUT", "POST", "DELETE"])
        def tags(ticket_id: int) -> Response:
            ticket = ticket_or_404(ticket_id)
            if isinstance(ticket, Response):
                return ticket
            given = (request.get_json(silent=True) or {}).get("tags") or []
            if request.method == "PUT":
                ticket.tags += [t for t in given if t not in ticket.tags]
            elif request.method == "POST":
                ticket.tags = list(given)
            else:
                ticket.tags = [t for t in ticket.tags if t not in given]
            return jsonify({"tags": ticket.tags})

        return app
