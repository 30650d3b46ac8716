"""The loopback OpenAI's Files API and Batch API, as deskmark's batch mode meets them.

Files (`/v1/files`): multipart upload with a `purpose`, list (by purpose), retrieve, delete,
and `/content` (refused, as OpenAI does, for the purposes whose files cannot be downloaded).
Batches (`/v1/batches`): create from an uploaded JSONL file of `/v1/images/edits` lines with
JSON bodies (images and mask by `file_id` or data URL), then `validating` → `in_progress` →
`finalizing` → `completed` after `delay` seconds, with an output file of the lines that
worked and an error file of those that did not; cancel; list. Each line is answered by the
sandbox's own edit (the same checks and `usage` as a sync edit). `fail_lines` makes the next N
lines fail with a server error; `expire_next` makes the next batch expire with its lines
unanswered. Facts: VENDORS.md "Batch API" and "Files API and JSON edit bodies".
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, jsonify, request

__all__ = ["FileStore", "Batches", "add_routes", "BATCH_ENDPOINTS", "PURPOSES"]

# The SDK's BatchCreateParams.endpoint (openai-python 3.60.0).
BATCH_ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions",
                   "/v1/moderations", "/v1/images/generations", "/v1/images/edits", "/v1/videos")
PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
NOT_DOWNLOADABLE = ("vision", "user_data", "assistants")
Edit = Callable[[dict[str, Any], str, str, list[bytes], "bytes | None", str, str], Response]


def _error(status: int, message: str, code: str | None = None, param: str | None = None) -> Response:
    response = jsonify({"error": {"message": message, "type": "invalid_request_error",
                                  "param": param, "code": code}})
    response.status_code = status
    return response


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int = field(default_factory=lambda: int(time.time()))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "expires_at": None, "status_details": None}


class FileStore:
    """What is in the file store; `deskmarks()` is what tests check is left at the end."""

    def __init__(self) -> None:
        self.files: dict[str, StoredFile] = {}
        self.deleted: list[str] = []
        self._lock = threading.Lock()

    def add(self, filename: str, purpose: str, data: bytes) -> StoredFile:
        stored = StoredFile(f"file-{uuid.uuid4().hex[:24]}", filename, purpose, data)
        with self._lock:
            self.files[stored.id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile | None:
        with self._lock:
            return self.files.get(file_id)

    def delete(self, file_id: str) -> bool:
        with self._lock:
            if self.files.pop(file_id, None) is None:
                return False
            self.deleted.append(file_id)
            return True

    def held(self) -> list[StoredFile]:
        with self._lock:
            return list(self.files.values())


class Batches:
    def __init__(self, files: FileStore, edit: Edit, app: Flask, record: Callable[[dict[str, Any]], None],
                 delay: float = 2.0) -> None:
        self.files = files
        self.edit = edit
        self.record = record  # each edit a line makes goes into the sandbox's `calls`
        self.app = app
        self.delay = delay
        self.fail_lines = 0
        self.expire_next = 0
        self.batches: dict[str, dict[str, Any]] = {}
        self.created: list[str] = []  # batch ids, in the order they were created
        self._lock = threading.Lock()

    def create(self, body: dict[str, Any]) -> Response:
        input_id = str(body.get("input_file_id") or "")
        endpoint = str(body.get("endpoint") or "")
        if endpoint not in BATCH_ENDPOINTS:
            return _error(400, f"Invalid endpoint '{endpoint}'.", "invalid_value", "endpoint")
        if body.get("completion_window") != "24h":
            return _error(400, "completion_window must be '24h'.", "invalid_value", "completion_window")
        source = self.files.get(input_id)
        if source is None:
            return _error(404, f"No such File object: {input_id}", "not_found", "input_file_id")
        if source.purpose != "batch":
            return _error(400, f"File {input_id} has purpose '{source.purpose}', not 'batch'.",
                          "invalid_value", "input_file_id")
        now = int(time.time())
        batch_id = f"batch_{uuid.uuid4().hex[:24]}"
        batch: dict[str, Any] = {"id": batch_id, "object": "batch", "endpoint": endpoint,
                 "errors": None, "input_file_id": input_id, "completion_window": "24h",
                 "status": "validating", "output_file_id": None, "error_file_id": None,
                 "created_at": now, "in_progress_at": None, "expires_at": now + 86400,
                 "finalizing_at": None, "completed_at": None, "failed_at": None, "expired_at": None,
                 "cancelling_at": None, "cancelled_at": None,
                 "request_counts": {"total": 0, "completed": 0, "failed": 0},
                 "metadata": body.get("metadata") or None}
        with self._lock:
            self.batches[batch_id] = batch
            self.created.append(batch_id)
            expire = self.expire_next > 0
            self.expire_next -= 1 if expire else 0
            answer = jsonify(dict(batch))  # as created, before the run moves it on
        threading.Thread(target=self._run, args=(batch_id, source.data, expire), daemon=True).start()
        return answer

    def get(self, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self.batches.get(batch_id)
            return dict(found) if found else None

    def cancel(self, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return None
            if batch["status"] in ("validating", "in_progress"):
                batch.update(status="cancelling", cancelling_at=int(time.time()))
            return dict(batch)

    def _set(self, batch_id: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            self.batches[batch_id].update(fields)
            return self.batches[batch_id]

    def _image(self, ref: Any) -> bytes | None:
        if not isinstance(ref, dict):
            return None
        if ref.get("file_id"):
            stored = self.files.get(str(ref["file_id"]))
            return stored.data if stored else None
        url = str(ref.get("image_url") or "")
        if url.startswith("data:") and ";base64," in url:
            return base64.b64decode(url.split(";base64,", 1)[1])
        return None

    def _answer(self, batch_id: str, line: dict[str, Any], endpoint: str) -> dict[str, Any]:
        """One line's result: {"response": {...}} or {"error": {...}}."""
        with self._lock:
            failing = self.fail_lines > 0
            self.fail_lines -= 1 if failing else 0
        if failing:
            return {"error": {"code": "server_error", "message": "The server had an error processing this request."}}
        if line.get("method") != "POST" or line.get("url") != endpoint:
            return {"error": {"code": "invalid_request", "message": f"url must be {endpoint} and method POST"}}
        body = line.get("body") or {}
        images = [self._image(ref) for ref in body.get("images") or []]
        if not images or any(i is None for i in images):
            return {"response": {"status_code": 400, "request_id": f"req_{uuid.uuid4().hex[:24]}",
                                 "body": {"error": {"message": "Invalid image reference.", "type":
                                                    "invalid_request_error", "param": "images",
                                                    "code": "invalid_image"}}}}
        mask = self._image(body["mask"]) if body.get("mask") else None
        prompt = str(body.get("prompt") or "")
        call: dict[str, Any] = {"time": time.time(), "model": body.get("model"), "size": body.get("size"),
                "quality": body.get("quality"), "prompt": prompt,
                "input_fidelity": body.get("input_fidelity"), "parts": [], "mask": mask is not None,
                "image_sizes": [], "batch": batch_id, "custom_id": line.get("custom_id")}
        self.record(call)
        with self.app.app_context():
            answer = self.edit(call, str(body.get("model") or ""), prompt,
                               [i for i in images if i is not None], mask, str(body.get("size") or "auto"),
                               str(body.get("quality") or "auto"))
            return {"response": {"status_code": answer.status_code,
                                 "request_id": f"req_{uuid.uuid4().hex[:24]}", "body": answer.get_json()}}

    def _run(self, batch_id: str, data: bytes, expire: bool) -> None:
        started = time.monotonic()
        time.sleep(min(0.1, self.delay / 4))  # validating
        try:
            lines = [json.loads(raw) for raw in data.decode().splitlines() if raw.strip()]
            ids = [line["custom_id"] for line in lines]
            if len(set(ids)) != len(ids):
                raise ValueError("custom_id values must be unique")
        except (ValueError, KeyError, TypeError) as exc:
            self._set(batch_id, status="failed", failed_at=int(time.time()),
                      errors={"object": "list", "data": [{"code": "invalid_file", "message": str(exc)}]})
            return
        batch = self._set(batch_id, status="in_progress", in_progress_at=int(time.time()),
                          request_counts={"total": len(lines), "completed": 0, "failed": 0})
        endpoint = batch["endpoint"]
        out: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for line in lines:
            if self.get(batch_id)["status"] == "cancelling":  # type: ignore[index]
                break
            if expire:
                break
            result = self._answer(batch_id, line, endpoint)
            entry = {"id": f"batch_req_{uuid.uuid4().hex[:24]}", "custom_id": line["custom_id"],
                     "response": result.get("response"), "error": result.get("error")}
            ok = result.get("response") is not None and 200 <= result["response"]["status_code"] < 300
            (out if ok else errors).append(entry)
            counts = self.get(batch_id)["request_counts"]  # type: ignore[index]
            self._set(batch_id, request_counts={**counts, "completed": counts["completed"] + ok,
                                                "failed": counts["failed"] + (not ok)})
        time.sleep(max(0.0, self.delay - (time.monotonic() - started)))
        self._set(batch_id, status="finalizing", finalizing_at=int(time.time()))
        fields: dict[str, Any] = {}
        if out:
            fields["output_file_id"] = self.files.add(f"{batch_id}_output.jsonl", "batch_output",
                                                      "".join(json.dumps(e) + "\n" for e in out).encode()).id
        if errors:
            fields["error_file_id"] = self.files.add(f"{batch_id}_error.jsonl", "batch_output",
                                                     "".join(json.dumps(e) + "\n" for e in errors).encode()).id
        now = int(time.time())
        state = self.get(batch_id)["status"]  # type: ignore[index]
        if expire:
            fields.update(status="expired", expired_at=now)
        elif state == "cancelling":
            fields.update(status="cancelled", cancelled_at=now)
        else:
            fields.update(status="completed", completed_at=now)
        self._set(batch_id, **fields)


def add_routes(app: Flask, files: FileStore, batches: Batches) -> None:
    @app.post("/v1/files")
    def upload() -> Response:
        purpose = request.form.get("purpose", "")
        if purpose not in PURPOSES:
            return _error(400, f"Invalid purpose '{purpose}'.", "invalid_value", "purpose")
        part = request.files.get("file")
        if part is None:
            return _error(400, "Missing required parameter: 'file'.", "missing_required_parameter", "file")
        data = part.read()
        if purpose == "batch" and not (part.filename or "").endswith(".jsonl"):
            return _error(400, "A batch file must be JSONL (.jsonl).", "invalid_file_format", "file")
        return jsonify(files.add(part.filename or "file", purpose, data).to_dict())

    @app.get("/v1/files")
    def listing() -> Response:
        purpose = request.args.get("purpose")
        held = [f.to_dict() for f in files.held() if purpose in (None, f.purpose)]
        return jsonify({"object": "list", "data": held, "has_more": False,
                        "first_id": held[0]["id"] if held else None,
                        "last_id": held[-1]["id"] if held else None})

    @app.get("/v1/files/<file_id>")
    def retrieve(file_id: str) -> Response:
        stored = files.get(file_id)
        return jsonify(stored.to_dict()) if stored else _error(404, f"No such File object: {file_id}", "not_found")

    @app.delete("/v1/files/<file_id>")
    def delete(file_id: str) -> Response:
        if not files.delete(file_id):
            return _error(404, f"No such File object: {file_id}", "not_found")
        return jsonify({"id": file_id, "object": "file", "deleted": True})

    @app.get("/v1/files/<file_id>/content")
    def content(file_id: str) -> Response:
        stored = files.get(file_id)
        if stored is None:
            return _error(404, f"No such File object: {file_id}", "not_found")
        if stored.purpose in NOT_DOWNLOADABLE:
            return _error(400, f"Not allowed to download files of purpose: {stored.purpose}")
        return Response(stored.data, mimetype="application/octet-stream")

    @app.post("/v1/batches")
    def create() -> Response:
        return batches.create(request.get_json(silent=True) or {})

    @app.get("/v1/batches/<batch_id>")
    def batch(batch_id: str) -> Response:
        found = batches.get(batch_id)
        return jsonify(found) if found else _error(404, f"No such Batch: {batch_id}", "not_found")

    @app.post("/v1/batches/<batch_id>/cancel")
    def cancel(batch_id: str) -> Response:
        found = batches.cancel(batch_id)
        return jsonify(found) if found else _error(404, f"No such Batch: {batch_id}", "not_found")

    @app.get("/v1/batches")
    def batch_list() -> Response:
        found = [b for b in (batches.get(i) for i in reversed(batches.created)) if b]
        return jsonify({"object": "list", "data": found, "has_more": False,
                        "first_id": found[0]["id"] if found else None,
                        "last_id": found[-1]["id"] if found else None})
