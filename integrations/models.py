"""What deskmark knows about image edit models: sizes, qualities, prompt limits, prices,
retirements, each with a dated source beside it.

The model is configuration (DESKMARK_EDIT_MODEL). Shut-down models are refused with a named
replacement. A model not in `MODELS` is passed through with a warning, and the daily budget
prices it at the highest price of its family (`ceiling`), never at $0.
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
    "prices_of",
    "LOCATE_PRICES",
    "locate_cost_usd",
    "locate_estimate_usd",
    "sees_original_detail",
    "estimate_usd",
    "ceiling",
    "retirement_warning",
    "TYPICAL_SIZE",
    "output_tokens",
    "input_image_tokens",
]

FLEXIBLE = "flexible"
CLASSIC_SIZES = ((1024, 1024), (1536, 1024), (1024, 1536))
# deskmark's own ceiling on the long edge it sends. Only the strokes of the model's mark are
# kept (worker.strokes), so a bigger request buys a sharper ring, not a better photo, and costs
# more three times: gpt-image-2 bills an input image by its 32 px patches (1,536 at most, and
# an image under 1024 px is magnified to 1024 first: `input_image_tokens`), the output by its
# size (`output_tokens`), and the locate model sees the same image. At 1024 a 4:3 photo is
# 1024x768: 768 input patches instead of 1,536 at 1536x1152, and 134 output tokens at `low`
# instead of 181 (README, "What a photo costs").
MAX_REQUEST_EDGE = 1024
TYPICAL_SIZE = (1024, 768)  # the request size of a 4:3 phone photo (worker.marking)
QUALITIES_2 = ("low", "medium", "high", "auto")
# Images 2.5 and 2.6 add two qualities above high. OpenAI's own SDK (openai-python 3.60.0,
# types/image_edit_params.py, read 2026-12-03) names the 2.5 models and their 2026-09-08
# snapshots for xhigh and max, and lists gpt-image-2.6-flare/-sunburst in types/image_model.py
# without saying; third-party pages give 2.6 the same five qualities (wavespeed.ai's "GPT
# Image 2.6 API", apiyi's launch note, 2026-11-05).
QUALITIES_26 = (*QUALITIES_2, "xhigh", "max")
Prices = tuple[float, float, float]  # USD per 1M tokens: text input, image input, image output


@dataclass(frozen=True)
class ImageModel:
    name: str
    sizes: str | tuple[tuple[int, int], ...]
    prompt_limit: int
    input_fidelity: bool
    prices: Prices | None
    shutdown: date | None = None
    replacement: str | None = None
    qualities: tuple[str, ...] = QUALITIES_2


# gpt-image-2's prices: OpenAI's pricing page, read 2026-11 (VENDORS.md "Prices"). The 2.5 and
# 2.6 models at the same token prices: third-party pages that forward OpenAI's billing, not
# OpenAI's own (apiyi "GPT-Image-2.6 Flare and Sunburst Are Live", 2026-11-05: "$5 / $8 / $30
# per 1M tokens"; laozhang "GPT Image 2.5 API", 2026-09-09: "same token rates as gpt-image-2";
# openrouter's gpt-image-2.6-flare page: $8/M input, $30/M output). The cost of a call is
# read from its own `usage` times these, so a wrong price here shows in the note and the
# budget, not in what OpenAI bills. Shutdowns: openai-python's image_model.py and OpenAI's
# deprecations page (VENDORS.md "Models (December 2026)").
MODELS: dict[str, ImageModel] = {
    m.name: m
    for m in (
        ImageModel("gpt-image-2", FLEXIBLE, 32000, False, (5.0, 8.0, 30.0)),
        ImageModel("gpt-image-2.5-flare", FLEXIBLE, 32000, False, (5.0, 8.0, 30.0), qualities=QUALITIES_26),
        ImageModel("gpt-image-2.5-sunburst", FLEXIBLE, 32000, False, (5.0, 8.0, 30.0), qualities=QUALITIES_26),
        ImageModel("gpt-image-2.6-flare", FLEXIBLE, 32000, False, (5.0, 8.0, 30.0), qualities=QUALITIES_26),
        ImageModel("gpt-image-2.6-sunburst", FLEXIBLE, 32000, False, (5.0, 8.0, 30.0), qualities=QUALITIES_26),
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


def ceiling(models: dict[str, ImageModel] | None = None) -> Prices:
    """The highest price of each kind among the image models deskmark can price: what a model
    it cannot price is reserved and counted at, so that no model escapes the daily budget."""
    priced = [m.prices for m in (models or MODELS).values() if m.prices is not None]
    return (max(p[0] for p in priced), max(p[1] for p in priced), max(p[2] for p in priced))


def lookup(name: str) -> ImageModel | None:
    """The model's entry: its own, a dated snapshot's base model's ("gpt-image-2.6-flare-
    2026-11-04" is priced as gpt-image-2.6-flare), or, for an unknown gpt-image-2.x, gpt-image-2's
    size rules with no known price. None for anything else."""
    if name in MODELS:
        return MODELS[name]
    base, _, stamp = name.rpartition("-20")
    if base in MODELS and stamp.replace("-", "").isdigit():
        known = MODELS[base]
        return ImageModel(name, known.sizes, known.prompt_limit, known.input_fidelity, known.prices,
                          known.shutdown, known.replacement, known.qualities)
    if name.startswith("gpt-image-2"):
        return ImageModel(name, FLEXIBLE, 32000, False, None, qualities=QUALITIES_26)
    return None


def prices_of(name: str) -> tuple[Prices, bool]:
    """(prices, known): the model's own prices, or the family's ceiling when it has none."""
    model = lookup(name)
    if model is not None and model.prices is not None:
        return model.prices, True
    return ceiling(), False


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
    """What start-up and `deskmark check` warn of: a shutdown to come, a model with no price."""
    model = lookup(name)
    today = today or date.today()
    warnings = []
    if model is not None and model.shutdown and model.shutdown > today:
        warnings.append(f"DESKMARK_EDIT_MODEL={name} is scheduled for shutdown on {model.shutdown}; "
                        f"move to {model.replacement}")
    if model is None or model.prices is None:
        text, image, out = ceiling()
        known = "is not a model deskmark knows" if model is None else "has no price deskmark knows"
        warnings.append(f"DESKMARK_EDIT_MODEL={name} {known}: passed through as is, and counted "
                        f"against the daily budget at the highest image-model price (${text:g} / "
                        f"${image:g} / ${out:g} per 1M text-in / image-in / image-out tokens)")
    return "; ".join(warnings) or None


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
    """Cost of one call from the API's own `usage` (None without usage); a model without a
    known price at the family's ceiling (`prices_of`)."""
    if not usage:
        return None
    (text_price, image_price, out_price), _ = prices_of(model_name)
    details = usage.get("input_tokens_details") or {}
    text_in: float = details.get("text_tokens") or 0
    image_in: float = details.get("image_tokens") or 0
    if not details:  # no breakdown: price all input as image input, the dearer rate
        image_in = usage.get("input_tokens") or 0
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
    """Cost of one locating call from its `usage`; an unknown model at the dearest known one."""
    if not usage:
        return None
    prices = LOCATE_PRICES.get(model_name) or max(LOCATE_PRICES.values())
    return ((usage.get("input_tokens") or 0) * prices[0]
            + (usage.get("output_tokens") or 0) * prices[1]) / 1_000_000


# Output image tokens per 1024x1024 by quality for the 1.x models (OpenAI's published table,
# VENDORS.md "Prices").
_CLASSIC_OUTPUT = {"low": 272, "medium": 1056, "high": 4160, "auto": 4160}
# gpt-image-2's output tokens: the formula behind the cost calculator of OpenAI's image
# generation guide, as read out of it (OpenAI developer community, "Gpt-image-2 output pricing
# calculator", 2026-06-05). It gives OpenAI's own published examples exactly (checked
# 2026-12-07, tests/test_models.py): 1024x1024 $0.006 / $0.053 / $0.211, 1024x1536 and
# 1536x1024 $0.005 / $0.041 / $0.165 at low / medium / high. The price of an image grows with
# its quality squared, and only weakly with its area (a 2 MP offset).
_QUALITY_FACTOR = {"low": 16, "medium": 48, "high": 96, "auto": 96}
# xhigh and max have no published figure (2026-12): reserved at 2x and 4x high's factor of
# tokens, an assumption on the safe side; the call's `usage` then settles what was spent.
_BEYOND_HIGH = {"xhigh": 2, "max": 4}


def output_tokens(model_name: str, quality: str, size: tuple[int, int]) -> int:
    """The image output tokens OpenAI bills for one edit of `size` at `quality`: what deskmark
    reserves before the call (its `usage` settles what was spent)."""
    width, height = size
    model = lookup(model_name)
    if model is not None and not isinstance(model.sizes, str):
        return int(_CLASSIC_OUTPUT.get(quality, _CLASSIC_OUTPUT["high"]) * width * height / 2**20)
    factor = _QUALITY_FACTOR.get(quality, _QUALITY_FACTOR["high"])
    long_edge, short_edge = max(width, height), min(width, height)
    short_axis = (2 * factor * short_edge + long_edge) // (2 * long_edge)
    tokens = -(-factor * short_axis * (2_000_000 + width * height) // 4_000_000)
    return tokens * _BEYOND_HIGH.get(quality, 1)


def input_image_tokens(size: tuple[int, int]) -> int:
    """The image input tokens of one photo sent to gpt-image-2's edits: 32 px patches, an image
    whose long edge is under 1024 magnified to 1024 (at most 2x) first, at most 1,536 patches
    (measured by a user over 100 edits, OpenAI developer community, "OpenAI must document the
    input image pricing of gpt-image-2", 2026-06-12; OpenAI publishes no formula). Used only to
    reserve budget."""
    grow = min(2.0, max(1.0, 1024 / max(size)))
    width, height = size[0] * grow, size[1] * grow
    patches = math.ceil(width / 32) * math.ceil(height / 32)
    if patches > 1536:
        shrink = math.sqrt(1536 / patches)
        patches = min(1536, math.ceil(width * shrink / 32) * math.ceil(height * shrink / 32))
    return patches


def estimate_usd(edit_model: str, size: tuple[int, int], quality: str,
                 locate_model: str | None) -> float:
    """A typical cost for locating + editing one photo, never 0 for a model with no known
    price: the family's ceiling is reserved instead."""
    (text_price, image_price, out_price), _ = prices_of(edit_model)
    total = (400 * text_price + input_image_tokens(size) * image_price
             + output_tokens(edit_model, quality, size) * out_price) / 1_000_000
    return total + (locate_estimate_usd(locate_model, size) if locate_model else 0.0)


def locate_estimate_usd(locate_model: str, size: tuple[int, int]) -> float:
    """A typical cost for locating the damage on an image of `size`: the locate model sees its
    32 px patches plus the instructions, and answers the boxes as JSON (300 tokens leave room
    for some reasoning); an unknown model at the dearest known one."""
    price_in, price_out = LOCATE_PRICES.get(locate_model) or max(LOCATE_PRICES.values())
    patches = math.ceil(size[0] / 32) * math.ceil(size[1] / 32)
    return ((patches + 600) * price_in + 300 * price_out) / 1_000_000
