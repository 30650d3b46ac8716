"""Marking a warranty team can trust: locate, masked edit, composite onto the customer's pixels.

The loopback OpenAI here plays a model that alters every pixel (it inverts the picture) and
draws its red ellipse inside the mask's transparent area, so any regenerated pixel that leaks
into the delivered image outside the damage region shows at once.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageOps

from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.photos import DAMAGE_CENTRE, damaged_product
from integrations.config import Settings
from integrations.openai_images import _Box, clean_boxes
from worker.marking import Marker, make_marker
from worker.notes import note_html


def invert_and_circle(image: Image.Image, mask: Image.Image | None) -> Image.Image:
    out = ImageOps.invert(image.convert("RGB"))
    box = None
    if mask is not None:
        box = mask.getchannel("A").point(lambda a: 255 if a == 0 else 0).getbbox()
    box = box or (0, 0, out.width, out.height)
    inset = (box[0] + 6, box[1] + 6, box[2] - 6, box[3] - 6)
    ImageDraw.Draw(out).ellipse(inset, outline=(255, 0, 0), width=10)
    return out


@pytest.fixture
def inverting_openai() -> Iterator[SandboxOpenAI]:
    fake = SandboxOpenAI(transform=invert_and_circle).start()
    yield fake
    fake.stop()


def marker_for(fake: SandboxOpenAI, locate_model: str = "gpt-5.4") -> Marker:
    return make_marker(Settings.from_env({
        "OPENAI_API_KEY": fake.api_key, "OPENAI_BASE_URL": fake.url,
        "DESKMARK_EDIT_MODEL": "gpt-image-2", "DESKMARK_LOCATE_MODEL": locate_model,
    }, dotenv=None))


def sideways_phone_photo_with_gps() -> bytes:
    """A 4000x3000 JPEG whose pixels are stored sideways (EXIF Orientation 6), with GPS."""
    upright = Image.open(io.BytesIO(damaged_product(3000, 4000, fmt="PNG")))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # displayed by rotating 90° clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (52.0, 22.0, 1.0), 3: "E", 4: (4.0, 53.0, 2.0)})
    out = io.BytesIO()
    stored.save(out, format="JPEG", quality=92, exif=exif.tobytes())
    return out.getvalue()


def outside(regions: list[list[int]], size: tuple[int, int]) -> Image.Image:
    """An L mask: 255 where a pixel is outside every region."""
    mask = Image.new("L", size, 255)
    draw = ImageDraw.Draw(mask)
    for x0, y0, x1, y1 in regions:
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=0)
    return mask


def count(mask: Image.Image) -> int:
    """Pixels set (255) in an L mask."""
    return mask.histogram()[255]


def fraction_equal(a: Image.Image, b: Image.Image, where: Image.Image, tolerance: int = 16) -> float:
    """Of the pixels in `where`, the share whose channels all differ by at most `tolerance`."""
    r, g, bl = ImageChops.difference(a, b).split()
    worst = ImageChops.lighter(ImageChops.lighter(r, g), bl)
    close = worst.point(lambda v: 255 if v <= tolerance else 0)
    return count(ImageChops.logical_and(close.convert("1"), where.convert("1")).convert("L")) / count(where)


def test_delivered_photo_is_the_customers_own_outside_the_mark(inverting_openai: SandboxOpenAI) -> None:
    data = sideways_phone_photo_with_gps()
    marked = marker_for(inverting_openai).mark(data, "Cracked screen", "It arrived cracked")

    # What left deskmark was upright and carried no EXIF (no GPS).
    [edit] = inverting_openai.calls
    [locate] = inverting_openai.located
    assert edit["image_sizes"] == [(1152, 1536)] and locate["image_size"] == (1152, 1536)
    assert edit["exif"] == [{}] and locate["exif"] == {}
    assert locate["detail"] == "original" and edit["mask"] is True

    delivered = Image.open(io.BytesIO(marked.image))
    assert delivered.format == "JPEG" and not delivered.getexif()
    # The customer's photo as sent, upright, scaled to what was delivered (a 1/2-scale decode).
    assert delivered.size == (1500, 2000)
    customer = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB").resize(
        delivered.size, Image.Resampling.LANCZOS)
    regions = marked.meta["regions"]
    assert len(regions) == 1 and not marked.meta["whole_image_regenerated"]
    # The region sits on the crack (the photo reached the locator upright).
    x0, y0, x1, y1 = regions[0]
    assert x0 < DAMAGE_CENTRE[0] * 1500 < x1 and y0 < DAMAGE_CENTRE[1] * 2000 < y1
    assert fraction_equal(delivered.convert("RGB"), customer, outside(regions, customer.size)) >= 0.97
    r, g, b = delivered.crop(tuple(regions[0])).convert("RGB").split()
    red = ImageChops.multiply(r.point(lambda v: 255 if v > 200 else 0),
                              ImageChops.multiply(g.point(lambda v: 255 if v < 80 else 0),
                                                  b.point(lambda v: 255 if v < 80 else 0)))
    assert count(red) > 2000  # the model's ellipse is there
    assert marked.meta["labels"] == ["cracked screen"]
    html = note_html("IMG_1.jpg", marked.meta, "dm-1")
    assert "Located by gpt-5.4" in html and "customer's own photo" in html
    assert "regenerated" not in html and "(locate $" in html


def test_no_damage_found_means_an_unmasked_edit_and_the_note_says_so() -> None:
    fake = SandboxOpenAI(locate=lambda image: []).start()
    try:
        marked = marker_for(fake).mark(damaged_product(800, 600), "Broken", "")
    finally:
        fake.stop()
    assert fake.calls[0]["mask"] is False
    assert marked.meta["whole_image_regenerated"] and marked.meta["located"]["boxes"] == []
    html = note_html("x.jpg", marked.meta, "dm-2")
    assert "found no damage to locate" in html and "whole image was regenerated" in html


def test_a_refused_locate_model_still_gives_a_marked_photo(openai_fake: SandboxOpenAI) -> None:
    openai_fake.faults.add("POST", "/responses", 404, {"error": {
        "message": "The model `gpt-5.4` does not exist or you do not have access to it.",
        "type": "invalid_request_error", "param": "model", "code": "model_not_found"}})
    marked = marker_for(openai_fake).mark(damaged_product(800, 600))
    assert marked.meta["whole_image_regenerated"]
    assert "model_not_found" in marked.meta["located"]["problem"]
    assert "could not be located" in note_html("x.jpg", marked.meta, "dm-3")


def test_locating_is_off_with_an_empty_model(openai_fake: SandboxOpenAI) -> None:
    before = len(openai_fake.located)
    marked = marker_for(openai_fake, locate_model="").mark(damaged_product(800, 600))
    assert len(openai_fake.located) == before
    assert marked.meta["located"] is None and marked.meta["whole_image_regenerated"]


def test_a_retry_reuses_the_located_boxes(openai_fake: SandboxOpenAI) -> None:
    remembered: list[dict[str, Any]] = []
    marker = marker_for(openai_fake)
    marker.mark(damaged_product(800, 600), remember=remembered.append)
    before = len(openai_fake.located)
    again = marker.mark(damaged_product(800, 600), located=remembered[0], remember=remembered.append)
    assert len(openai_fake.located) == before and len(remembered) == 1
    assert again.meta["regions"]


def test_locator_boxes_are_validated_and_clipped() -> None:
    raw = [
        _Box(label="crack", x_min=-50, y_min=10, x_max=120, y_max=90),  # clipped at 0
        _Box(label="  dent\n", x_min=700, y_min=500, x_max=650, y_max=450),  # reversed corners
        _Box(label="off the image", x_min=900, y_min=10, x_max=990, y_max=50),
        _Box(label="a point", x_min=10, y_min=10, x_max=11, y_max=11),
        _Box(label="everything", x_min=0, y_min=0, x_max=800, y_max=600),
        _Box(label="nan", x_min=float("nan"), y_min=0, x_max=10, y_max=10),
    ]
    boxes = clean_boxes(raw, (800, 600))
    assert [(b.label, b.box) for b in boxes] == [("crack", (0, 10, 120, 90)),
                                                 ("dent", (650, 450, 700, 500))]


def test_the_local_annotator_needs_no_model_and_says_so() -> None:
    marked = Marker(editor=None).mark(damaged_product(800, 600))
    assert marked.meta["provider"] == "local" and marked.meta["cost_usd"] == 0.0
    assert marked.meta["regions"] and not marked.meta["whole_image_regenerated"]
    assert "no AI model was used" in note_html("x.jpg", marked.meta, "dm-4")
