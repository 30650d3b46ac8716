"""Generated sample photos: a product with visible damage, for the demo, the tests and benches.

The damage comes in shapes that stress marking differently: a star of cracks (the demo's), a
tall thin crack, a wide scratch and a small chip. `damage_box` says where each one is, so a
stand-in model can circle it and a test can check what was delivered there.
"""

from __future__ import annotations

import io
import math
import random
from typing import Any

from PIL import Image, ImageDraw, ImageFilter

__all__ = ["damaged_product", "damage_box", "product_box", "generated_photo", "camera_photo", "scene",
           "DAMAGE_CENTRE", "DAMAGES"]

# Where the star of cracks is, as fractions of width and height.
DAMAGE_CENTRE = (0.62, 0.40)
# The other shapes, as fractions (x0, y0, x1, y1) of width and height.
_BOXES = {
    "tall": (0.515, 0.20, 0.545, 0.78),
    "wide": (0.36, 0.62, 0.72, 0.645),
    "small": (0.655, 0.27, 0.675, 0.297),
}
DAMAGES = ("star", *_BOXES)
PRODUCT = (0.30, 0.12, 0.78, 0.88)
CRACK = (235, 240, 250)


def damage_box(damage: str, width: int, height: int) -> tuple[float, float, float, float]:
    """Where `damage` is on a width x height photo, in pixels (x0, y0, x1, y1)."""
    if damage == "star":
        cx, cy, r = DAMAGE_CENTRE[0] * width, DAMAGE_CENTRE[1] * height, 0.14 * min(width, height)
        return cx - r, cy - r, cx + r, cy + r
    x0, y0, x1, y1 = _BOXES[damage]
    return x0 * width, y0 * height, x1 * width, y1 * height


def product_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The product's body, in pixels."""
    return (int(width * PRODUCT[0]), int(height * PRODUCT[1]), int(width * PRODUCT[2]),
            int(height * PRODUCT[3]))


def _jagged(draw: ImageDraw.ImageDraw, rng: random.Random, start: tuple[float, float],
            end: tuple[float, float], wobble: float, width: int) -> None:
    steps = 24
    points = []
    for i in range(steps + 1):
        t = i / steps
        x = start[0] + (end[0] - start[0]) * t
        y = start[1] + (end[1] - start[1]) * t
        if 0 < i < steps:
            # Across the line, within `wobble`: the crack stays inside its box.
            dx, dy = end[1] - start[1], start[0] - end[0]
            norm = math.hypot(dx, dy) or 1.0
            offset = rng.uniform(-wobble, wobble)
            x, y = x + dx / norm * offset, y + dy / norm * offset
        points.append((x, y))
    draw.line(points, fill=CRACK, width=width, joint="curve")


def _smooth_field(rng: random.Random, size: tuple[int, int], cells: tuple[int, int],
                  base: tuple[int, int, int], spread: int) -> Image.Image:
    """Light and shade that vary smoothly over `size`: a few random cells around `base` (lighter
    or darker by up to `spread`, a little tinted), scaled up."""
    small = Image.new("RGB", cells)
    cell = []
    for _ in range(cells[0] * cells[1]):
        light = rng.randint(-spread, spread)
        cell.append(tuple(max(0, min(235, c + light + rng.randint(-12, 12))) for c in base))
    small.putdata(cell)
    return small.resize(size, Image.Resampling.BICUBIC)


def damaged_product(width: int = 1600, height: int = 1200, seed: int = 7,
                    fmt: str = "JPEG", exif: bytes | None = None, damage: str = "star",
                    body: tuple[int, int, int] = (35, 38, 44),
                    screen: tuple[int, int, int] = (62, 92, 140)) -> bytes:
    """A phone-like product on a table, its screen damaged (see `damage_box`)."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):  # a soft wall-to-table gradient
        shade = int(200 - 60 * y / height)
        draw.line([(0, y), (width, y)], fill=(shade, shade - 8, shade - 20))
    # Each seed's own room and wallpaper, smooth (no edges to compete with the cracks): no two
    # seeds' photos are the same picture, as no two customers' are (worker.dupes sees them apart).
    look = random.Random(f"look {seed}")
    image = Image.blend(image, _smooth_field(look, (width, height), (9, 8), (150, 140, 125), 70), 0.8)
    draw = ImageDraw.Draw(image)
    outline = product_box(width, height)
    draw.rounded_rectangle(outline, radius=width // 30, fill=body)
    inset = width // 60
    glass = (outline[0] + inset, outline[1] + inset, outline[2] - inset, outline[3] - inset)
    shape = Image.new("L", (width, height), 0)
    ImageDraw.Draw(shape).rounded_rectangle(glass, radius=width // 60, fill=255)
    wallpaper = _smooth_field(look, (width, height), (5, 8), screen, 45)
    image.paste(wallpaper, (0, 0), shape)
    draw = ImageDraw.Draw(image)
    line = max(2, width // 500)
    if damage == "star":
        cx, cy = int(width * DAMAGE_CENTRE[0]), int(height * DAMAGE_CENTRE[1])
        reach = min(width, height) * 0.12
        for _ in range(14):  # a star of jagged cracks
            angle = rng.uniform(0, 2 * math.pi)
            px, py = float(cx), float(cy)
            for _ in range(9):
                angle += rng.uniform(-0.6, 0.6)
                step = reach / 9 * rng.uniform(0.6, 1.4)
                nx, ny = px + math.cos(angle) * step, py + math.sin(angle) * step
                draw.line([(px, py), (nx, ny)], fill=CRACK, width=line)
                px, py = nx, ny
        draw.ellipse((cx - 10, cy - 10, cx + 10, cy + 10), fill=(230, 235, 245))
    else:
        x0, y0, x1, y1 = damage_box(damage, width, height)
        if damage == "small":  # a chip: a pale, ragged spot
            points = [((x0 + x1) / 2 + math.cos(a) * (x1 - x0) / 2 * rng.uniform(0.7, 1.0),
                       (y0 + y1) / 2 + math.sin(a) * (y1 - y0) / 2 * rng.uniform(0.7, 1.0))
                      for a in (i * math.pi / 6 for i in range(12))]
            draw.polygon(points, fill=CRACK)
        elif damage == "tall":
            _jagged(draw, rng, ((x0 + x1) / 2, y0 + line), ((x0 + x1) / 2, y1 - line),
                    (x1 - x0) / 2 - line, line)
        else:
            _jagged(draw, rng, (x0 + line, (y0 + y1) / 2), (x1 - line, (y0 + y1) / 2),
                    (y1 - y0) / 2 - line, line)
    out = io.BytesIO()
    options: dict[str, Any] = {"quality": 88} if fmt == "JPEG" else {}
    if exif is not None:
        options["exif"] = exif
    image.save(out, format=fmt, **options)
    return out.getvalue()


def generated_photo(tool: str = "DALL·E 3", seed: int = 7,
                    source_type: str = "trainedAlgorithmicMedia") -> bytes:
    """A damage photo that says, in its own content credentials, that a generative model made
    it (`c2pa.created` with the IPTC source type), as images from OpenAI, Adobe Firefly or
    Google do: the refund-fraud case deskmark flags."""
    import json

    import c2pa

    from worker.credentials import IPTC, throwaway_keys

    manifest = {
        "claim_generator_info": [{"name": tool}], "title": "image.jpg", "format": "image/jpeg",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [
            {"action": "c2pa.created", "softwareAgent": {"name": tool},
             "digitalSourceType": IPTC + source_type}]}}],
    }
    out = io.BytesIO()
    with c2pa.Builder(json.dumps(manifest)) as builder, \
            throwaway_keys(name=f"{tool} signer").signer() as signer:
        builder.sign(signer, "image/jpeg", io.BytesIO(damaged_product(seed=seed)), out)
    return out.getvalue()


def camera_photo(make: str = "Apple", model: str = "iPhone 15 Pro", taken: str = "2026:11:25 14:03:11",
                 seed: int = 7) -> bytes:
    """A damage photo with the EXIF a phone camera writes: make, model and when it was taken."""
    image = Image.open(io.BytesIO(damaged_product(seed=seed)))
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = make, model
    exif.get_ifd(0x8769)[0x9003] = taken
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


def scene(seed: int, width: int = 1600, height: int = 1200) -> bytes:
    """A photo of some other scene: a lit room or a table top, furniture and objects of random
    shapes, colours and places, and sensor noise. Twenty seeds, twenty different pictures (for
    the duplicate check's false positives)."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    top = tuple(rng.randint(40, 230) for _ in range(3))
    bottom = tuple(rng.randint(20, 200) for _ in range(3))
    horizon = rng.uniform(0.3, 0.7) * height
    for y in range(height):
        mix = min(1.0, y / horizon) if y < horizon else 1.0
        colour = tuple(int(a + (b - a) * mix) for a, b in zip(top, bottom, strict=True))
        draw.line([(0, y), (width, y)], fill=colour)
    for _ in range(rng.randint(4, 12)):
        x0, y0 = rng.uniform(-0.2, 0.9) * width, rng.uniform(-0.2, 0.9) * height
        x1, y1 = x0 + rng.uniform(0.1, 0.6) * width, y0 + rng.uniform(0.1, 0.6) * height
        fill = tuple(rng.randint(0, 255) for _ in range(3))
        shape = rng.choice((draw.rectangle, draw.ellipse))
        shape([x0, y0, x1, y1], fill=fill)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(1, 4)))
    noise = Image.effect_noise((width, height), 25).convert("RGB")
    image = Image.blend(image, noise, 0.08)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue()


def _signed_by_someone(image: bytes, assertions: list[dict[str, Any]], tool: str = "CameraApp") -> bytes:
    """`image` with content credentials another tool wrote (its own throwaway signer)."""
    import json

    import c2pa

    from worker.credentials import IPTC, context, throwaway_keys

    manifest = {"claim_generator_info": [{"name": tool}], "title": "IMG_0001.jpg",
                "format": "image/jpeg", "assertions": [
                    {"label": "c2pa.actions", "data": {"actions": [
                        {"action": "c2pa.created", "digitalSourceType": IPTC + "digitalCapture"}]}},
                    *assertions]}
    out = io.BytesIO()
    with c2pa.Builder(json.dumps(manifest), context()) as builder, \
            throwaway_keys(name=f"{tool} signer").signer() as signer:
        builder.sign(signer, "image/jpeg", io.BytesIO(image), out)
    return out.getvalue()


def inflated_manifest_photo(seed: int = 7) -> bytes:
    """A 9 KB signed JPEG one of whose manifest's CBOR headers declares a 5 GiB text string
    (the same file size: a one-byte header and eight bytes of its string become a nine-byte
    header). Read in-process, c2pa allocated what it declares: 5.3 GB of RSS and 17 s."""
    import struct

    signed = _signed_by_someone(damaged_product(200, 150, seed=seed),
                                [{"label": "org.example.note", "data": {"note": "abcdefgh"}}])
    at = signed.index(b"\x68abcdefgh")  # CBOR: a text string of 8 bytes
    return signed[:at] + b"\x7b" + struct.pack(">Q", 5 * 2**30) + signed[at + 9:]


def _with_app1(jpeg: bytes, payload: bytes) -> bytes:
    """`jpeg` with one more APP1 segment (XMP) right after its start of image."""
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:2] + segment + jpeg[2:]


def remote_manifest_photo(url: str, seed: int = 7) -> bytes:
    """A JPEG whose XMP names a remote manifest (`dcterms:provenance`), which c2pa fetches by
    default: a request to anywhere, sent by whoever reads the photo."""
    xmp = (b"http://ns.adobe.com/xap/1.0/\x00"
           b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
           b'22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:dcterms="http://purl.org/dc/'
           b'terms/" dcterms:provenance="' + url.encode() + b'"/></rdf:RDF></x:xmpmeta>')
    return _with_app1(damaged_product(seed=seed), xmp)


def located_owner_photo(latitude: str, longitude: str, owner: str, seed: int = 7) -> bytes:
    """A damage photo whose own content credentials carry where it was taken (`stds.exif` GPS)
    and who owns it (a CreativeWork author with an address), as camera apps write them."""
    return _signed_by_someone(damaged_product(seed=seed), [
        {"label": "stds.exif", "data": {
            "@context": {"exif": "http://ns.adobe.com/exif/1.0/"},
            "exif:GPSLatitude": latitude, "exif:GPSLongitude": longitude}},
        {"label": "stds.schema-org.CreativeWork", "data": {
            "@context": "https://schema.org", "@type": "CreativeWork",
            "author": [{"@type": "Person", "name": owner}]}},
    ])
