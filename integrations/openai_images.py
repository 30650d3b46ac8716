"""The OpenAI image edit provider, on the official `openai` SDK.

The SDK's own retries are off (`max_retries=0`): an edit can take minutes and is billed per
attempt, so the task's retry policy decides. SDK errors become `integrations.errors`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import openai

from integrations.config import Settings
from integrations.errors import PermanentError, RateLimited, RetryableError, VendorError
from integrations.http import parse_retry_after
from integrations.models import cost_usd, lookup

__all__ = ["EditRequest", "EditResult", "OpenAIEditor", "EDIT_TIMEOUT_SECONDS"]

EDIT_TIMEOUT_SECONDS = 240.0


@dataclass(frozen=True)
class EditRequest:
    image: bytes  # PNG, already the size in `size`
    size: tuple[int, int]
    prompt: str
    mask: bytes | None = None


@dataclass
class EditResult:
    image: bytes
    provider: str  # "openai" or "local"
    model: str
    cost_usd: float | None = 0.0
    request_id: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    # Where the mark is, in pixels of the edited image; None when the model redrew everything.
    region: tuple[int, int, int, int] | None = None
    label: str | None = None


class OpenAIEditor:
    provider = "openai"

    def __init__(self, settings: Settings) -> None:
        self.model = settings.edit_model
        self.quality = settings.edit_quality
        self.client = openai.OpenAI(
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            max_retries=0,
            timeout=EDIT_TIMEOUT_SECONDS,
        )

    def edit(self, request: EditRequest) -> EditResult:
        caps = lookup(self.model)
        width, height = request.size
        try:
            # A real filename and MIME type on every part: bare bytes go out as
            # application/octet-stream and OpenAI answers 400 unsupported_file_mimetype.
            response = self.client.images.edit(  # type: ignore[call-overload]
                model=self.model,
                image=("photo.png", request.image, "image/png"),
                mask=("mask.png", request.mask, "image/png") if request.mask else openai.omit,
                input_fidelity="high" if caps is not None and caps.input_fidelity else openai.omit,
                prompt=request.prompt,
                size=f"{width}x{height}",
                quality=self.quality,
                output_format="png",
                n=1,
            )
        except openai.APIError as exc:
            raise translate(exc) from exc
        if not response.data or not response.data[0].b64_json:
            raise RetryableError("OpenAI answered without an image", vendor="openai")
        usage = response.usage.model_dump() if response.usage else {}
        return EditResult(
            image=base64.b64decode(response.data[0].b64_json),
            provider=self.provider,
            model=self.model,
            cost_usd=cost_usd(self.model, usage),
            request_id=getattr(response, "_request_id", None),
            usage=usage,
        )


def translate(exc: openai.APIError) -> VendorError:
    """Map an SDK error onto deskmark's retry classes."""
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError):
        return RetryableError(f"OpenAI unreachable: {exc}", vendor="openai")
    if not isinstance(exc, openai.APIStatusError):
        return RetryableError(f"OpenAI error: {exc}", vendor="openai")
    body = exc.body if isinstance(exc.body, dict) else {}
    code = exc.code or body.get("code") or exc.type or body.get("type")
    kw: dict[str, Any] = {
        "vendor": "openai",
        "status": exc.status_code,
        "code": code,
        "request_id": exc.request_id,
    }
    message = body.get("message") or str(exc)
    if exc.status_code == 429:
        quota = exc.type == "insufficient_quota" or (code or "").endswith(
            ("quota", "exhausted", "limit_exceeded")
        ) and code != "rate_limit_exceeded"
        if quota:
            return PermanentError(f"OpenAI quota exhausted: {message}", **kw)
        return RateLimited(
            f"OpenAI rate limit: {message}", retry_after=parse_retry_after(exc.response.headers), **kw
        )
    if exc.status_code >= 500 or exc.status_code in (408, 409):
        return RetryableError(f"OpenAI {exc.status_code}: {message}", **kw)
    return PermanentError(f"OpenAI {exc.status_code}: {message}", **kw)
