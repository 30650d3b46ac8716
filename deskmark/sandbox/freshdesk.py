"""A loopback Freshdesk: the subset of API v2 deskmark uses, with Freshdesk's semantics.

- auth: Basic with the API key as user and any password; otherwise 401 `invalid_credentials`;
- every answer carries `X-Ratelimit-Total/Remaining/Used-CurrentRequest`; past the per-minute
  budget it answers 429 with `Retry-After` (invalid requests count too);
- `GET /tickets/{id}` carries the ticket's own attachments; `include=conversations` returns only
  the first ten; `GET /tickets/{id}/conversations` pages (`page`, `per_page` ≤ 100, `link` header);
- `attachment_url`s are short-lived links on a separate S3-like host that refuses an
  Authorization header; inline images appear only as `<img class="inline-image" data-id=…>`;
- notes are multipart (`body`, `private`, `attachments[]` parts that need a filename and type);
  the 20 MB per-ticket attachment cap is enforced;
- `PUT /tickets/{id}` with `tags` REPLACES the list;
- the automation rule's webhook can be fired, with the shared secret as a header or as Basic auth.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from flask import Flask, Response, jsonify, request

from deskmark.sandbox.faults import Faults
from deskmark.sandbox.files import SignedFileHost
from deskmark.sandbox.server import HelpdeskSandbox, LoopbackServer

__all__ = ["SandboxFreshdesk"]

TICKET_ATTACHMENT_CAP = 20 * 1024 * 1024


@dataclass
class FdAttachment:
    id: int
    name: str
    content_type: str
    data: bytes
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class Conversation:
    id: int
    user_id: int
    body: str
    private: bool
    source: int  # 0 reply, 2 note
    attachments: list[FdAttachment]
    created_at: str


@dataclass
class FdTicket:
    id: int
    subject: str
    description: str
    requester_id: int
    tags: list[str]
    attachments: list[FdAttachment]
    group_id: int | None = None
    priority: int = 1
    conversations: list[Conversation] = field(default_factory=list)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, code: str, message: str, field_name: str | None = None) -> Response:
    body: dict[str, Any] = {"description": "Validation failed" if status == 400 else message,
                            "errors": [{"field": field_name, "message": message, "code": code}]}
    if status in (401, 403, 404):
        body = {"code": code, "message": message}
    response = jsonify(body)
    response.status_code = status
    return response


class SandboxFreshdesk(HelpdeskSandbox):
    AGENT_ID = 77000001  # deskmark's own agent
    CUSTOMER_ID = 66000001

    def __init__(self, api_key: str = "sandbox-fd-key", webhook_secret: str = "fd-secret",
                 per_page: int = 100, rate_limit: int = 700, link_ttl: float = 300) -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.per_page = per_page
        self.rate_limit = rate_limit
        self.tickets: dict[int, FdTicket] = {}
        self.requests: list[dict[str, Any]] = []
        self.faults = Faults()
        self.webhook_url: str | None = None
        self.webhook_answers: list[int] = []
        self.fire_on_note = False  # an Observer rule "note added" that fires the webhook again
        self._inline: dict[str, FdAttachment] = {}
        self._ids = itertools.count(9000)
        self._lock = threading.RLock()
        self._window: tuple[int, int] = (0, 0)  # (minute, calls used)
        self.files = SignedFileHost(self.stored_file, ttl=link_ttl)
        self.api = LoopbackServer(self._app())

    # --- the demo's and the contract test's interface (HelpdeskSandbox) ---------------------
    WARRANTY_TARGET = 48000001  # a group

    def environment(self, secret: str) -> dict[str, str]:
        self.webhook_secret = secret
        return {"FRESHDESK_BASE_URL": self.url, "FRESHDESK_API_KEY": self.api_key,
                "FRESHDESK_WEBHOOK_SECRET": secret,
                "FRESHDESK_WARRANTY_GROUP_ID": str(self.WARRANTY_TARGET)}

    def customer_photo_ticket(self, subject: str, text: str, photo: tuple[str, bytes, str],
                              tags: list[str]) -> int:
        ticket_id = self.create_ticket(subject, f"<div>{text}</div>", [photo], tags=tags)
        status = self.fire(ticket_id)
        if status != 202:
            raise RuntimeError(f"deskmark answered {status} to the Freshdesk webhook")
        return ticket_id

    def warranty_assignee(self, ticket_id: int) -> int | None:
        return self.tickets[ticket_id].group_id

    def forged_webhook(self, ticket_id: int) -> int:
        return self.fire(ticket_id, secret="not-the-secret")

    # --- seeding and inspection -------------------------------------------------------------
    def _attachments(self, files: list[tuple[str, bytes, str]]) -> list[FdAttachment]:
        return [FdAttachment(next(self._ids), name, ctype, data) for name, data, ctype in files]

    def create_ticket(self, subject: str, description: str, files: list[tuple[str, bytes, str]] = (),  # type: ignore[assignment]
                      tags: list[str] | None = None) -> int:
        with self._lock:
            tid = next(self._ids)
            self.tickets[tid] = FdTicket(tid, subject, description, self.CUSTOMER_ID,
                                         list(tags or []), self._attachments(list(files)))
            return tid

    def add_reply(self, ticket_id: int, body: str, files: list[tuple[str, bytes, str]] = (),  # type: ignore[assignment]
                  user_id: int | None = None) -> Conversation:
        with self._lock:
            conversation = Conversation(next(self._ids), user_id or self.CUSTOMER_ID, body, False,
                                        0, self._attachments(list(files)), _now())
            self.tickets[ticket_id].conversations.append(conversation)
            return conversation

    def inline_image(self, name: str, data: bytes, content_type: str) -> tuple[FdAttachment, str]:
        """An inline image and the HTML Freshdesk puts in a body for it."""
        attachment = FdAttachment(next(self._ids), name, content_type, data)
        self._inline[attachment.token] = attachment
        html = (f'<div><img src="{self.files.url(attachment.token, name)}" class="inline-image" '
                f'data-id="{attachment.id}" style=""></div>')
        return attachment, html

    def notes(self, ticket_id: int) -> list[Conversation]:
        return [c for c in self.tickets[ticket_id].conversations
                if c.user_id == self.AGENT_ID and c.private and c.source == 2]

    def fire(self, ticket_id: int, event: str = "{ticket_action:created}", how: str = "header",
             secret: str | None = None) -> int:
        """The automation rule's "Trigger webhook" action, as an admin would set it up."""
        body = json.dumps({"freshdesk_webhook": {"ticket_id": str(ticket_id),
                                                 "triggered_event": event}}).encode()
        secret = self.webhook_secret if secret is None else secret
        headers = {"Content-Type": "application/json"}
        auth = None
        if how == "header":
            headers["X-Deskmark-Secret"] = secret
        elif how == "basic":
            auth = ("freshdesk", secret)
        answer = self.webhooks.post(self.webhook_url or "", content=body, headers=headers,
                                    auth=auth or httpx.USE_CLIENT_DEFAULT)
        self.webhook_answers.append(answer.status_code)
        return answer.status_code

    # --- files --------------------------------------------------------------------------------
    def stored_files(self) -> list[FdAttachment]:
        found = list(self._inline.values())
        for ticket in self.tickets.values():
            found += ticket.attachments
            for conversation in ticket.conversations:
                found += conversation.attachments
        return found

    def attachment_json(self, attachment: FdAttachment) -> dict[str, Any]:
        return {"id": attachment.id, "name": attachment.name,
                "content_type": attachment.content_type, "size": len(attachment.data),
                "created_at": _now(), "updated_at": _now(),
                # a fresh presigned link on every read, as the real API does
                "attachment_url": self.files.url(attachment.token, attachment.name)}

    # --- the API ------------------------------------------------------------------------------
    def _count_call(self) -> tuple[int, int]:
        minute = int(time.time() // 60)
        with self._lock:
            current, used = self._window
            used = used + 1 if current == minute else 1
            self._window = (minute, used)
        return used, max(0, self.rate_limit - used)

    def _app(self) -> Flask:
        app = Flask("sandbox-freshdesk")

        @app.before_request
        def gate() -> Response | None:
            self.requests.append({"method": request.method, "path": request.path,
                                  "query": request.query_string.decode(), "time": time.time()})
            used, remaining = self._count_call()  # invalid requests count too
            request.environ["fd.remaining"] = remaining
            if used > self.rate_limit:
                response = _error(429, "rate_limited", "You have exceeded the limit of requests per "
                                  "minute")
                response.headers["Retry-After"] = str(60 - int(time.time()) % 60)
                return response
            injected = self.faults.take(request.method, request.path)
            if injected is not None:
                return injected
            auth = request.authorization
            if not auth or auth.type != "basic" or auth.username != self.api_key:
                return _error(401, "invalid_credentials", "You have to be logged in to perform "
                              "this action.")
            return None

        @app.after_request
        def rate_headers(response: Response) -> Response:
            response.headers["X-Ratelimit-Total"] = str(self.rate_limit)
            response.headers["X-Ratelimit-Remaining"] = str(request.environ.get("fd.remaining", 0))
            response.headers["X-Ratelimit-Used-CurrentRequest"] = "1"
            response.headers["X-Freshdesk-Api-Version"] = "latest=v2; requested=v2"
            return self.faults.take(request.method, request.path, after=True) or response

        def ticket_or_404(ticket_id: int) -> FdTicket | Response:
            ticket = self.tickets.get(ticket_id)
            return ticket if ticket else _error(404, "access_denied", "Record not found")

        def conversation_json(c: Conversation, ticket_id: int) -> dict[str, Any]:
            return {"id": c.id, "user_id": c.user_id, "body": c.body, "body_text": c.body,
                    "private": c.private, "incoming": c.user_id != self.AGENT_ID,
                    "source": c.source, "ticket_id": ticket_id, "created_at": c.created_at,
                    "updated_at": c.created_at,
                    "attachments": [self.attachment_json(a) for a in c.attachments]}

        def ticket_json(t: FdTicket) -> dict[str, Any]:
            return {"id": t.id, "subject": t.subject, "description": t.description,
                    "description_text": t.description, "requester_id": t.requester_id,
                    "tags": list(t.tags), "group_id": t.group_id, "priority": t.priority,
                    "status": 2, "attachments": [self.attachment_json(a) for a in t.attachments]}

        @app.get("/api/v2/agents/me")
        def me() -> Response:
            return jsonify({"id": self.AGENT_ID, "available": True, "contact": {
                "name": "deskmark", "email": "deskmark@example.com"}})

        @app.get("/api/v2/tickets/<int:ticket_id>")
        def show(ticket_id: int) -> Response:
            ticket = ticket_or_404(ticket_id)
            if isinstance(ticket, Response):
                return ticket
            data = ticket_json(ticket)
            if "conversations" in request.args.get("include", ""):
                data["conversations"] = [conversation_json(c, ticket_id)
                                         for c in ticket.conversations[:10]]
            return jsonify(data)

        @app.get("/api/v2/tickets/<int:ticket_id>/conversations")
        def conversations(ticket_id: int) -> Response:
            ticket = ticket_or_404(ticket_id)
            if isinstance(ticket, Response):
                return ticket
            per_page = min(int(request.args.get("per_page", 30)), 100, self.per_page)
            page = int(request.args.get("page", 1))
            items = ticket.conversations[(page - 1) * per_page: page * per_page]
            response = jsonify([conversation_json(c, ticket_id) for c in items])
            if page * per_page < len(ticket.conversations):
                response.headers["link"] = (f'<{self.url}/api/v2/tickets/{ticket_id}/conversations'
                                            f'?page={page + 1}&per_page={per_page}>; rel="next"')
            return response

        @app.post("/api/v2/tickets/<int:ticket_id>/notes")
        def add_note(ticket_id: int) -> Response:
            ticket = ticket_or_404(ticket_id)
            if isinstance(ticket, Response):
                return ticket
            if not (request.content_type or "").startswith("multipart/form-data"):
                if request.files or "attachments" in (request.get_data(as_text=True) or ""):
                    return _error(415, "invalid_content_type", "Content-Type must be multipart")
                payload = request.get_json(silent=True) or {}
                form: dict[str, Any] = payload
                parts = []
            else:
                form = request.form.to_dict()
                parts = request.files.getlist("attachments[]")
            body = form.get("body")
            if not body:
                return _error(400, "missing_field", "It should be a/an String", "body")
            if not isinstance(form.get("attachments[]", []), list) or (
                request.form.getlist("attachments[]")
            ):
                # A part without a filename arrives as a plain field: Freshdesk refuses it.
                return _error(400, "datatype_mismatch", "It should contain elements of type "
                              "valid file format only", "attachments")
            files = []
            for part in parts:
                if not part.filename or not part.mimetype or part.mimetype == "application/octet-stream":
                    return _error(400, "datatype_mismatch", "It should contain elements of type "
                                  "valid file format only", "attachments")
                files.append((part.filename, part.read(), part.mimetype))
            existing = sum(len(a.data) for a in self._ticket_files(ticket))
            if existing + sum(len(f[1]) for f in files) > TICKET_ATTACHMENT_CAP:
                return _error(400, "invalid_size", "The cumulative attachment size cannot exceed "
                              "20MB", "attachments")
            private = str(form.get("private", "true")).lower() != "false"
            note = Conversation(next(self._ids), self.AGENT_ID, body, private, 2,
                                self._attachments(files), _now())
            ticket.conversations.append(note)
            if self.fire_on_note and self.webhook_url:
                self.in_background(self.fire, ticket_id, "{note_type:private}")
            response = jsonify(conversation_json(note, ticket_id))
            response.status_code = 201
            return response

        @app.put("/api/v2/tickets/<int:ticket_id>")
        def update(ticket_id: int) -> Response:
            ticket = ticket_or_404(ticket_id)
            if isinstance(ticket, Response):
                return ticket
            payload = request.get_json(silent=True)
            if not isinstance(payload, dict):
                return _error(400, "invalid_json", "Request body has invalid json format")
            if "tags" in payload:
                ticket.tags = list(payload["tags"])  # replaces the whole list
            if "group_id" in payload:
                ticket.group_id = payload["group_id"]
            if "priority" in payload:
                if payload["priority"] not in (1, 2, 3, 4):
                    return _error(400, "invalid_value", "It should be one of these values: "
                                  "'1,2,3,4'", "priority")
                ticket.priority = payload["priority"]
            return jsonify(ticket_json(ticket))

        return app

    def _ticket_files(self, ticket: FdTicket) -> list[FdAttachment]:
        return ticket.attachments + [a for c in ticket.conversations for a in c.attachments]
