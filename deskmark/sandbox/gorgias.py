"""A loopback Gorgias: the subset of the REST API deskmark uses, with Gorgias's semantics.

- auth: HTTP Basic `email:API_KEY`; anything else is 401;
- rate limit: a leaky bucket of 40 calls per 20 s; every answer carries
  `X-Gorgias-Account-Api-Call-Limit: used/40`; over it, 429 with `Retry-after` (seconds);
- `GET /api/users/0` is the current user (can be switched off, to exercise the fallback
  `GET /api/users?email=`);
- `GET /api/messages?ticket_id=&limit=&cursor=`: cursor pages (`meta.next_cursor`), limit 1 to
  100 (and at most `max_limit`, to put photos on later pages); cursors are short-lived;
- attachments are `{url, name, size, content_type}` on a separate file host that refuses
  requests without a signature (a private file) and any Authorization header;
  `GET /api/attachment/download/{path}` answers 307 to a signed, short-lived URL for that path;
  with `public_files=True` the attachment URLs are signed already and work as given;
- `POST /api/upload?type=attachment` (multipart) keeps the file and returns `[{url, …}]`;
  `POST /api/tickets/{id}/messages` with `channel: internal-note` adds a note, whose
  attachments must be uploads;
- `POST /api/tickets/{id}/tags {"names"|"ids"}` ADDS tags; `PUT` on the same path, or a ticket
  `PUT` with `tags`, REPLACES them; `PUT /api/tickets/{id} {"assignee_team": {"id"}}` assigns;
- the HTTP integration: `{"ticket_id": "{{ticket.id}}"}` with `X-Deskmark-Secret`, on
  ticket-created and on every ticket-message-created (agents' messages and internal notes,
  deskmark's own included), retried while it fails;
- scripted faults (`faults.add(...)`) and a request log for assertions.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from flask import Flask, Response, jsonify, redirect, request

from deskmark.sandbox.faults import Faults
from deskmark.sandbox.files import SignedFileHost
from deskmark.sandbox.server import HelpdeskSandbox, LoopbackServer

__all__ = ["SandboxGorgias"]

BUCKET = 40  # calls per WINDOW seconds, for an API key
WINDOW = 20.0
CURSOR_SECONDS = 300


@dataclass
class GFile:
    name: str
    content_type: str
    data: bytes
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class GMessage:
    id: int
    ticket_id: int
    channel: str  # "email", "chat", "internal-note", …
    from_agent: bool
    sender_id: int
    body_html: str
    attachments: list[GFile]
    created: str
    via: str = "email"


@dataclass
class GTicket:
    id: int
    subject: str
    tags: list[str]
    messages: list[GMessage] = field(default_factory=list)
    assignee_team: int | None = None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _error(status: int, message: str) -> Response:
    response = jsonify({"error": {"msg": message}})
    response.status_code = status
    return response


class SandboxGorgias(HelpdeskSandbox):
    """Start with `.start()`; `.url` is the API root (GORGIAS_BASE_URL)."""

    AGENT_ID = 310001  # deskmark's own API user
    OTHER_AGENT_ID = 310002
    CUSTOMER_ID = 720001
    WARRANTY_TARGET = 61  # a team

    def __init__(self, email: str = "deskmark@shop.example", api_key: str = "sandbox-gorgias-key",
                 webhook_secret: str = "gorgias-secret", max_limit: int = 100,
                 public_files: bool = False, users_zero: bool = True,
                 bucket: int = BUCKET) -> None:
        self.email = email
        self.api_key = api_key
        self.webhook_secret: str | None = webhook_secret
        self.max_limit = max_limit
        self.public_files = public_files
        self.users_zero = users_zero
        self.bucket = bucket
        self.tickets: dict[int, GTicket] = {}
        self.uploads: dict[str, GFile] = {}  # url -> file
        self.requests: list[dict[str, Any]] = []
        self.faults = Faults()
        self.webhook_url: str | None = None
        self.webhook_answers: list[int] = []
        self._calls: deque[float] = deque()
        self._ids = itertools.count(41000)
        self._lock = threading.RLock()
        self.files = SignedFileHost(self.stored_file)
        self.api = LoopbackServer(self._app())

    # --- the demo's and the contract test's interface (HelpdeskSandbox) ---------------------
    def environment(self, secret: str) -> dict[str, str]:
        self.webhook_secret = secret
        return {"GORGIAS_BASE_URL": self.url, "GORGIAS_EMAIL": self.email,
                "GORGIAS_API_KEY": self.api_key, "GORGIAS_WEBHOOK_SECRET": secret,
                "GORGIAS_WARRANTY_TEAM_ID": str(self.WARRANTY_TARGET)}

    def customer_photo_ticket(self, subject: str, text: str, photo: tuple[str, bytes, str],
                              tags: list[str]) -> int:
        return self.create_ticket(subject, text, [photo], tags=tags)

    def warranty_assignee(self, ticket_id: int) -> int | None:
        return self.tickets[ticket_id].assignee_team

    def forged_webhook(self, ticket_id: int) -> int:
        return self.fire(ticket_id, secret="not-the-secret", record=False)

    # --- seeding and inspection ---------------------------------------------------------------
    def create_ticket(self, subject: str, text: str, files: list[tuple[str, bytes, str]] = (),  # type: ignore[assignment]
                      tags: list[str] | None = None, notify: bool = True) -> int:
        with self._lock:
            tid = next(self._ids)
            self.tickets[tid] = GTicket(tid, subject, list(tags or []))
        self.add_message(tid, text, files, notify=False)
        if notify:
            self.fire(tid)  # ticket-created
            self.fire(tid)  # ticket-message-created, for its first message
        return tid

    def add_message(self, ticket_id: int, text: str, files: list[tuple[str, bytes, str]] = (),  # type: ignore[assignment]
                    from_agent: bool = False, channel: str = "email", sender_id: int | None = None,
                    notify: bool = True) -> GMessage:
        with self._lock:
            message = GMessage(next(self._ids), ticket_id, channel, from_agent,
                               sender_id or (self.OTHER_AGENT_ID if from_agent else self.CUSTOMER_ID),
                               f"<div>{text}</div>", [GFile(n, c, d) for n, d, c in files], _now())
            self.tickets[ticket_id].messages.append(message)
        if notify:
            self.fire(ticket_id)  # ticket-message-created
        return message

    def notes(self, ticket_id: int) -> list[GMessage]:
        """Internal notes written by deskmark's API user."""
        return [m for m in self.tickets[ticket_id].messages
                if m.channel == "internal-note" and m.sender_id == self.AGENT_ID]

    def fire(self, ticket_id: int, secret: str | None = None, record: bool = True) -> int:
        """The HTTP integration's request, as an admin sets it up (SETUP.md); retried, as
        Gorgias does, while deskmark is unreachable or answers 5xx."""
        if not self.webhook_url:
            return 0
        body = json.dumps({"ticket_id": str(ticket_id)}).encode()
        headers = {"Content-Type": "application/json",
                   "X-Deskmark-Secret": (self.webhook_secret or "") if secret is None else secret}
        status = 0
        for attempt in range(4):
            try:
                status = self.webhooks.post(self.webhook_url, content=body, headers=headers).status_code
            except httpx.HTTPError:
                status = 0
            if 0 < status < 500:
                break
            time.sleep(0.5 * (attempt + 1))
        if record:
            self.webhook_answers.append(status)
        return status

    def _fire_later(self, ticket_id: int) -> None:
        self.in_background(self.fire, ticket_id)

    # --- files --------------------------------------------------------------------------------
    def stored_files(self) -> list[GFile]:
        found = list(self.uploads.values())
        for ticket in self.tickets.values():
            for message in ticket.messages:
                found += message.attachments
        return found

    def file_url(self, f: GFile) -> str:
        """Where Gorgias says the file is: private (unsigned) unless `public_files`."""
        if self.public_files:
            return self.files.url(f.token, f.name, ttl=7 * 86400)
        return f"{self.files.server.url}/files/{f.token}/{quote(f.name, safe='')}"

    def file_json(self, f: GFile) -> dict[str, Any]:
        return {"url": self.file_url(f), "name": f.name, "size": len(f.data),
                "content_type": f.content_type}

    # --- the API ------------------------------------------------------------------------------
    def _spend(self) -> tuple[int, float]:
        """Take a call from the bucket: (calls in the window, seconds until one leaks out)."""
        now = time.monotonic()
        with self._lock:
            while self._calls and now - self._calls[0] >= WINDOW:
                self._calls.popleft()
            if len(self._calls) >= self.bucket:
                return len(self._calls) + 1, WINDOW - (now - self._calls[0])
            self._calls.append(now)
            return len(self._calls), 0.0

    def message_json(self, m: GMessage) -> dict[str, Any]:
        return {"id": m.id, "ticket_id": m.ticket_id, "channel": m.channel, "via": m.via,
                "from_agent": m.from_agent, "public": m.channel != "internal-note",
                "sender": {"id": m.sender_id}, "body_html": m.body_html,
                "body_text": m.body_html.replace("<div>", "").replace("</div>", ""),
                "attachments": [self.file_json(f) for f in m.attachments],
                "created_datetime": m.created}

    def ticket_json(self, t: GTicket) -> dict[str, Any]:
        first = t.messages[0].body_html if t.messages else ""
        return {"id": t.id, "subject": t.subject, "status": "open", "channel": "email",
                "excerpt": first.replace("<div>", "").replace("</div>", "")[:200],
                "tags": [{"id": abs(hash(n)) % 100000, "name": n} for n in t.tags],
                "assignee_team": {"id": t.assignee_team} if t.assignee_team else None,
                "customer": {"id": self.CUSTOMER_ID}}

    def _cursor(self, ticket_id: int, offset: int) -> str:
        raw = json.dumps([ticket_id, offset, time.time() + CURSOR_SECONDS]).encode()
        return base64.urlsafe_b64encode(raw).decode()

    def _app(self) -> Flask:
        app = Flask("sandbox-gorgias")

        @app.before_request
        def gate() -> Response | None:
            self.requests.append({"method": request.method, "path": request.path,
                                  "query": request.query_string.decode(), "time": time.time(),
                                  "authorization": request.headers.get("Authorization")})
            used, wait = self._spend()
            request.environ["gorgias.used"] = min(used, self.bucket)
            if wait:
                response = _error(429, "Too many requests")
                response.headers["Retry-after"] = str(max(1, int(wait + 0.999)))
                return response
            injected = self.faults.take(request.method, request.path)
            if injected is not None:
                return injected
            auth = request.authorization
            if (not auth or auth.type != "basic" or auth.username != self.email
                    or auth.password != self.api_key):
                return _error(401, "Unauthorized: invalid email or API key")
            return None

        @app.after_request
        def limit_header(response: Response) -> Response:
            used = request.environ.get("gorgias.used", 0)
            response.headers["X-Gorgias-Account-Api-Call-Limit"] = f"{used}/{self.bucket}"
            return self.faults.take(request.method, request.path, after=True) or response

        def ticket_or_404(ticket_id: int) -> GTicket | Response:
            return self.tickets.get(ticket_id) or _error(404, "Ticket not found")

        @app.get("/api/users/<int:user_id>")
        def user(user_id: int) -> Response:
            if user_id == 0 and self.users_zero:
                return jsonify({"id": self.AGENT_ID, "email": self.email, "name": "deskmark"})
            return _error(404, "User not found")

        @app.get("/api/users")
        def users() -> Response:
            found = [{"id": self.AGENT_ID, "email": self.email}] if request.args.get("email") == self.email else []
            return jsonify({"data": found, "meta": {"next_cursor": None, "prev_cursor": None}})

        @app.get("/api/tickets/<int:ticket_id>")
        def show(ticket_id: int) -> Response:
            ticket = ticket_or_404(ticket_id)
            return ticket if isinstance(ticket, Response) else jsonify(self.ticket_json(ticket))

        @app.put("/api/tickets/<int:ticket_id>")
        def update(ticket_id: int) -> Response:
            ticket = ticket_or_404(ticket_id)
            if isinstance(ticket, Response):
                return ticket
            payload = request.get_json(silent=True)
            if not isinstance(payload, dict):
                return _error(400, "Invalid JSON")
            if "tags" in payload:  # replaces the whole list
                ticket.tags = [t["name"] if isinstance(t, dict) else str(t) for t in payload["tags"]]
            if "assignee_team" in payload:
                team = payload["assignee_team"]
                if team is not None and not isinstance(team.get("id"), int):
                    return _error(400, "assignee_team.id: Not a valid integer.")
                ticket.assignee_team = team["id"] if team else None
            response = jsonify(self.ticket_json(ticket))
            response.status_code = 202
            return response

        @app.route("/api/tickets/<int:ticket_id>/tags", methods=["GET", "POST", "PUT"])
        def tags(ticket_id: int) -> Response:
            ticket = ticket_or_404(ticket_id)
            if isinstance(ticket, Response):
                return ticket
            if request.method == "GET":
                return jsonify({"data": self.ticket_json(ticket)["tags"]})
            payload = request.get_json(silent=True) or {}
            names = payload.get("names")
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                return _error(400, "names: Not a valid list of strings.")
            if request.method == "PUT":
                ticket.tags = list(dict.fromkeys(names))
                return Response(status=202)
            ticket.tags += [n for n in names if n not in ticket.tags]
            return Response(status=201)

        @app.get("/api/messages")
        def messages() -> Response:
            try:
                limit = int(request.args.get("limit", 30))
            except ValueError:
                return _error(400, "limit: Not a valid integer.")
            if not 1 <= limit <= 100:
                return _error(400, "limit: Must be greater than or equal to 1 and less than or equal to 100.")
            limit = min(limit, self.max_limit)
            cursor = request.args.get("cursor")
            if cursor:
                try:
                    ticket_id, offset, expires = json.loads(base64.urlsafe_b64decode(cursor))
                except (ValueError, TypeError):
                    return _error(400, "cursor: Invalid cursor.")
                if expires < time.time():
                    return _error(400, "cursor: Cursor expired.")
            else:
                try:
                    ticket_id, offset = int(request.args.get("ticket_id", "")), 0
                except ValueError:
                    return _error(400, "ticket_id: Not a valid integer.")
            ticket = self.tickets.get(ticket_id)
            items = ticket.messages if ticket else []
            if request.args.get("order_by", "created_datetime:asc").endswith(":desc"):
                items = items[::-1]
            page = items[offset:offset + limit]
            more = offset + limit < len(items)
            return jsonify({"data": [self.message_json(m) for m in page],
                            "meta": {"next_cursor": self._cursor(ticket_id, offset + limit) if more else None,
                                     "prev_cursor": None}})

        @app.get("/api/attachment/download/files/<token>/<path:name>")
        def download(token: str, name: str) -> Response:
            if self.stored_file(token) is None:
                return _error(404, "File not found")
            return redirect(self.files.url(token, name, ttl=60), code=307)  # type: ignore[return-value]

        @app.post("/api/upload")
        def upload() -> Response:
            if not (request.content_type or "").startswith("multipart/form-data") or not request.files:
                return _error(400, "No file in the request (multipart/form-data expected)")
            out = []
            for part in request.files.values():
                f = GFile(part.filename or "file", part.mimetype or "application/octet-stream", part.read())
                url = self.file_url(f)
                self.uploads[url] = f
                out.append(self.file_json(f))
            response = jsonify(out)
            response.status_code = 201
            return response

        @app.post("/api/tickets/<int:ticket_id>/messages")
        def add_message(ticket_id: int) -> Response:
            ticket = ticket_or_404(ticket_id)
            if isinstance(ticket, Response):
                return ticket
            payload = request.get_json(silent=True)
            if not isinstance(payload, dict) or not payload.get("channel"):
                return _error(400, "channel: Missing data for required field.")
            sender = (payload.get("sender") or {}).get("id")
            if not isinstance(sender, int):
                return _error(400, "sender: Missing data for required field.")
            if not payload.get("body_html") and not payload.get("body_text"):
                return _error(400, "body_text: Missing data for required field.")
            files = []
            for a in payload.get("attachments") or []:
                f = self.uploads.get(a.get("url", ""))
                if f is None:
                    return _error(400, f"attachments: unknown file {a.get('url')!r} (upload it first)")
                files.append(f)
            with self._lock:
                message = GMessage(next(self._ids), ticket_id, str(payload["channel"]),
                                   bool(payload.get("from_agent")), sender,
                                   str(payload.get("body_html") or payload.get("body_text")), files,
                                   _now(), via=str(payload.get("via") or "api"))
                ticket.messages.append(message)
            self._fire_later(ticket_id)  # ticket-message-created fires for internal notes too
            response = jsonify(self.message_json(message))
            response.status_code = 201
            return response

        return app
