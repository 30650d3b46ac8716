"""A loopback OpenAI: image edits (`POST /v1/images/edits`), the Responses API as deskmark uses
it to locate damage (`POST /v1/responses` with an input_image and a strict json_schema), and
`GET /v1/models`.

It enforces what the real one does and clients most often get wrong: Bearer auth (401), each
image part's own MIME type (400 `unsupported_file_mimetype` for application/octet-stream,
`missing_file_mimetype` for none), known sizes per model, mask size, retired models (404
`model_not_found`). It answers with `usage`, `x-request-id`, and an edited image made by
`transform` (by default: every pixel nudged, as a GPT image model redraws the whole picture,
and a red ellipse drawn where the damage is assumed to be).
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request
from PIL import Image, ImageDraw

from deskmark.sandbox.faults import Faults
from deskmark.sandbox.server import LoopbackServer

__all__ = ["SandboxOpenAI", "regenerate_with_mark", "boxes_at_damage"]

Boxes = list[dict[str, Any]]


def boxes_at_damage(image: Image.Image) -> Boxes:
    """Where deskmark's sample photos have their crack (see sandbox.photos)."""
    from deskmark.sandbox.photos import DAMAGE_CENTRE

    w, h = image.size
    cx, cy, r = DAMAGE_CENTRE[0] * w, DAMAGE_CENTRE[1] * h, 0.14 * min(w, h)
    return [{"label": "cracked screen", "x_min": cx - r, "y_min": cy - r, "x_max": cx + r,
             "y_max": cy + r}]

CURRENT = {"gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini", "chatgpt-image-latest"}
RETIRED = {"gpt-image-1": "2026-10-23", "dall-e-2": "2026-05-12"}
CLASSIC = {"1024x1024", "1536x1024", "1024x1536", "auto"}
ALLOWED_MIME = {"image/png", "image/jpeg", "image/webp"}
OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160, "auto": 1056}


def regenerate_with_mark(image: Image.Image, mask: Image.Image | None) -> Image.Image:
    """Like a GPT image model: nothing survives untouched; a red ellipse marks the damage
    (inside the mask's transparent area when there is one, else around the centre)."""
    out = image.convert("RGB").point(lambda v: min(255, v + 7) if v < 128 else v - 7)
    if mask is not None and "A" in mask.getbands():
        box = mask.getchannel("A").point(lambda a: 255 if a == 0 else 0).getbbox()
    else:
        box = None
    w, h = out.size
    box = box or (w // 3, h // 3, 2 * w // 3, 2 * h // 3)
    ImageDraw.Draw(out).ellipse(box, outline=(235, 20, 20), width=max(4, min(w, h) // 100))
    return out


def _error(status: int, message: str, type_: str, code: str | None,
           param: str | None = None, headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"error": {"message": message, "type": type_, "param": param, "code": code}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _valid_flexible(size: str) -> bool:
    try:
        w, h = (int(v) for v in size.split("x"))
    except ValueError:
        return False
    return (w % 16 == 0 and h % 16 == 0 and max(w, h) / min(w, h) <= 3
            and max(w, h) <= 3840 and min(w, h) <= 2160 and 655_360 <= w * h <= 8_294_400)


class SandboxOpenAI:
    def __init__(self, api_key: str = "sk-sandbox",
                 transform: Callable[[Image.Image, Image.Image | None], Image.Image]
                 = regenerate_with_mark, latency: float = 0.0,
                 locate: Callable[[Image.Image], Boxes] = boxes_at_damage,
                 locate_latency: float | None = None, cheap: bool = False) -> None:
        self.api_key = api_key
        self.transform = transform
        self.locate = locate
        self.locate_latency = latency if locate_latency is None else locate_latency
        # cheap: answer edits with a cached image of the requested size and locates from the
        # image's header alone, skipping decoding and drawing, so that a benchmark measures
        # deskmark and not this stand-in (the real API is remote).
        self.cheap = cheap
        self._cached: dict[tuple[int, int], bytes] = {}
        self.in_flight = 0
        self.max_in_flight = 0  # edit calls being answered at the same time, at most
        self.located: list[dict[str, Any]] = []
        self.latency = latency
        self.calls: list[dict[str, Any]] = []
        self.faults = Faults()
        self._lock = threading.Lock()
        self.server = LoopbackServer(self._app())

    @property
    def url(self) -> str:
        """The OPENAI_BASE_URL to use."""
        return f"{self.server.url}/v1"

    def start(self) -> SandboxOpenAI:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def _app(self) -> Flask:
        app = Flask("sandbox-openai")

        @app.after_request
        def request_id(response: Response) -> Response:
            response.headers["x-request-id"] = f"req_{uuid.uuid4().hex[:24]}"
            return response

        @app.before_request
        def auth() -> Response | None:
            if request.headers.get("Authorization") != f"Bearer {self.api_key}":
                return _error(401, "Incorrect API key provided.", "invalid_request_error",
                              "invalid_api_key")
            return None

        @app.get("/v1/models")
        def models() -> Response:
            return jsonify({"object": "list", "data": [
                {"id": m, "object": "model", "owned_by": "openai"}
                for m in sorted(CURRENT | {"gpt-5.4", "gpt-5-mini"})]})

        @app.post("/v1/responses")
        def responses() -> Response:
            body = request.get_json(silent=True) or {}
            model = str(body.get("model") or "")
            record: dict[str, Any] = {"time": time.time(), "model": model, "text": "",
                                      "detail": None, "image_size": None, "exif": None}
            with self._lock:
                self.located.append(record)
            injected = self.faults.take("POST", request.path)
            if injected is not None:
                return injected
            if not model.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o3", "o4")):
                return _error(404, f"The model `{model}` does not exist or you do not have access "
                              "to it.", "invalid_request_error", "model_not_found", "model")
            fmt = ((body.get("text") or {}).get("format") or {})
            if fmt.get("type") != "json_schema" or not fmt.get("strict") or "schema" not in fmt:
                return _error(400, "This test server expects a strict json_schema text format.",
                              "invalid_request_error", "invalid_value", "text.format")
            image = None
            for message in body.get("input") or []:
                for part in message.get("content") or [] if isinstance(message, dict) else []:
                    if part.get("type") == "input_text":
                        record["text"] += part.get("text", "")
                    if part.get("type") == "input_image":
                        url = str(part.get("image_url") or "")
                        record["detail"] = part.get("detail")
                        header, _, data = url.partition(",")
                        if not header.startswith(("data:image/png;base64", "data:image/jpeg;base64",
                                                  "data:image/webp;base64")):
                            return _error(400, "Invalid image_url: expected a data URL of a PNG, "
                                          "JPEG or WebP image.", "invalid_request_error",
                                          "invalid_image_url", "input")
                        image = Image.open(io.BytesIO(base64.b64decode(data)))
                        record["image_size"] = image.size  # from the header
                        if not self.cheap:
                            image.load()
                            record["exif"] = dict(image.getexif())
            if image is None:
                return _error(400, "No input_image given.", "invalid_request_error",
                              "missing_required_parameter", "input")
            if self.locate_latency:
                time.sleep(self.locate_latency)
            text = json.dumps({"boxes": self.locate(image)})
            return jsonify({
                "id": f"resp_{uuid.uuid4().hex[:24]}", "object": "response",
                "created_at": int(time.time()), "status": "completed", "model": model,
                "output": [{"type": "message", "id": f"msg_{uuid.uuid4().hex[:24]}",
                            "status": "completed", "role": "assistant",
                            "content": [{"type": "output_text", "text": text,
                                         "annotations": []}]}],
                "usage": {"input_tokens": 1200, "output_tokens": 180, "total_tokens": 1380,
                          "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens_details": {"reasoning_tokens": 120}},
            })

        @app.post("/v1/images/edits")
        def edits() -> Response:
            form = request.form
            parts = request.files.getlist("image") + request.files.getlist("image[]")
            call: dict[str, Any] = {"time": time.time(), "model": form.get("model"), "size": form.get("size"),
                    "quality": form.get("quality"), "prompt": form.get("prompt", ""),
                    "input_fidelity": form.get("input_fidelity"),
                    "parts": [(p.filename, p.mimetype) for p in parts],
                    "mask": "mask" in request.files, "image_sizes": []}
            with self._lock:
                self.calls.append(call)
            injected = self.faults.take("POST", request.path)
            if injected is not None:
                return injected
            if self.latency:
                with self._lock:
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                time.sleep(self.latency)
                with self._lock:
                    self.in_flight -= 1
            model = form.get("model") or "dall-e-2"
            if model in RETIRED:
                return _error(404, f"The model `{model}` has been deprecated (shut down "
                              f"{RETIRED[model]}).", "invalid_request_error", "model_not_found",
                              "model")
            if model not in CURRENT and not model.startswith("gpt-image-2"):
                return _error(404, f"The model `{model}` does not exist or you do not have "
                              "access to it.", "invalid_request_error", "model_not_found", "model")
            if not form.get("prompt"):
                return _error(400, "Missing required parameter: 'prompt'.",
                              "invalid_request_error", "missing_required_parameter", "prompt")
            if not parts:
                return _error(400, "Missing required parameter: 'image'.",
                              "invalid_request_error", "missing_required_parameter", "image")
            images = []
            for part in parts:
                if not part.mimetype or part.mimetype == "application/octet-stream" and (
                    not part.filename
                ):
                    return _error(400, "Invalid file 'image': failed to determine mimetype.",
                                  "invalid_request_error", "missing_file_mimetype", "image")
                if part.mimetype not in ALLOWED_MIME:
                    return _error(400, f"Invalid file 'image': unsupported mimetype "
                                  f"('{part.mimetype}'). Supported file formats are "
                                  "'image/jpeg', 'image/png', and 'image/webp'.",
                                  "invalid_request_error", "unsupported_file_mimetype", "image")
                try:
                    image = Image.open(io.BytesIO(part.read()))
                    if self.cheap:
                        images.append(image)
                        call["image_sizes"].append(image.size)
                        continue
                    image.load()
                    call.setdefault("exif", []).append(dict(image.getexif()))
                except OSError:
                    return _error(400, "Invalid image file.", "invalid_request_error",
                                  "invalid_image_file", "image")
                images.append(image)
                call["image_sizes"].append(image.size)
            size = form.get("size", "auto")
            if model.startswith("gpt-image-2"):
                if size != "auto" and not _valid_flexible(size):
                    return _error(400, f"Invalid size '{size}'.", "invalid_request_error",
                                  "invalid_value", "size")
            elif size not in CLASSIC:
                return _error(400, f"Invalid size '{size}'. Supported sizes are 1024x1024, "
                              "1024x1536, 1536x1024, and auto.", "invalid_request_error",
                              "invalid_value", "size")
            quality = form.get("quality", "auto")
            if quality not in OUTPUT_TOKENS:
                return _error(400, f"Invalid quality '{quality}'.", "invalid_request_error",
                              "invalid_value", "quality")
            mask: Image.Image | None = None
            if "mask" in request.files:
                mask_part = request.files["mask"]
                mask = Image.open(io.BytesIO(mask_part.read()))
                if mask.format != "PNG" or mask.size != images[0].size or "A" not in mask.getbands():
                    return _error(400, "Invalid mask: must be a PNG with an alpha channel and the "
                                  "same size as the image.", "invalid_request_error",
                                  "invalid_image_file", "mask")
            if size != "auto":
                w, h = (int(v) for v in size.split("x"))
            else:
                w, h = images[0].size
            if self.cheap:
                if (w, h) not in self._cached:
                    buffer = io.BytesIO()
                    Image.new("RGB", (w, h), (200, 40, 40)).save(buffer, format="PNG")
                    self._cached[(w, h)] = buffer.getvalue()
                png = self._cached[(w, h)]
            else:
                source = images[0].convert("RGB")
                if source.size != (w, h):
                    source = source.resize((w, h))
                    if mask is not None:
                        mask = mask.resize((w, h))
                edited = self.transform(source, mask)
                out = io.BytesIO()
                edited.save(out, format="PNG")
                png = out.getvalue()
            text_tokens = max(1, len(call["prompt"]) // 4)
            image_tokens = 65 + 129 * len(images)
            output = int(OUTPUT_TOKENS[quality] * (w * h) / (1024 * 1024))
            return jsonify({
                "created": int(time.time()),
                "data": [{"b64_json": base64.b64encode(png).decode()}],
                "size": f"{w}x{h}", "quality": quality, "output_format": "png",
                "background": "opaque",
                "usage": {"input_tokens": text_tokens + image_tokens, "output_tokens": output,
                          "total_tokens": text_tokens + image_tokens + output,
                          "input_tokens_details": {"text_tokens": text_tokens,
                                                   "image_tokens": image_tokens}},
            })

        return app
