"""What deskmark knows about image edit models: sizes, prompt limits, prices, retirements.

The model is configuration (DESKMARK_EDIT_MODEL). Models not in `MODELS` are passed through
with a warning and no cost estimate; retired ones are refused with a named replacement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any

__all__ = [
    "ImageModel",
    "MODELS",
    "lookup",
    "retirement_problem",
    "request_size",
    "cost_usd",
    "LOCATE_PRICES",
    "locate_cost_usd",
    "sees_original_detail",
]

FLEXIBLE = "flexible"
CLASSIC_SIZES = ((1024, 1024), (1536, 1024), (1024, 1536))
# deskmark's own ceiling on the long edge it sends: bigger costs more and marks no better.
MAX_REQUEST_EDGE = 1536


@dataclass(frozen=True)
class ImageModel:
    name: str
    sizes: str | tuple[tuple[int, int], ...]
    prompt_limit: int
    input_fidelity: bool
    # USD per 1M tokens: text input, image input, image output
    prices: tuple[float, float, float] | None
    shutdown: date | None = None
    replacement: str | None = None


MODELS: dict[str, ImageModel] = {
    m.name: m
    for m in (
        ImageModel("gpt-image-2", FLEXIBLE, 32000, False, (5.0, 8.0, 30.0)),
        ImageModel("gpt-image-1.5", CLASSIC_SIZES, 32000, True, (5.0, 8.0, 32.0),
                   date(2026, 12, 1), "gpt-image-2"),
        ImageModel("gpt-image-1-mini", CLASSIC_SIZES, 32000, False, (2.0, 2.5, 8.0),
                   date(2026, 12, 1), "gpt-image-2"),
        ImageModel("chatgpt-image-latest", CLASSIC_SIZES, 32000, True, None,
                   date(2026, 12, 1), "gpt-image-2"),
        ImageModel("gpt-image-1", CLASSIC_SIZES, 32000, True, None,
                   date(2026, 10, 23), "gpt-image-2"),
        ImageModel("dall-e-2", ((1024, 1024),), 1000, False, None,
                   date(2026, 5, 12), "gpt-image-2"),
    )
}


def lookup(name: str) -> ImageModel | None:
    if name in MODELS:
        return MODELS[name]
    if name.startswith("gpt-image-2"):
        # gpt-image-2.5-* and dated snapshots share gpt-image-2's size rules; price unknown.
        return ImageModel(name, FLEXIBLE, 32000, False, None)
    return None


def retirement_problem(name: str, today: date | None = None) -> str | None:
    """A message when the model is shut down (an error), else None."""
    model = lookup(name)
    today = today or date.today()
    if model and model.shutdown and model.shutdown <= today:
        return (
            f"DESKMARK_EDIT_MODEL={name}: OpenAI shut this model down on {model.shutdown}; "
            f"use {model.replacement} (set DESKMARK_EDIT_MODEL={model.replacement})"
        )
    return None


def retirement_warning(name: str, today: date | None = None) -> str | None:
    model = lookup(name)
    today = today or date.today()
    if model is None:
        return f"DESKMARK_EDIT_MODEL={name} is not a model deskmark knows: passed through as is, no cost estimate"
    if model.shutdown and model.shutdown > today:
        return (
            f"DESKMARK_EDIT_MODEL={name} is scheduled for shutdown on {model.shutdown}; "
            f"move to {model.replacement}"
        )
    return None


def _round16(value: float) -> int:
    return max(16, int(round(value / 16)) * 16)


def request_size(model_name: str, width: int, height: int) -> tuple[int, int]:
    """The WxH to send for a photo of width x height, keeping its aspect ratio where allowed."""
    model = lookup(model_name)
    if model is None or not isinstance(model.sizes, str):
        sizes = model.sizes if model is not None and not isinstance(model.sizes, str) else CLASSIC_SIZES
        aspect = width / height
        return min(sizes, key=lambda s: abs(math.log((s[0] / s[1]) / aspect)))
    # gpt-image-2: sides multiples of 16, aspect <= 3:1, pixels within [655_360, 8_294_400],
    # long edge <= 3840 and short edge <= 2160.
    aspect = min(max(width / height, 1 / 3), 3)
    long_edge = min(max(width, height), MAX_REQUEST_EDGE)
    w: float
    h: float
    if aspect >= 1:
        w, h = long_edge, long_edge / aspect
    else:
        w, h = long_edge * aspect, long_edge
    if w * h < 655_360:
        scale = math.sqrt(655_360 / (w * h))
        w, h = w * scale, h * scale
    sw, sh = _round16(w), _round16(h)
    while sw * sh < 655_360:  # rounding fell short: grow the side that keeps the aspect best
        wider, taller = (sw + 16, sh), (sw, sh + 16)
        sw, sh = min(wider, taller, key=lambda s: abs(math.log(s[0] / s[1] / aspect)))
    return sw, sh


def cost_usd(model_name: str, usage: dict[str, Any] | None) -> float | None:
    """Cost of one call from the API's own `usage`; None when the price or usage is unknown."""
    model = lookup(model_name)
    if model is None or model.prices is None or not usage:
        return None
    text_price, image_price, out_price = model.prices
    details = usage.get("input_tokens_details") or {}
    text_in: float = details.get("text_tokens") or 0
    image_in: float = details.get("image_tokens") or 0
    if not details:  # no breakdown: price all input as text, the cheaper rate
        text_in = usage.get("input_tokens") or 0
    out: float = usage.get("output_tokens") or 0
    return (text_in * text_price + image_in * image_price + out * out_price) / 1_000_000


# Vision models for locating damage (Responses API): USD per 1M input / output tokens.
LOCATE_PRICES: dict[str, tuple[float, float]] = {
    "gpt-5.4": (2.50, 15.00),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
}
# `detail: "original"` (no resizing before analysis, so coordinates match the image) exists
# from gpt-5.4 on; older models get "high" and may misplace boxes more.
_ORIGINAL_DETAIL = ("gpt-5.4", "gpt-5.5", "gpt-6")


def sees_original_detail(model_name: str) -> bool:
    return model_name.startswith(_ORIGINAL_DETAIL)


def locate_cost_usd(model_name: str, usage: dict[str, Any] | None) -> float | None:
    prices = LOCATE_PRICES.get(model_name)
    if prices is None or not usage:
        return None
    return ((usage.get("input_tokens") or 0) * prices[0]
            + (usage.get("output_tokens") or 0) * prices[1]) / 1_000_000


# Output image tokens per 1024x1024 by quality (OpenAI's published figures for GPT image models);
# used only to reserve budget before a call, the accounting uses the call's own `usage`.
_OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160, "auto": 1056}


def estimate_usd(edit_model: str, size: tuple[int, int], quality: str,
                 locate_model: str | None) -> float:
    """A typical cost for locating + editing one photo; 0.0 when no price is known."""
    total = 0.0
    model = lookup(edit_model)
    if model and model.prices:
        text_price, image_price, out_price = model.prices
        out = _OUTPUT_TOKENS.get(quality, 1056) * size[0] * size[1] / (1024 * 1024)
        total += (400 * text_price + 1000 * image_price + out * out_price) / 1_000_000
    if locate_model and locate_model in LOCATE_PRICES:
        price_in, price_out = LOCATE_PRICES[locate_model]
        total += (1500 * price_in + 300 * price_out) / 1_000_000
    return total
