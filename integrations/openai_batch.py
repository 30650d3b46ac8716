"""OpenAI's side of batch mode: edits as JSON lines of one Batch API job, their images by Files
API `file_id`, the answers read back as `EditResult`s billed at the Batch price, and every
file deskmark put in OpenAI's store deleted again (VENDORS.md "Batch API", "Files API").

Nothing here keeps state: the worker records what it uploaded and submitted (in Redis) before
and after each call here, so that a crash loses no batch and submits none twice: `submit`
tags the batch with deskmark's own id (`metadata`), and `find` finds it again by that id.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

import openai

from integrations.config import Settings
from integrations.errors import PermanentError, RetryableError, VendorError
from integrations.models import cost_usd, lookup
from integrations.openai_images import EditRequest, EditResult, make_client, translate

__all__ = ["BatchEditor", "BATCH_PRICE", "FILE_PREFIX", "Answers", "OPEN", "ENDED"]

# The Batch API bills 50% of the sync price (OpenAI's Batch API guide and pricing page; VENDORS.md
# "Batch API", read 2026-11).
BATCH_PRICE = 0.5
FILE_PREFIX = "deskmark-"  # every file deskmark uploads is named so: the sweep finds its own
OPEN = ("validating", "in_progress", "finalizing", "cancelling")
ENDED = ("completed", "failed", "expired", "cancelled")
METADATA_KEY = "deskmark_batch"


@dataclass(frozen=True)
class Answers:
    """What a finished batch answered: a result or an error per line (by custom_id), and the
    lines it never answered (an expired or cancelled batch's)."""

    results: dict[str, EditResult]
    errors: dict[str, VendorError]
    unanswered: list[str]


class BatchEditor:
    provider = "openai"

    def __init__(self, settings: Settings) -> None:
        self.model = settings.edit_model
        self.quality = settings.edit_quality
        self.client = make_client(settings, 120)

    # --- the files ------------------------------------------------------------------------------
    def upload(self, name: str, data: bytes, mime: str) -> str:
        """An image for an edit line (purpose `vision`); its file id."""
        try:
            return self.client.files.create(file=(f"{FILE_PREFIX}{name}", data, mime), purpose="vision").id
        except openai.APIError as exc:
            raise translate(exc) from exc

    def delete(self, *file_ids: str) -> None:
        """Delete files from OpenAI's store; one already gone (or no id) is no error."""
        for file_id in filter(None, file_ids):
            try:
                self.client.files.delete(file_id)
            except openai.NotFoundError:
                pass
            except openai.APIError as exc:
                raise translate(exc) from exc

    def sweep(self, keep: set[str], older_than: float = 3600, now: float | None = None) -> list[str]:
        """Delete deskmark's files older than `older_than` seconds that no open batch still
        needs (`keep`): what a crash left behind. Returns the ids deleted."""
        cutoff = (time.time() if now is None else now) - older_than
        gone = []
        try:
            for stored in self.client.files.list():
                if (stored.filename.startswith(FILE_PREFIX) and stored.created_at < cutoff
                        and stored.id not in keep):
                    self.delete(stored.id)
                    gone.append(stored.id)
        except openai.APIError as exc:
            raise translate(exc) from exc
        return gone

    # --- the batch ------------------------------------------------------------------------------
    def line(self, custom_id: str, request: EditRequest, image_id: str, mask_id: str | None) -> dict[str, Any]:
        """One `/v1/images/edits` line: the sync edit's parameters, as a JSON body."""
        caps = lookup(self.model)
        width, height = request.size
        body: dict[str, Any] = {
            "model": self.model, "prompt": request.prompt[: caps.prompt_limit] if caps else request.prompt,
            "images": [{"file_id": image_id}], "size": f"{width}x{height}", "quality": self.quality,
            "output_format": "png", "n": 1}
        if mask_id:
            body["mask"] = {"file_id": mask_id}
        if caps is not None and caps.input_fidelity:
            body["input_fidelity"] = "high"
        return {"custom_id": custom_id, "method": "POST", "url": "/v1/images/edits", "body": body}

    def submit(self, local_id: str, lines: list[dict[str, Any]]) -> tuple[str, str]:
        """Upload the lines and create the batch, tagged with deskmark's `local_id`:
        (input file id, batch id)."""
        jsonl = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
        try:
            source = self.client.files.create(
                file=(f"{FILE_PREFIX}batch-{local_id}.jsonl", jsonl, "application/jsonl"), purpose="batch")
            batch = self.client.batches.create(input_file_id=source.id, endpoint="/v1/images/edits",
                                               completion_window="24h", metadata={METADATA_KEY: local_id})
        except openai.APIError as exc:
            raise translate(exc) from exc
        return source.id, batch.id

    def find(self, local_id: str) -> str | None:
        """The batch created for `local_id`, after a crash between creating and recording it."""
        try:
            for batch in self.client.batches.list(limit=100):
                if (batch.metadata or {}).get(METADATA_KEY) == local_id:
                    return batch.id
        except openai.APIError as exc:
            raise translate(exc) from exc
        return None

    def look(self, batch_id: str) -> openai.types.Batch:
        try:
            return self.client.batches.retrieve(batch_id)
        except openai.APIError as exc:
            raise translate(exc) from exc

    def answers(self, batch: openai.types.Batch, custom_ids: list[str]) -> Answers:
        """A finished batch's answers, billed at the Batch price (`BATCH_PRICE`)."""
        results: dict[str, EditResult] = {}
        errors: dict[str, VendorError] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            try:
                text = self.client.files.content(file_id).text
            except openai.APIError as exc:
                raise translate(exc) from exc
            for raw in text.splitlines():
                if raw.strip():
                    entry = json.loads(raw)
                    outcome = self._outcome(entry)
                    if isinstance(outcome, EditResult):
                        results[entry["custom_id"]] = outcome
                    else:
                        errors[entry["custom_id"]] = outcome
        unanswered = [c for c in custom_ids if c not in results and c not in errors]
        return Answers(results, errors, unanswered)

    def _outcome(self, entry: dict[str, Any]) -> EditResult | VendorError:
        response = entry.get("response") or {}
        body = response.get("body") or {}
        status = int(response.get("status_code") or 0)
        request_id = response.get("request_id")
        if entry.get("error") or not 200 <= status < 300:
            error = entry.get("error") or body.get("error") or {}
            message = f"batch line: {error.get('message') or f'HTTP {status}'}"
            kind = PermanentError if 400 <= status < 500 and status != 429 else RetryableError
            return kind(message, vendor="openai", status=status or None, code=error.get("code"),
                        request_id=request_id)
        data = body.get("data") or []
        if not data or not data[0].get("b64_json"):
            return RetryableError("batch line answered without an image", vendor="openai",
                                  request_id=request_id)
        usage = body.get("usage") or {}
        cost = cost_usd(self.model, usage)
        return EditResult(image=base64.b64decode(data[0]["b64_json"]), provider=self.provider,
                          model=self.model, cost_usd=None if cost is None else cost * BATCH_PRICE,
                          request_id=request_id, usage=usage)
