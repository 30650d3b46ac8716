"""Generated sample photos: a product with a visible crack, for the demo and the tests."""

from __future__ import annotations

import io
import math
import random
from typing import Any

from PIL import Image, ImageDraw, ImageFilter

__all__ = ["damaged_product", "DAMAGE_CENTRE"]

# Where the crack is, as fractions of width and height.
DAMAGE_CENTRE = (0.62, 0.40)


def damaged_product(width: int = 1600, height: int = 1200, seed: int = 7,
                    fmt: str = "JPEG", exif: bytes | None = None) -> bytes:
    """A phone-like product on a table, its screen cracked around DAMAGE_CENTRE."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):  # a soft wall-to-table gradient
        shade = int(200 - 60 * y / height)
        draw.line([(0, y), (width, y)], fill=(shade, shade - 8, shade - 20))
    image = image.filter(ImageFilter.GaussianBlur(2))
    draw = ImageDraw.Draw(image)
    body = (int(width * 0.30), int(height * 0.12), int(width * 0.78), int(height * 0.88))
    draw.rounded_rectangle(body, radius=width // 30, fill=(35, 38, 44))
    screen = (body[0] + width // 60, body[1] + width // 60, body[2] - width // 60,
              body[3] - width // 60)
    draw.rounded_rectangle(screen, radius=width // 60, fill=(62, 92, 140))
    cx, cy = int(width * DAMAGE_CENTRE[0]), int(height * DAMAGE_CENTRE[1])
    reach = min(width, height) * 0.12
    for _ in range(14):  # a star of jagged cracks
        angle = rng.uniform(0, 2 * math.pi)
        px, py = float(cx), float(cy)
        for _ in range(9):
            angle += rng.uniform(-0.6, 0.6)
            step = reach / 9 * rng.uniform(0.6, 1.4)
            nx, ny = px + math.cos(angle) * step, py + math.sin(angle) * step
            draw.line([(px, py), (nx, ny)], fill=(235, 240, 250), width=max(2, width // 500))
            px, py = nx, ny
    draw.ellipse((cx - 10, cy - 10, cx + 10, cy + 10), fill=(230, 235, 245))
    out = io.BytesIO()
    options: dict[str, Any] = {"quality": 88} if fmt == "JPEG" else {}
    if exif is not None:
        options["exif"] = exif
    image.save(out, format=fmt, **options)
    return out.getvalue()
