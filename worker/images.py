"""Image work, as pure functions over bytes and Pillow images, with no vendor knowledge.

Untrusted bytes are opened only through `load`: the type comes from the magic bytes (not the
name or Content-Type), Pillow gets an explicit format allow-list, a pixel ceiling is enforced
from the header before anything is decoded, and EXIF orientation is applied. Encoders here
never pass `exif=`, so GPS and every other metadata stay behind.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from integrations.errors import UnusablePhoto

__all__ = [
    "MAX_PIXELS",
    "sniff",
    "load",
    "Prepared",
    "prepare",
    "encode_png",
    "encode_jpeg",
    "draw_mark",
    "guess_damage_region",
    "fit_to",
    "Box",
    "pad_box",
    "scale_box",
    "edit_mask",
    "composite",
]

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive

# Our own ceiling (Pillow's default warns at ~89 MP): 48 MP phone photos pass, bombs do not.
MAX_PIXELS = 64_000_000
DELIVERY_EDGE = 2048  # the most we put back on the ticket (long edge)
# JPEGs are decoded at a reduced DCT scale, but never below this long edge: the largest edit
# request size we send is 1536, and agents need detail in the delivered photo.
DECODE_FLOOR = 1536
# The request image is the decoded photo scaled down by less than 1.5x (2016 -> 1536 px for a
# 12 MP photo): bicubic is as sharp as Lanczos to the eye there, for 3/4 of its CPU (35 vs 48 ms).
REQUEST_FILTER = Image.Resampling.BICUBIC
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
)
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif"}

def sniff(data: bytes) -> str | None:
    """The image format by magic bytes, or None."""
    for offset, magic, name in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "HEIF" if data[8:12] != b"avif" else None
    return None


def _register_heif() -> None:
    try:
        import pillow_heif  # type: ignore[import-not-found]
    except ImportError as exc:
        raise UnusablePhoto(
            "HEIC/HEIF photo: install deskmark with the `heic` extra to read it"
        ) from exc
    pillow_heif.register_heif_opener()


def load(data: bytes, min_long_edge: int | None = None) -> Image.Image:
    """Open untrusted bytes as an upright RGB image, or raise UnusablePhoto with the reason.

    With `min_long_edge`, a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps
    its long edge at least that long: a 12 MP photo decodes at 1/2 in a quarter of the time.
    """
    kind = sniff(data)
    if kind is None:
        raise UnusablePhoto("not an image (its bytes are no JPEG, PNG, WebP, GIF or HEIC)")
    if kind == "HEIF":
        _register_heif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[kind])
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise UnusablePhoto(
                    f"image is {width}x{height}: over deskmark's {MAX_PIXELS // 1_000_000} MP limit"
                )
            if kind == "JPEG" and min_long_edge and max(width, height) > min_long_edge:
                scale = min_long_edge / max(width, height)
                image.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
            if kind == "GIF":
                image.seek(0)
            image.load()
    except UnusablePhoto:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnusablePhoto(f"image refused as a decompression bomb: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UnusablePhoto(f"broken or truncated {kind} file: {exc}") from exc
    ImageOps.exif_transpose(image, in_place=True)  # a copy of a 12 MB image saved when upright
    return image.convert("RGB") if image.mode != "RGB" else image


def fit_to(image: Image.Image, max_edge: int) -> Image.Image:
    if max(image.size) <= max_edge:
        return image
    copy = image.copy()
    copy.thumbnail((max_edge, max_edge), Image.Resampling.LANCZOS)
    return copy


@dataclass(frozen=True)
class Prepared:
    photo: Image.Image  # the customer's photo, upright, at most DELIVERY_EDGE
    request_image: bytes  # what the models receive: JPEG, exactly `request_size`, no metadata
    request_size: tuple[int, int]
    request_mime: str = "image/jpeg"


def prepare(data: bytes, size_for: Callable[[int, int], tuple[int, int]] | None = None) -> Prepared:
    """Customer bytes → the delivered-size photo and the image the models are sent.

    `size_for(width, height)` picks the request size from the upright photo's size. The
    request goes out as a high-quality JPEG: the API accepts it, and it is a third of a PNG's
    size to upload and much faster to encode.
    """
    photo = fit_to(load(data, DECODE_FLOOR), DELIVERY_EDGE)
    size = size_for(*photo.size) if size_for else photo.size
    request = photo if photo.size == size else photo.resize(size, REQUEST_FILTER)
    return Prepared(photo=photo, request_image=encode_jpeg(request, quality=95), request_size=size)


def encode_png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False, compress_level=3)
    return out.getvalue()


def encode_jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def guess_damage_region(image: Image.Image) -> tuple[int, int, int, int]:
    """A heuristic box around the busiest patch of fine edges (cracks, scratches, dents).

    Used only by the local annotator, which says in its note that the box is a guess.
    """
    small = image.convert("L")
    small.thumbnail((160, 160))
    edges = small.filter(ImageFilter.FIND_EDGES)
    # Ignore the frame: FIND_EDGES lights up the border.
    w, h = edges.size
    radius = max(3, min(w, h) // 10)
    density = edges.filter(ImageFilter.BoxBlur(radius))
    pixels = density.load()
    assert pixels is not None
    best, bx, by = -1.0, w // 2, h // 2
    margin = radius
    for y in range(margin, max(margin + 1, h - margin)):
        for x in range(margin, max(margin + 1, w - margin)):
            value = pixels[x, y]
            assert isinstance(value, int | float)
            if value > best:
                best, bx, by = float(value), x, y
    sx, sy = image.width / w, image.height / h
    half = radius * 1.6
    return (
        max(0, int((bx - half) * sx)),
        max(0, int((by - half) * sy)),
        min(image.width, int((bx + half) * sx)),
        min(image.height, int((by + half) * sy)),
    )


def draw_mark(image: Image.Image, box: tuple[int, int, int, int], label: str) -> Image.Image:
    """A red ellipse around `box` and a short label beside it, on a copy of `image`."""
    marked = image.convert("RGB")  # always a new image, even from RGB
    draw = ImageDraw.Draw(marked)
    stroke = max(3, min(marked.size) // 150)
    pad = stroke * 2
    x0, y0, x1, y1 = box
    ellipse = (max(0, x0 - pad), max(0, y0 - pad), min(marked.width - 1, x1 + pad),
               min(marked.height - 1, y1 + pad))
    draw.ellipse(ellipse, outline=(230, 20, 20), width=stroke)
    font = ImageFont.load_default(size=max(14, min(marked.size) // 22))
    left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
    tw, th = right - left, bottom - top
    tx = min(max(0, ellipse[0]), marked.width - tw - 8)
    ty = ellipse[1] - th - 12 if ellipse[1] - th - 12 >= 0 else min(marked.height - th - 8,
                                                                    ellipse[3] + 6)
    draw.rectangle((tx - 4, ty - 4, tx + tw + 4, ty + th + 6), fill=(230, 20, 20))
    draw.text((tx - left, ty - top), label, fill=(255, 255, 255), font=font)
    return marked


def pad_box(box: Box, size: tuple[int, int], fraction: float = 0.35, minimum: int = 24) -> Box:
    """Grow a damage box so the model's ellipse and label fit inside it; clip to the image.

    An ellipse drawn around a box reaches about 21% beyond each side; the label needs room too.
    """
    x0, y0, x1, y1 = box
    dx = max(minimum, int((x1 - x0) * fraction))
    dy = max(minimum, int((y1 - y0) * fraction))
    width, height = size
    return max(0, x0 - dx), max(0, y0 - dy), min(width, x1 + dx), min(height, y1 + dy)


def scale_box(box: Box, source: tuple[int, int], target: tuple[int, int]) -> Box:
    sx, sy = target[0] / source[0], target[1] / source[1]
    x0, y0, x1, y1 = box
    return (int(x0 * sx), int(y0 * sy), min(target[0], int(round(x1 * sx))),
            min(target[1], int(round(y1 * sy))))


def edit_mask(size: tuple[int, int], regions: list[Box]) -> bytes:
    """The edit mask OpenAI expects: a PNG with alpha, fully transparent where it may edit."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    draw = ImageDraw.Draw(mask)
    for x0, y0, x1, y1 in regions:
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=(0, 0, 0, 0))
    return encode_png(mask)


def composite(photo: Image.Image, edited: Image.Image, regions: list[Box]) -> Image.Image:
    """The customer's photo with the model's output pasted in only inside `regions`.

    The paste fades in over a soft edge that lies inside each region, so every pixel outside
    the regions is exactly the customer's own.
    """
    # Only the regions are touched: each is cut from the model's output, scaled to the photo,
    # and pasted through its own soft-edged mask (much cheaper than a full-size composite).
    result = photo.convert("RGB")  # always a new image, even from RGB
    edited = edited.convert("RGB")
    sx, sy = edited.width / photo.width, edited.height / photo.height
    feather = max(2, min(photo.size) // 200)
    for x0, y0, x1, y1 in regions:
        width, height = x1 - x0, y1 - y0
        inner = (3 * feather, 3 * feather, width - 1 - 3 * feather, height - 1 - 3 * feather)
        if width <= 0 or height <= 0 or inner[0] >= inner[2] or inner[1] >= inner[3]:
            continue
        patch = edited.crop((round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)))
        patch = patch.resize((width, height), Image.Resampling.LANCZOS)
        alpha = Image.new("L", (width, height), 0)
        ImageDraw.Draw(alpha).rectangle(inner, fill=255)
        result.paste(patch, (x0, y0), alpha.filter(ImageFilter.GaussianBlur(feather)))
    return result
