"""A loopback Help Scout: the subset of the Mailbox API 2.0 deskmark uses, with its semantics.

- auth: OAuth2 client credentials only (`POST /v2/oauth2/token`, form-encoded; `invalid_client`
  401 for a wrong id or secret); Bearer tokens that expire after `token_lifetime` (48 h by
  default), answered 401 after that; no refresh tokens; `grants` and `expired_calls` count;
- `GET /v2/users/me`; `GET /v2/conversations/{id}` (subject, preview, tags, assignee);
- `GET /v2/conversations/{id}/threads`: `page_size` a page (50 by default), `_links.next`;
  attachments under each thread's `_embedded.attachments`; `GET …/attachments/{aid}/data` is
  JSON `{"data": base64}`;
- `POST /v2/conversations/{id}/notes {"text", "attachments": [{"fileName", "mimeType",
  "data"}]}`: 201 with `Resource-ID`; an attachment without its type or with data that is not
  base64 is 400;
- `PUT /v2/conversations/{id}/tags {"tags"}` REPLACES the set (204); `PATCH /v2/conversations/
  {id}` with `/assignTo` assigns (204);
- rate limit: `rate_limit` calls a minute, writes counting double, then 429 with
  `X-RateLimit-Retry-After`;
- signed webhooks (`X-HelpScout-Signature`, HMAC-SHA1 of the body, base64; `X-HelpScout-Event`)
  for `convo.created`, `convo.customer.reply.created` and `convo.note.created` (deskmark's own
  notes too, so the loop guard is exercised);
- `on_tags_read`: a hook run just before the conversation is read (another writer's edit);
- scripted faults (`faults.add(...)`) and a request log for assertions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from flask import Flask, Response, jsonify, request

from deskmark.sandbox.faults import Faults
from deskmark.sandbox.files import SignedFileHost
from deskmark.sandbox.server import HelpdeskSandbox, LoopbackServer

__all__ = ["SandboxHelpScout"]


@dataclass
class HFile:
    id: int
    filename: str
    content_type: str
    data: bytes
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class HThread:
    id: int
    type: str  # "customer", "message" (an agent's reply), "note"
    author_id: int
    body: str
    attachments: list[HFile]
    created_at: str


@dataclass
class HConversation:
    id: int
    subject: str
    preview: str
    tags: list[str]
    customer_id: int
    assignee: int | None = None
    threads: list[HThread] = field(default_factory=list)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _invalid(path: str, message: str) -> Response:
    """Help Scout's 400, naming the field."""
    return _error(400, "Bad request", _embedded={"errors": [{"path": path, "message": message}]})


def _error(status: int, message: str, **extra: Any) -> Response:
    response = jsonify({"message": message, **extra})
    response.status_code = status
    return response


class SandboxHelpScout(HelpdeskSandbox):
    """Start with `.start()`; `.url` is the API root (HELPSCOUT_BASE_URL)."""

    AGENT_ID = 480001  # the app's user: deskmark
    OTHER_AGENT_ID = 480002
    CUSTOMER_ID = 770001
    WARRANTY_TARGET = 480009  # a user
    APP_ID = "sandbox-helpscout-app"

    def __init__(self, page_size: int = 50, token_lifetime: float = 172800.0,
                 rate_limit: int = 400) -> None:
        self.app_secret = f"sandbox-helpscout-secret-{uuid.uuid4().hex}"
        self.apps = {self.APP_ID: self.app_secret}
        self.page_size = page_size
        self.token_lifetime = token_lifetime
        self.rate_limit = rate_limit
        self.issued: dict[str, float] = {}  # token -> expires at
        self.grants: list[dict[str, Any]] = []
        self.expired_calls = 0
        self.tickets: dict[int, HConversation] = {}
        self.requests: list[dict[str, Any]] = []
        self.faults = Faults()
        self.webhook_url: str | None = None
        self.webhook_secret: str | None = None
        self.webhook_answers: list[int] = []
        self.on_tags_read: Callable[[HConversation], None] | None = None
        self._calls: deque[tuple[float, int]] = deque()
        self._ids = itertools.count(62000)
        self._lock = threading.RLock()
        self.files = SignedFileHost(self.stored_file)  # Help Scout's own web links (unused)
        self.api = LoopbackServer(self._app())

    # --- the demo's and the contract test's interface (HelpdeskSandbox) ---------------------
    def environment(self, secret: str) -> dict[str, str]:
        self.webhook_secret = secret
        return {"HELPSCOUT_BASE_URL": self.url, "HELPSCOUT_APP_ID": self.APP_ID,
                "HELPSCOUT_APP_SECRET": self.app_secret, "HELPSCOUT_WEBHOOK_SECRET": secret,
                "HELPSCOUT_WARRANTY_USER_ID": str(self.WARRANTY_TARGET)}

    def customer_photo_ticket(self, subject: str, text: str, photo: tuple[str, bytes, str],
                              tags: list[str]) -> int:
        return self.create_conversation(subject, text, [photo], tags=tags)

    def warranty_assignee(self, ticket_id: int) -> int | None:
        return self.tickets[ticket_id].assignee

    def forged_webhook(self, ticket_id: int) -> int:
        return self.fire(ticket_id, "convo.created", secret="not-the-secret", record=False)

    def notes(self, ticket_id: int) -> list[HThread]:
        """Notes written by deskmark's user, oldest first."""
        return [t for t in self.tickets[ticket_id].threads
                if t.type == "note" and t.author_id == self.AGENT_ID]

    def stored_files(self) -> list[HFile]:
        return [f for c in self.tickets.values() for t in c.threads for f in t.attachments]

    def tokens_issued(self) -> list[str]:
        return list(self.issued)

    # --- seeding ------------------------------------------------------------------------------
    def create_conversation(self, subject: str, text: str, photos: list[tuple[str, bytes, str]],
                            tags: list[str] | None = None, notify: bool = True) -> int:
        with self._lock:
            cid = next(self._ids)
            self.tickets[cid] = HConversation(cid, subject, text[:80], list(tags or []), self.CUSTOMER_ID)
        self.add_thread(cid, "customer", self.CUSTOMER_ID, text, photos, event="convo.created",
                        notify=notify)
        return cid

    def add_thread(self, cid: int, kind: str, author: int, body: str,
                   photos: list[tuple[str, bytes, str]], event: str | None = None,
                   notify: bool = True) -> HThread:
        with self._lock:
            thread = HThread(next(self._ids), kind, author, body,
                             [HFile(next(self._ids), p[0], p[2], p[1]) for p in photos], _now())
            self.tickets[cid].threads.append(thread)
        if notify and event:
            self.in_background(self.fire, cid, event)
        return thread

    def customer_reply(self, cid: int, text: str, photos: list[tuple[str, bytes, str]]) -> HThread:
        return self.add_thread(cid, "customer", self.CUSTOMER_ID, text, photos,
                               event="convo.customer.reply.created")

    def conversation_json(self, conversation: HConversation) -> dict[str, Any]:
        return {
            "id": conversation.id, "number": conversation.id - 61000, "type": "email",
            "folderId": 1, "status": "active", "state": "published", "subject": conversation.subject,
            "preview": conversation.preview, "mailboxId": 3001,
            "assignee": {"id": conversation.assignee, "type": "user"} if conversation.assignee else None,
            "createdBy": {"id": conversation.customer_id, "type": "customer"},
            "createdAt": conversation.threads[0].created_at if conversation.threads else _now(),
            "tags": [{"id": 100 + n, "color": "#929499", "tag": t} for n, t in enumerate(conversation.tags)],
            "primaryCustomer": {"id": conversation.customer_id, "type": "customer"},
            "_links": {"self": {"href": f"{self.url}/v2/conversations/{conversation.id}"}},
        }

    def fire(self, cid: int, event: str, secret: str | None = None, record: bool = True) -> int:
        """Help Scout's webhook for the conversation: the conversation itself, signed."""
        body = json.dumps(self.conversation_json(self.tickets[cid])).encode()
        key = (secret or self.webhook_secret or "").encode()
        signature = base64.b64encode(hmac.new(key, body, hashlib.sha1).digest()).decode()
        headers = {"Content-Type": "application/json", "X-HelpScout-Event": event,
                   "X-HelpScout-Signature": signature}
        status = 0
        for attempt in range(4):  # retried while deskmark is unavailable
            try:
                status = self.webhooks.post(self.webhook_url or "", content=body, headers=headers,
                                            timeout=12).status_code
            except httpx.HTTPError:
                status = 0
            if status not in (0, 503) or not record:
                break
            time.sleep(0.5 * (attempt + 1))
        if record:
            self.webhook_answers.append(status)
        return status

    # --- the API ------------------------------------------------------------------------------
    def _grant(self) -> Response:
        form = request.form
        record = {"time": time.time(), "client_id": form.get("client_id"), "granted": False}
        self.grants.append(record)
        if form.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type", error="unsupported_grant_type")
        app = form.get("client_id", "")
        if app not in self.apps or not hmac.compare_digest(self.apps[app].encode(),
                                                           form.get("client_secret", "").encode()):
            response = jsonify({"error": "invalid_client", "error_description": "Bad credentials"})
            response.status_code = 401
            return response
        token = uuid.uuid4().hex
        self.issued[token] = time.time() + self.token_lifetime
        record["granted"] = True
        return jsonify({"token_type": "bearer", "access_token": token,
                        "expires_in": int(self.token_lifetime)})

    def _limited(self) -> Response | None:
        now = time.time()
        weight = 1 if request.method == "GET" else 2  # writes count double
        with self._lock:
            while self._calls and self._calls[0][0] < now - 60:
                self._calls.popleft()
            used = sum(w for _, w in self._calls)
            if used + weight > self.rate_limit:
                wait = int(self._calls[0][0] + 60 - now) + 1
                response = _error(429, "Rate limit exceeded")
                response.headers["X-RateLimit-Retry-After"] = str(wait)
                return response
            self._calls.append((now, weight))
        return None

    def _app(self) -> Flask:
        app = Flask("sandbox-helpscout")

        @app.before_request
        def gate() -> Response | None:
            self.requests.append({"method": request.method, "path": request.path,
                                  "query": request.query_string.decode(), "time": time.time()})
            injected = self.faults.take(request.method, request.path)
            if injected is not None:
                return injected
            if request.path == "/v2/oauth2/token" and request.method == "POST":
                return self._grant()
            header = request.headers.get("Authorization", "")
            expires = self.issued.get(header.removeprefix("Bearer ")) if header.startswith("Bearer ") else None
            if expires is None:
                return _error(401, "Unauthorized", error="invalid_token")
            if time.time() >= expires:
                self.expired_calls += 1
                return _error(401, "The access token expired", error="invalid_token")
            return self._limited()

        def conversation_or_404(cid: int) -> HConversation | Response:
            conversation = self.tickets.get(cid)
            return conversation if conversation else _error(404, "Resource not found")

        @app.get("/v2/users/me")
        def me() -> Response:
            return jsonify({"id": self.AGENT_ID, "firstName": "deskmark", "lastName": "",
                            "email": "deskmark@example.com", "role": "user"})

        @app.get("/v2/conversations/<int:cid>")
        def show(cid: int) -> Response:
            conversation = conversation_or_404(cid)
            if isinstance(conversation, Response):
                return conversation
            if self.on_tags_read is not None:
                self.on_tags_read(conversation)  # another writer, a moment before this read
            return jsonify(self.conversation_json(conversation))

        @app.get("/v2/conversations/<int:cid>/threads")
        def threads(cid: int) -> Response:
            conversation = conversation_or_404(cid)
            if isinstance(conversation, Response):
                return conversation
            page = max(1, int(request.args.get("page", "1") or 1))
            ordered = list(reversed(conversation.threads))  # newest first, as Help Scout lists them
            start = (page - 1) * self.page_size
            items = [{
                "id": t.id, "type": t.type, "status": "active", "state": "published",
                "body": t.body, "createdAt": t.created_at,
                "createdBy": {"id": t.author_id, "type": "customer" if t.type == "customer" else "user"},
                "_embedded": {"attachments": [{
                    "id": f.id, "filename": f.filename, "mimeType": f.content_type,
                    "size": len(f.data), "width": 0, "height": 0, "state": "available",
                    "_links": {"data": {"href": f"{self.url}/v2/conversations/{cid}/attachments/{f.id}/data"},
                               "web": {"href": self.files.url(f.token, f.filename)}},
                } for f in t.attachments]},
            } for t in ordered[start:start + self.page_size]]
            pages = max(1, -(-len(ordered) // self.page_size))
            links: dict[str, Any] = {"self": {"href": f"{self.url}/v2/conversations/{cid}/threads?page={page}"}}
            if page < pages:
                links["next"] = {"href": f"{self.url}/v2/conversations/{cid}/threads?page={page + 1}"}
            return jsonify({"_embedded": {"threads": items}, "_links": links,
                            "page": {"size": self.page_size, "totalElements": len(ordered),
                                     "totalPages": pages, "number": page}})

        @app.get("/v2/conversations/<int:cid>/attachments/<int:aid>/data")
        def data(cid: int, aid: int) -> Response:
            conversation = conversation_or_404(cid)
            if isinstance(conversation, Response):
                return conversation
            for thread in conversation.threads:
                for f in thread.attachments:
                    if f.id == aid:
                        return jsonify({"data": base64.b64encode(f.data).decode()})
            return _error(404, "Resource not found")

        @app.post("/v2/conversations/<int:cid>/notes")
        def note(cid: int) -> Response:
            conversation = conversation_or_404(cid)
            if isinstance(conversation, Response):
                return conversation
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or not isinstance(body.get("text"), str):
                return _invalid("text", "may not be empty")
            photos = []
            for part in body.get("attachments") or []:
                if not part.get("fileName") or not part.get("mimeType"):
                    return _invalid("attachments", "fileName and mimeType are required")
                try:
                    photos.append((part["fileName"], base64.b64decode(part.get("data") or "", validate=True),
                                   part["mimeType"]))
                except (binascii.Error, ValueError):
                    return _invalid("attachments.data", "not base64")
            thread = self.add_thread(cid, "note", self.AGENT_ID, body["text"], photos,
                                     event="convo.note.created")
            response = Response(b"", status=201)
            response.headers["Resource-ID"] = str(thread.id)
            response.headers["Location"] = f"{self.url}/v2/conversations/{cid}/threads/{thread.id}"
            return response

        @app.put("/v2/conversations/<int:cid>/tags")
        def tags(cid: int) -> Response:
            conversation = conversation_or_404(cid)
            if isinstance(conversation, Response):
                return conversation
            given = (request.get_json(silent=True) or {}).get("tags")
            if not isinstance(given, list):
                return _error(400, "Bad request")
            conversation.tags = [str(t) for t in given]  # replaces the whole set
            return Response(b"", status=204)

        @app.patch("/v2/conversations/<int:cid>")
        def update(cid: int) -> Response:
            conversation = conversation_or_404(cid)
            if isinstance(conversation, Response):
                return conversation
            body = request.get_json(silent=True) or {}
            if body.get("op") == "replace" and body.get("path") == "/assignTo":
                conversation.assignee = int(body["value"])
                return Response(b"", status=204)
            return _invalid("op", "unsupported")

        return app
