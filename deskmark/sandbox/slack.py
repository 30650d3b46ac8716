"""A loopback Slack: the Web API methods deskmark calls and the interactivity it receives.

- Web API errors come as Slack sends them: HTTP 200 with `{"ok": false, "error": …}`, except 429
  (`ratelimited`, with `Retry-After`); `invalid_auth` without the bot token;
- `files.getUploadURLExternal` → raw bytes POSTed to `upload_url` → `files.completeUploadExternal`,
  which needs a channel ID the bot is in (`channel_not_found` for a `#name`, `not_in_channel`);
- `chat.postMessage` (with message `metadata`) / `chat.update` (only the bot's own messages),
  `auth.test` (with the token's scopes in `x-oauth-scopes`);
- `conversations.history` (`oldest`, `limit`, cursor pages, `include_all_metadata`), which
  needs the `channels:history` scope; a completed upload shows there as a file share;
- faults with `after=True`: the call takes effect and its answer is lost (a 5xx instead);
- `response_url`s that record what they are sent;
- `click(...)` plays a user pressing a button: a form-encoded, signed `block_actions` payload
  POSTed to the app's interactivity URL, as Slack does.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from flask import Flask, Response, jsonify, request

from deskmark.sandbox.faults import Faults
from deskmark.sandbox.server import LoopbackServer

__all__ = ["SandboxSlack"]


@dataclass
class Upload:
    file_id: str
    filename: str
    length: int
    data: bytes = b""
    channel: str | None = None
    initial_comment: str | None = None
    completed: bool = False


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    history: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    files: list[dict[str, Any]] = field(default_factory=list)  # a file share

    def buttons(self) -> list[dict[str, Any]]:
        return [e for b in self.blocks if b.get("type") == "actions" for e in b.get("elements", [])]


class SandboxSlack:
    CHANNEL = "C0WARRANTY1"
    BOT_USER = "U0DESKMARK1"

    SCOPES = ("chat:write", "files:write", "channels:history", "groups:history")

    def __init__(self, bot_token: str = "xoxb-sandbox", signing_secret: str = "slack-signing-secret",
                 channels: dict[str, str] | None = None, member_of: set[str] | None = None) -> None:
        self.bot_token = bot_token
        self.scopes = set(self.SCOPES)  # what the app was granted; remove one to test without
        self.signing_secret = signing_secret
        self.channels = channels or {self.CHANNEL: "warranty", "C0ELSEWHERE": "random"}
        self.member_of = member_of if member_of is not None else {self.CHANNEL}
        self.uploads: dict[str, Upload] = {}
        self.messages: list[Message] = []
        self.responses: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.faults = Faults()
        self.interactivity_url: str | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.server = LoopbackServer(self._app())

    @property
    def url(self) -> str:
        """SLACK_API_URL."""
        return f"{self.server.url}/api/"

    def start(self) -> SandboxSlack:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    # --- inspection --------------------------------------------------------------------------
    def completed_uploads(self, channel: str | None = None) -> list[Upload]:
        return [u for u in self.uploads.values() if u.completed and (channel is None or u.channel == channel)]

    def messages_about(self, text: str) -> list[Message]:
        return [m for m in self.messages if text in m.text and not m.files]

    # --- a user clicking a button ------------------------------------------------------------
    def click_payload(self, message: Message, action_id: str, user_id: str,
                      user_name: str = "reviewer") -> dict[str, Any]:
        button = next(b for b in message.buttons() if b["action_id"] == action_id)
        response_url = f"{self.server.url}/response/{next(self._ids)}"
        return {
            "type": "block_actions", "api_app_id": "A0DESKMARK", "token": "legacy-verification",
            "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": "T0SANDBOX"},
            "team": {"id": "T0SANDBOX", "domain": "sandbox"},
            "container": {"type": "message", "message_ts": message.ts, "channel_id": message.channel,
                          "is_ephemeral": False},
            "channel": {"id": message.channel, "name": self.channels.get(message.channel, "")},
            "message": {"type": "message", "ts": message.ts, "text": message.text,
                        "blocks": message.blocks, "bot_id": "B0DESKMARK"},
            "response_url": response_url, "trigger_id": f"{next(self._ids)}.trigger",
            "actions": [{"action_id": action_id, "block_id": "warranty_review",
                         "value": button["value"], "type": "button",
                         "text": button["text"], "action_ts": f"{time.time():.6f}"}],
        }

    def signed(self, body: bytes, timestamp: int | None = None,
               secret: str | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        mac = hmac.new((secret or self.signing_secret).encode(), f"v0:{stamp}:".encode() + body,
                       hashlib.sha256).hexdigest()
        return {"Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={mac}"}

    def click(self, message: Message, action_id: str, user_id: str, user_name: str = "reviewer",
              timestamp: int | None = None, sign: bool = True) -> int:
        body = ("payload=" + quote(json.dumps(self.click_payload(message, action_id, user_id,
                                                                 user_name)))).encode()
        headers = self.signed(body, timestamp) if sign else {
            "Content-Type": "application/x-www-form-urlencoded"}
        return httpx.post(self.interactivity_url or "", content=body, headers=headers,
                          timeout=10).status_code

    # --- the Web API --------------------------------------------------------------------------
    def _app(self) -> Flask:
        app = Flask("sandbox-slack")

        def fail(error: str, status: int = 200) -> Response:
            response = jsonify({"ok": False, "error": error})
            response.status_code = status
            return response

        def args() -> dict[str, Any]:
            if request.is_json:
                return dict(request.get_json(silent=True) or {})
            return request.form.to_dict()

        def channel_problem(channel: str | None) -> Response | None:
            if not channel or channel not in self.channels:
                return fail("channel_not_found")
            if channel not in self.member_of:
                return fail("not_in_channel")
            return None

        @app.before_request
        def gate() -> Response | None:
            if not request.path.startswith("/api/"):
                return None
            self.calls.append({"method": request.path.removeprefix("/api/"), "time": time.time()})
            injected = self.faults.take(request.method, request.path)
            if injected is not None:
                return injected
            if request.headers.get("Authorization") != f"Bearer {self.bot_token}":
                return fail("invalid_auth")
            return None

        @app.after_request
        def lose_the_answer(response: Response) -> Response:
            if response.status_code == 200 and request.path.startswith("/api/"):
                lost = self.faults.take(request.method, request.path, after=True)
                if lost is not None:
                    return lost
            return response

        def stamp() -> str:
            """A message ts, unique and increasing as Slack's are (call it holding the lock)."""
            now = max(time.time(), float(self.messages[-1].ts) + 1e-6 if self.messages else 0)
            return f"{now:.6f}"

        @app.post("/api/auth.test")
        def auth_test() -> Any:
            return jsonify({"ok": True, "url": "https://sandbox.slack.com/", "team": "Sandbox",
                            "user": "deskmark", "team_id": "T0SANDBOX", "user_id": self.BOT_USER,
                            "bot_id": "B0DESKMARK"}), 200, {"x-oauth-scopes": ",".join(sorted(self.scopes))}

        @app.post("/api/files.getUploadURLExternal")
        def get_upload_url() -> Response:
            data = args()
            if not data.get("filename") or not str(data.get("length", "")).isdigit() or int(data["length"]) == 0:
                return fail("missing_argument")
            file_id = f"F0{next(self._ids):08d}"
            with self._lock:
                self.uploads[file_id] = Upload(file_id, data["filename"], int(data["length"]))
            return jsonify({"ok": True, "upload_url": f"{self.server.url}/upload/v1/{file_id}",
                            "file_id": file_id})

        @app.post("/upload/v1/<file_id>")
        def upload_bytes(file_id: str) -> Response:
            upload = self.uploads.get(file_id)
            if upload is None:
                return Response("not found", status=404)
            if "Authorization" in request.headers:
                return Response("no token on pre-signed URLs", status=400)
            upload.data = request.get_data()
            return Response(f"OK - {len(upload.data)}", mimetype="text/plain")

        @app.post("/api/files.completeUploadExternal")
        def complete() -> Response:
            data = args()
            files = json.loads(data.get("files") or "[]")
            channel = data.get("channel_id")
            problem = channel_problem(channel)
            if problem is not None:
                return problem
            done = []
            for item in files:
                upload = self.uploads.get(item.get("id", ""))
                if upload is None or not upload.data or len(upload.data) != upload.length:
                    return fail("file_not_found")
                upload.completed, upload.channel = True, channel
                upload.initial_comment = data.get("initial_comment")
                done.append({"id": upload.file_id, "title": item.get("title"), "name": upload.filename})
            with self._lock:  # the share shows in the channel as a message with the files
                self.messages.append(Message(str(channel), stamp(), data.get("initial_comment") or "",
                                             [], files=list(done)))
            return jsonify({"ok": True, "files": done})

        @app.post("/api/chat.postMessage")
        def post_message() -> Response:
            data = args()
            problem = channel_problem(data.get("channel"))
            if problem is not None:
                return problem
            blocks = data.get("blocks") or []
            if isinstance(blocks, str):
                blocks = json.loads(blocks)
            for block in blocks:
                for element in block.get("elements", []):
                    if len(str(element.get("value", ""))) > 2000:
                        return fail("invalid_blocks")
            metadata = data.get("metadata")
            if isinstance(metadata, str):
                metadata = json.loads(metadata)
            with self._lock:
                message = Message(data["channel"], stamp(), data.get("text", ""), blocks, metadata=metadata)
                self.messages.append(message)
            return jsonify({"ok": True, "channel": message.channel, "ts": message.ts,
                            "message": {"text": message.text, "blocks": blocks}})

        @app.post("/api/chat.update")
        def update() -> Response:
            data = args()
            blocks = data.get("blocks") or []
            if isinstance(blocks, str):
                blocks = json.loads(blocks)
            for message in self.messages:
                if message.channel == data.get("channel") and message.ts == data.get("ts"):
                    message.history.append({"text": message.text, "blocks": message.blocks})
                    message.text, message.blocks = data.get("text", ""), blocks
                    return jsonify({"ok": True, "channel": message.channel, "ts": message.ts})
            return fail("message_not_found")

        @app.route("/api/conversations.history", methods=["GET", "POST"])
        def history() -> Response:
            data = {**request.args.to_dict(), **args()}
            if "channels:history" not in self.scopes:
                return jsonify({"ok": False, "error": "missing_scope", "needed": "channels:history",
                                "provided": ",".join(sorted(self.scopes))})
            problem = channel_problem(data.get("channel"))
            if problem is not None:
                return problem
            oldest = float(data.get("oldest") or 0)
            limit = min(int(data.get("limit") or 100), 999)
            start = int(data.get("cursor") or 0)
            found = [m for m in reversed(self.messages)
                     if m.channel == data["channel"] and float(m.ts) > oldest]
            page = found[start:start + limit]
            with_metadata = str(data.get("include_all_metadata", "")).lower() in ("1", "true")
            messages = []
            for m in page:
                item: dict[str, Any] = {"type": "message", "ts": m.ts, "text": m.text,
                                        "bot_id": "B0DESKMARK", "blocks": m.blocks}
                if m.files:
                    item["files"] = m.files
                if with_metadata and m.metadata:
                    item["metadata"] = m.metadata
                messages.append(item)
            more = start + limit < len(found)
            return jsonify({"ok": True, "messages": messages, "has_more": more,
                            "response_metadata": {"next_cursor": str(start + limit) if more else ""}})

        @app.post("/response/<int:number>")
        def respond(number: int) -> Response:
            self.responses.append({"url": request.url, **(request.get_json(silent=True) or {})})
            return Response("ok", mimetype="text/plain")

        return app
