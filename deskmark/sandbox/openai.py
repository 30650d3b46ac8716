"""A loopback OpenAI: image edits (`POST /v1/images/edits`), the Responses API as deskmark uses
it to locate damage (`POST /v1/responses` with an input_image and a strict json_schema),
`GET /v1/models`, and the Files and Batch APIs (deskmark.sandbox.openai_batch).

It enforces what the real one does and clients most often get wrong: Bearer auth (401), each
image part's own MIME type (400 `unsupported_file_mimetype` for application/octet-stream,
`missing_file_mimetype` for none), known sizes per model, mask size, retired models (404
`model_not_found`). It answers with `usage`, `x-request-id`, and an edited image made by
`transform` (by default `MarkingModel`: every pixel redrawn, as a GPT image model does, and a red
circle and label around the damage with the model's own margin, mask or not). It keeps the bytes
of every image it is sent (`raw`), so tests can look for what must never leave deskmark.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, jsonify, request
from PIL import Image, ImageDraw, ImageFilter, ImageFont, PngImagePlugin

from deskmark.sandbox.faults import Faults
from deskmark.sandbox.openai_batch import Batches, FileStore, add_routes
from deskmark.sandbox.photos import damage_box, product_box
from deskmark.sandbox.server import LoopbackServer

__all__ = ["SandboxOpenAI", "MarkingModel", "boxes_at_damage"]

Boxes = list[dict[str, Any]]


# The stand-in's labels in deskmark's languages (by their English names, as the locate
# instructions give them).
LABELS: dict[str, dict[str, str]] = {
    language: {"cracked screen": label} for language, label in {
        "German": "Displaybruch", "French": "écran fissuré", "Spanish": "pantalla rota",
        "Brazilian Portuguese": "tela trincada", "Italian": "schermo incrinato", "Dutch": "gebarsten scherm",
        "Japanese": "画面割れ", "Korean": "화면 균열", "Simplified Chinese": "屏幕破裂",
        "Traditional Chinese": "螢幕破裂", "Arabic": "شاشة مكسورة", "Hindi": "टूटी स्क्रीन",
    }.items()
}


def boxes_at_damage(image: Image.Image) -> Boxes:
    """Where deskmark's sample photos have their star of cracks (see sandbox.photos)."""
    x0, y0, x1, y1 = damage_box("star", *image.size)
    return [{"label": "cracked screen", "x_min": x0, "y_min": y0, "x_max": x1, "y_max": y1}]


# As on 2026-12-02: Images 2.5 and 2.6 current, the 1.x models and chatgpt-image-latest shut down.
CURRENT = {"gpt-image-2", "gpt-image-2.5-flare", "gpt-image-2.5-sunburst", "gpt-image-2.6-flare",
           "gpt-image-2.6-sunburst"}
RETIRED = {"gpt-image-1.5": "2026-12-01", "gpt-image-1-mini": "2026-12-01",
           "chatgpt-image-latest": "2026-12-01", "gpt-image-1": "2026-10-23", "dall-e-2": "2026-05-12"}
NEW_QUALITIES = {"xhigh", "max"}  # Images 2.5 and 2.6 only
CLASSIC = {"1024x1024", "1536x1024", "1024x1536", "auto"}
ALLOWED_MIME = {"image/png", "image/jpeg", "image/webp"}
# How OpenAI bills gpt-image-2 (the stand-in's own copy of the vendor's rules, not deskmark's):
# output tokens by the formula behind the cost calculator of OpenAI's image generation guide
# (OpenAI developer community, 2026-06-05; it gives OpenAI's published $0.006 / $0.053 / $0.211
# for 1024x1024 and $0.005 / $0.041 / $0.165 for 1024x1536), xhigh and max as 2x and 4x high (no
# published figure); input images by 32 px patches (community measurement, 2026-06-12).
QUALITY_FACTOR = {"low": 16, "medium": 48, "high": 96, "auto": 96, "xhigh": 96, "max": 96}
BEYOND_HIGH = {"xhigh": 2, "max": 4}


def billed_output(quality: str, w: int, h: int) -> int:
    factor = QUALITY_FACTOR[quality]
    short_axis = (2 * factor * min(w, h) + max(w, h)) // (2 * max(w, h))
    return -(-factor * short_axis * (2_000_000 + w * h) // 4_000_000) * BEYOND_HIGH.get(quality, 1)


def patches(w: float, h: float) -> int:
    return math.ceil(w / 32) * math.ceil(h / 32)


def billed_input_image(w: int, h: int) -> int:
    """An edit's input image: under 1024 px magnified to 1024 (at most 2x), at most 1,536 patches."""
    grow = min(2.0, max(1.0, 1024 / max(w, h)))
    gw, gh = w * grow, h * grow
    if patches(gw, gh) <= 1536:
        return patches(gw, gh)
    shrink = math.sqrt(1536 / patches(gw, gh))
    return min(1536, patches(gw * shrink, gh * shrink))


@dataclass
class MarkingModel:
    """A stand-in for a GPT image model asked to circle the damage, as they behave.

    It redraws every pixel (brighter and slightly blurred) and, mask or not, circles the damage
    it "sees" (where the sample photo's `damage` is) with its own `margin`, a share of the
    damage's longer side, and writes `label` above the circle, anti-aliased, in red. Other
    `mode`s misbehave: "nothing" draws no mark, "elsewhere" circles the mirrored spot, "partial"
    draws only a third of the circle, "paint" paints the whole product red. `drawn` records
    each ellipse it drew, in pixels of the image it was given. Asked to write no text, it
    writes no label.
    """

    damage: str = "star"
    margin: float = 0.3
    mode: str = "circle"
    label: str = "cracked screen"
    drawn: list[tuple[float, float, float, float]] = field(default_factory=list)

    def __call__(self, image: Image.Image, mask: Image.Image | None, prompt: str = "") -> Image.Image:
        w, h = image.size
        out = image.convert("RGB").filter(ImageFilter.GaussianBlur(1.5)).point(
            lambda v: min(255, int(v * 1.06) + 8))
        if self.mode == "nothing":
            return out
        if self.mode == "paint":
            ImageDraw.Draw(out).rounded_rectangle(product_box(w, h), radius=w // 30,
                                                  fill=(225, 32, 28))
            return out
        x0, y0, x1, y1 = damage_box(self.damage, w, h)
        if self.mode == "elsewhere":
            x0, y0, x1, y1 = w - x1, h - y1, w - x0, h - y0
        m = self.margin * max(x1 - x0, y1 - y0)
        ellipse = (x0 - m, y0 - m, x1 + m, y1 + m)
        self.drawn.append(ellipse)
        # Asked for no text (deskmark writes its own label), it writes none.
        text = "" if "write no text" in prompt.lower() else self.label
        _draw_smooth(out, ellipse, text, partial=self.mode == "partial")
        return out


def _draw_smooth(image: Image.Image, ellipse: tuple[float, float, float, float], label: str,
                 partial: bool) -> None:
    """An anti-aliased red ellipse and label: drawn at 4x on the area they cover, scaled down."""
    red = (228, 24, 30)
    w, h = image.size
    stroke = max(4, min(w, h) // 150)
    font = ImageFont.load_default(size=max(14, min(w, h) // 30) * 4)
    text_w = font.getlength(label) / 4
    text_h = max(14, min(w, h) // 30) * 1.3
    x0, y0, x1, y1 = ellipse
    ty = y0 - text_h - stroke * 2 if y0 - text_h - stroke * 2 >= 0 else y1 + stroke * 2
    area = (max(0, int(min(x0, x0) - stroke * 2)), max(0, int(min(y0, ty) - stroke * 2)),
            min(w, int(max(x1, x0 + text_w) + stroke * 2)), min(h, int(max(y1, ty + text_h) + stroke * 2)))
    if area[2] <= area[0] or area[3] <= area[1]:
        return
    scale = 4
    layer = Image.new("L", ((area[2] - area[0]) * scale, (area[3] - area[1]) * scale), 0)
    draw = ImageDraw.Draw(layer)
    box = [(x0 - area[0]) * scale, (y0 - area[1]) * scale, (x1 - area[0]) * scale,
           (y1 - area[1]) * scale]
    if partial:
        draw.arc(box, 200, 320, fill=255, width=stroke * scale)
    else:
        draw.ellipse(box, outline=255, width=stroke * scale)
        draw.text(((x0 - area[0]) * scale, (ty - area[1]) * scale), label, fill=255, font=font)
    alpha = layer.resize((area[2] - area[0], area[3] - area[1]), Image.Resampling.BOX)
    image.paste(red, area, alpha)


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
                 transform: Callable[[Image.Image, Image.Image | None, str], Image.Image] | None = None,
                 latency: float = 0.0,
                 locate: Callable[[Image.Image], Boxes] = boxes_at_damage,
                 locate_latency: float | None = None, cheap: bool = False,
                 batch_delay: float = 2.0) -> None:
        self.api_key = api_key
        self.transform = transform or MarkingModel()
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
        self.files = FileStore()  # the Files API's store (deskmark.sandbox.openai_batch)
        app = self._app()
        self.batches = Batches(self.files, self._edit, app, self._record, delay=batch_delay)
        add_routes(app, self.files, self.batches)
        self.server = LoopbackServer(app)

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
                            record["raw"] = base64.b64decode(data)
            if image is None:
                return _error(400, "No input_image given.", "invalid_request_error",
                              "missing_required_parameter", "input")
            if self.locate_latency:
                time.sleep(self.locate_latency)
            boxes = self.locate(image)
            # Asked for its labels in a language (deskmark's instructions say which), the stand-in
            # writes the ones it knows in it, as a model would.
            asked = re.search(r"one to three words, in ([A-Za-z ]+)\.", record["text"])
            if asked:
                for box in boxes:
                    box["label"] = LABELS.get(asked.group(1), {}).get(box["label"], box["label"])
            text = json.dumps({"boxes": boxes})
            # Billed as a patch-based vision model: the instructions, the image's 32 px patches;
            # out, the answer (gpt-5.4 reasons at effort "none" unless asked: no reasoning tokens).
            prompt_tokens = len(record["text"]) // 4 + patches(*image.size)
            answer_tokens = len(text) // 4
            return jsonify({
                "id": f"resp_{uuid.uuid4().hex[:24]}", "object": "response",
                "created_at": int(time.time()), "status": "completed", "model": model,
                "output": [{"type": "message", "id": f"msg_{uuid.uuid4().hex[:24]}",
                            "status": "completed", "role": "assistant",
                            "content": [{"type": "output_text", "text": text,
                                         "annotations": []}]}],
                "usage": {"input_tokens": prompt_tokens, "output_tokens": answer_tokens,
                          "total_tokens": prompt_tokens + answer_tokens,
                          "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens_details": {"reasoning_tokens": 0}},
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
            uploads = []
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
                uploads.append(part.read())
            mask_bytes = request.files["mask"].read() if "mask" in request.files else None
            return self._edit(call, form.get("model") or "dall-e-2", form.get("prompt", ""), uploads,
                              mask_bytes, form.get("size", "auto"), form.get("quality", "auto"))

        return app

    def _record(self, call: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append(call)

    def _edit(self, call: dict[str, Any], model: str, prompt: str, uploads: list[bytes],
              mask_bytes: bytes | None, size: str, quality: str) -> Response:
        """An edit, from the multipart route or a batch line: the same checks, the same answer."""
        if model in RETIRED:
            return _error(404, f"The model `{model}` has been deprecated (shut down "
                          f"{RETIRED[model]}).", "invalid_request_error", "model_not_found",
                          "model")
        if model not in CURRENT and not model.startswith("gpt-image-2"):
            return _error(404, f"The model `{model}` does not exist or you do not have "
                          "access to it.", "invalid_request_error", "model_not_found", "model")
        if not prompt:
            return _error(400, "Missing required parameter: 'prompt'.",
                          "invalid_request_error", "missing_required_parameter", "prompt")
        if not uploads:
            return _error(400, "Missing required parameter: 'image'.",
                          "invalid_request_error", "missing_required_parameter", "image")
        images = []
        for data in uploads:
            try:
                image = Image.open(io.BytesIO(data))
                if self.cheap:
                    images.append(image)
                    call["image_sizes"].append(image.size)
                    continue
                image.load()
                call.setdefault("exif", []).append(dict(image.getexif()))
                call.setdefault("raw", []).append(data)
            except OSError:
                return _error(400, "Invalid image file.", "invalid_request_error",
                              "invalid_image_file", "image")
            images.append(image)
            call["image_sizes"].append(image.size)
        if model.startswith("gpt-image-2"):
            if size != "auto" and not _valid_flexible(size):
                return _error(400, f"Invalid size '{size}'.", "invalid_request_error",
                              "invalid_value", "size")
        elif size not in CLASSIC:
            return _error(400, f"Invalid size '{size}'. Supported sizes are 1024x1024, "
                          "1024x1536, 1536x1024, and auto.", "invalid_request_error",
                          "invalid_value", "size")
        if quality not in QUALITY_FACTOR or (quality in NEW_QUALITIES
                                            and not model.startswith(("gpt-image-2.5", "gpt-image-2.6"))):
            return _error(400, f"Invalid quality '{quality}'.", "invalid_request_error",
                          "invalid_value", "quality")
        mask: Image.Image | None = None
        if mask_bytes is not None:
            mask = Image.open(io.BytesIO(mask_bytes))
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
            edited = self.transform(source, mask, prompt)
            if quality == "low":
                # A low-quality answer is coarser: as if drawn at half the size and scaled up.
                edited = edited.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.BOX).resize(
                    (w, h), Image.Resampling.BILINEAR)
            out = io.BytesIO()
            # Models' outputs carry metadata of their own (OpenAI's: content credentials);
            # none of it may reach a ticket.
            note = PngImagePlugin.PngInfo()
            note.add_text("Software", "sandbox-openai image model")
            edited.save(out, format="PNG", pnginfo=note)
            png = out.getvalue()
        text_tokens = max(1, len(call["prompt"]) // 4)
        image_tokens = sum(billed_input_image(*image.size) for image in images)
        output = billed_output(quality, w, h)
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

