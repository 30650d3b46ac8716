"""Image work, as pure functions over bytes and Pillow images, with no vendor knowledge.

Untrusted bytes are opened only through `load`: the type comes from the magic bytes (not the
name or Content-Type), Pillow gets an explicit format allow-list, a pixel ceiling is enforced
from the header before anything is decoded, EXIF orientation is applied, the pixels are
converted to sRGB, and every piece of metadata is dropped (EXIF with GPS and maker notes, XMP,
IPTC, comments, PNG text, the ICC profile): Pillow's encoders copy some of it from the image
they save (a JPEG comment, an ICC profile), so nothing of it may stay attached.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, ImageCms, ImageDraw, ImageFilter, ImageOps

from integrations.errors import UnusablePhoto
from worker import fonts

__all__ = [
    "MAX_PIXELS",
    "Source",
    "sniff",
    "decode_cost",
    "load",
    "Prepared",
    "prepare",
    "encode_png",
    "encode_jpeg",
    "draw_marks",
    "MARK_RED",
    "guess_damage_region",
    "fit_to",
    "Box",
    "scale_box",
    "edit_mask",
    "draw_label",
]

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive

# Our own ceiling (Pillow's default warns at ~89 MP): 48 MP phone photos pass, bombs do not.
MAX_PIXELS = 64_000_000
# Above FREE_PIXELS, an image must not hold more pixels per byte of its file than a photo can:
# a 250 KB PNG of 64 MP is cheap to send and 448 MB to decode. JPEGs decode at a reduced scale
# (see `load`), so they may be denser.
FREE_PIXELS = 16_000_000
MAX_PIXELS_PER_BYTE = {"JPEG": 200, "PNG": 40, "GIF": 40, "WEBP": 40, "HEIF": 40}
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

Source = bytes | BinaryIO  # a photo's bytes, or a seekable file holding them (a download)


def _head(source: Source, size: int = 16) -> bytes:
    if isinstance(source, bytes):
        return source[:size]
    source.seek(0)
    head = source.read(size)
    source.seek(0)
    return head


def _length(source: Source) -> int:
    if isinstance(source, bytes):
        return len(source)
    length = source.seek(0, io.SEEK_END)
    source.seek(0)
    return length


def _stream(source: Source) -> BinaryIO:
    if isinstance(source, bytes):
        return io.BytesIO(source)
    source.seek(0)
    return source


MIME_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp",
              "HEIF": "image/heic"}


def mime_type(source: Source) -> str | None:
    """The image's media type by its magic bytes (`sniff`), or None."""
    return MIME_TYPES.get(sniff(source) or "")


def sniff(source: Source) -> str | None:
    """The image format by magic bytes, or None."""
    data = _head(source)
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
        import pillow_heif
    except ImportError as exc:
        raise UnusablePhoto(
            "HEIC/HEIF photo: install deskmark with the `heic` extra to read it"
        ) from exc
    pillow_heif.register_heif_opener()


def _open(source: Source) -> tuple[str, Image.Image]:
    """Open the header only, and refuse what costs far more to decode than to send."""
    kind = sniff(source)
    if kind is None:
        raise UnusablePhoto("not an image (its bytes are no JPEG, PNG, WebP, GIF or HEIC)")
    if kind == "HEIF":
        _register_heif()
    with _refusals(kind):
        image = Image.open(_stream(source), formats=[kind])
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise UnusablePhoto(
            f"image is {width}x{height}: over deskmark's {MAX_PIXELS // 1_000_000} MP limit"
        )
    length = _length(source)
    if width * height > FREE_PIXELS and width * height > length * MAX_PIXELS_PER_BYTE[kind]:
        raise UnusablePhoto(
            f"image is {width}x{height} in only {length // 1024} KB: over "
            f"{MAX_PIXELS_PER_BYTE[kind]} pixels per byte, it would cost "
            f"{_decoded_bytes(kind, image, None) // 2**20} MB to decode (a decompression bomb, "
            "or a blank image)"
        )
    return kind, image


@contextlib.contextmanager
def _refusals(kind: str) -> Iterator[None]:
    """Pillow's complaints about an untrusted file, as UnusablePhoto with the reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnusablePhoto(f"image refused as a decompression bomb: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UnusablePhoto(f"broken or truncated {kind} file: {exc}") from exc


def _draft_size(image: Image.Image, min_long_edge: int) -> tuple[int, int]:
    width, height = image.size
    scale = min_long_edge / max(width, height)
    return max(1, int(width * scale)), max(1, int(height * scale))


def _decoded_size(kind: str, image: Image.Image, min_long_edge: int | None) -> tuple[int, int]:
    """The size `load` decodes to: a JPEG's reduced DCT scale (what `draft` picks), else all."""
    width, height = image.size
    if kind == "JPEG" and min_long_edge and max(width, height) > min_long_edge:
        wanted = _draft_size(image, min_long_edge)
        scale = next((s for s in (8, 4, 2) if -(-width // s) >= wanted[0]
                      and -(-height // s) >= wanted[1]), 1)
        width, height = -(-width // scale), -(-height // scale)
    return width, height


def _decoded_bytes(kind: str, image: Image.Image, min_long_edge: int | None) -> int:
    """Peak bytes of pixels while `load` decodes it: the decoded image in its own mode, and
    the RGB (or sRGB) copy made from it."""
    width, height = _decoded_size(kind, image, min_long_edge)
    own = width * height * max(1, len(image.getbands()))
    copies = (image.mode != "RGB") + bool(image.info.get("icc_profile"))
    return own + width * height * 3 * copies


def decode_cost(source: Source, min_long_edge: int | None = None) -> int:
    """What decoding `source` and fitting it to DELIVERY_EDGE will take in memory, in bytes,
    from its header alone; raises UnusablePhoto for what `load` would refuse before decoding."""
    kind, image = _open(source)
    width, height = _decoded_size(kind, image, min_long_edge)
    # Resizing works in two passes: the horizontal one makes an image of the new width and the
    # old height (49 MB for 8000 x 8000 -> 2048).
    fit = DELIVERY_EDGE / max(width, height)
    passes = round(width * fit) * height * 3 if fit < 1 else 0
    return _decoded_bytes(kind, image, min_long_edge) + passes


def load(source: Source, min_long_edge: int | None = None) -> Image.Image:
    """Open untrusted bytes as an upright RGB image, or raise UnusablePhoto with the reason.

    With `min_long_edge`, a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps
    its long edge at least that long: a 12 MP photo decodes at 1/2 in a quarter of the time.
    """
    kind, image = _open(source)
    with _refusals(kind):
        width, height = image.size
        if kind == "JPEG" and min_long_edge and max(width, height) > min_long_edge:
            image.draft("RGB", _draft_size(image, min_long_edge))
        if kind == "GIF":
            image.seek(0)
        image.load()
    ImageOps.exif_transpose(image, in_place=True)  # a copy of a 12 MB image saved when upright
    profile = image.info.get("icc_profile")
    pixels: Image.Image = image if image.mode in ("RGB", "CMYK") else image.convert("RGB")
    transform = _to_srgb(profile, pixels.mode) if profile else None
    if transform is not None:
        pixels = ImageCms.applyTransform(pixels, transform) or pixels
    if pixels.mode != "RGB":
        pixels = pixels.convert("RGB")
    pixels.info = {}  # nothing of the file's metadata is carried on (see the module docstring)
    return pixels


_SRGB = ImageCms.createProfile("sRGB")


@functools.lru_cache(maxsize=16)
def _to_srgb(profile: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """A transform from the photo's colour profile to sRGB (phones tag photos Display P3);
    None when it is sRGB already, or unreadable: then the pixels are taken as sRGB, as browsers
    do. Cached: a phone sends the same profile with every photo."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        if mode == "RGB":
            ours, srgb = source.profile, ImageCms.ImageCmsProfile(_SRGB).profile
            if ours.xcolor_space.strip() != "RGB":
                return None
            pairs = ((ours.red_colorant, srgb.red_colorant), (ours.green_colorant, srgb.green_colorant),
                     (ours.blue_colorant, srgb.blue_colorant))
            same = "srgb" in (ours.profile_description or "").lower() and all(
                mine is not None and theirs is not None
                and all(math.isclose(a, b, abs_tol=2e-3) for a, b in zip(mine[0], theirs[0], strict=True))
                for mine, theirs in pairs)
            if same:
                return None
        return ImageCms.buildTransform(source, _SRGB, mode, "RGB",
                                       ImageCms.Intent.RELATIVE_COLORIMETRIC)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def fit_to(image: Image.Image, max_edge: int) -> Image.Image:
    """`image` scaled down to at most `max_edge` (a new image; `image` itself when it fits),
    without the full-size copy that `thumbnail` on a copy would make."""
    width, height = image.size
    if max(width, height) <= max_edge:
        return image
    scale = max_edge / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


@dataclass(frozen=True)
class Prepared:
    photo: Image.Image  # the customer's photo, upright, at most DELIVERY_EDGE
    request_image: bytes  # what the models receive: JPEG, exactly `request_size`, no metadata
    request_size: tuple[int, int]
    request_mime: str = "image/jpeg"


def prepare(data: Source, size_for: Callable[[int, int], tuple[int, int]] | None = None) -> Prepared:
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


MARK_RED = (230, 20, 20)


def draw_marks(image: Image.Image, marks: list[tuple[Box, str]], language: str = "en") -> None:
    """deskmark's own mark, in place: a red ellipse around each box and its label beside it.

    The ellipse passes outside the box's corners, so the damage itself stays clear, and has a
    thin white halo, so it shows on a red or a dark product.
    """
    draw = ImageDraw.Draw(image)
    stroke = _stroke(image)
    for (x0, y0, x1, y1), label in marks:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        pad = stroke * 2 + 0.15 * max(x1 - x0, y1 - y0)
        a, b = (x1 - x0) / 2 * math.sqrt(2) + pad, (y1 - y0) / 2 * math.sqrt(2) + pad
        ellipse = (cx - a, cy - b, cx + a, cy + b)
        halo = max(1, stroke // 3)
        draw.ellipse((ellipse[0] - halo, ellipse[1] - halo, ellipse[2] + halo, ellipse[3] + halo),
                     outline=(255, 255, 255), width=stroke + 2 * halo)
        draw.ellipse(ellipse, outline=MARK_RED, width=stroke)
        draw_label(image, (int(ellipse[0]), int(ellipse[1]), math.ceil(ellipse[2]), math.ceil(ellipse[3])), label,
                   language)


def _stroke(image: Image.Image) -> int:
    return max(3, min(image.size) // 150)


def draw_label(image: Image.Image, around: Box, label: str, language: str = "en") -> None:
    """A mark's label, in place: white on a red box with a white edge, its size set by the
    photo's, centred above `around` (the ring), or below it when there is no room above. In a
    font that writes every one of its characters, shaped (worker.fonts): any script, right to
    left too."""
    if not label:
        return
    draw = ImageDraw.Draw(image)
    stroke = _stroke(image)
    halo = max(1, stroke // 3)
    font = fonts.label_font(label, max(14, min(image.size) // 28), language)
    left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
    tw, th = right - left, bottom - top
    gap = stroke + 6
    cx = (around[0] + around[2]) / 2
    tx = min(max(4, cx - tw / 2), image.width - tw - 8)
    ty = around[1] - th - gap - 6 if around[1] - th - gap - 6 >= 4 else min(
        image.height - th - 8, around[3] + gap)
    draw.rectangle((tx - 5, ty - 4, tx + tw + 5, ty + th + 6), fill=MARK_RED,
                   outline=(255, 255, 255), width=max(1, halo))
    draw.text((tx - left, ty - top), label, fill=(255, 255, 255), font=font)


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
