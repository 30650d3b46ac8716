"""The marked photo is evidence: the customer's pixels everywhere, the damage included, except
the strokes of a mark, and a mark on the damage every time something was located.

The loopback OpenAI plays an edit model as GPT image models behave (sandbox.openai.MarkingModel):
it redraws every pixel (brighter, blurred) and circles the damage with its own margin, mask or
not, or misbehaves on purpose. The checks here read the delivered JPEG as a reviewer would: they
do not use deskmark's own stroke code.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

from deskmark.sandbox.openai import MarkingModel, SandboxOpenAI
from deskmark.sandbox.photos import damage_box, damaged_product, product_box
from integrations.config import Settings
from integrations.openai_images import _Box, clean_boxes
from worker.marking import EditPlan, Marked, Marker, make_marker
from worker.notes import delivered_name, note_html

TOLERANCE = 16  # per channel: JPEG noise, not a redraw (the stand-in moves every pixel by more)


def marker_for(fake: SandboxOpenAI, locate_model: str = "gpt-5.4") -> Marker:
    return make_marker(Settings.from_env({
        "OPENAI_API_KEY": fake.api_key, "OPENAI_BASE_URL": fake.url,
        "DESKMARK_EDIT_MODEL": "gpt-image-2", "DESKMARK_LOCATE_MODEL": locate_model,
    }, dotenv=None))


def locating(damage: str, label: str = "crack") -> Callable[[Image.Image], list[dict[str, Any]]]:
    """A locator stand-in that finds the sample photo's `damage` where it is."""
    def locate(image: Image.Image) -> list[dict[str, Any]]:
        x0, y0, x1, y1 = damage_box(damage, *image.size)
        return [{"label": label, "x_min": x0, "y_min": y0, "x_max": x1, "y_max": y1}]
    return locate


@pytest.fixture
def model() -> Iterator[Callable[..., tuple[SandboxOpenAI, MarkingModel]]]:
    servers: list[SandboxOpenAI] = []

    def start(damage: str = "star", located: bool = True, **behaviour: Any
              ) -> tuple[SandboxOpenAI, MarkingModel]:
        stand_in = MarkingModel(damage=damage, **behaviour)
        fake = SandboxOpenAI(transform=stand_in,
                             locate=locating(damage) if located else lambda image: []).start()
        servers.append(fake)
        return fake, stand_in

    yield start
    for fake in servers:
        fake.stop()


# --- reading the delivered photo, independently of deskmark's code --------------------------------
def redness(image: Image.Image) -> Image.Image:
    r, g, b = image.convert("RGB").split()
    return ImageChops.subtract(r, ImageChops.lighter(g, b))


def strokes_seen(delivered: Image.Image, customer: Image.Image) -> Image.Image:
    """An L mask of the mark's strokes as a reviewer sees them: clearly red in the delivered
    photo and not red in the customer's, grown by 2 px for their soft edges (and a white halo)."""
    red = redness(delivered).point(lambda v: 255 if v >= 60 else 0)
    was_red = redness(customer).point(lambda v: 255 if v >= 60 else 0)
    return ImageChops.subtract(red, was_red).filter(ImageFilter.MaxFilter(5))


def count(mask: Image.Image) -> int:
    return mask.convert("L").point(lambda v: 255 if v >= 128 else 0).histogram()[255]


def share_equal(delivered: Image.Image, customer: Image.Image, where: Image.Image) -> float:
    """Of the pixels set in `where`, the share equal to the customer's (within TOLERANCE)."""
    r, g, b = ImageChops.difference(delivered.convert("RGB"), customer).split()
    worst = ImageChops.lighter(ImageChops.lighter(r, g), b)
    equal = worst.point(lambda v: 255 if v <= TOLERANCE else 0)
    return count(ImageChops.multiply(equal, where)) / max(1, count(where))


def outside(mask: Image.Image) -> Image.Image:
    return ImageChops.invert(mask)


def only(box: tuple[float, ...], size: tuple[int, int], minus: Image.Image) -> Image.Image:
    """An L mask of `box`, without the pixels set in `minus`."""
    area = Image.new("L", size, 0)
    left, top, right, bottom = (int(v) for v in box)
    area.paste(255, (left, top, right, bottom))
    return ImageChops.subtract(area, minus)


def open_pair(marked: Marked, photo: bytes) -> tuple[Image.Image, Image.Image]:
    delivered = Image.open(io.BytesIO(marked.image)).convert("RGB")
    customer = ImageOps.exif_transpose(Image.open(io.BytesIO(photo))).convert("RGB")
    if customer.size != delivered.size:
        customer = customer.resize(delivered.size, Image.Resampling.LANCZOS)
    return delivered, customer


def ring_around(mask: Image.Image, box: tuple[float, ...], directions: int = 16) -> float:
    """Of the directions from `box`'s centre that stay in the photo, the share in which `mask`
    has a stroke from 2/3 of the way to the box's edge out to 1.5 times as far plus 40% of the
    box's longer side (a circle around a thin crack is wider than the crack)."""
    x0, y0, x1, y1 = box
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    pixels = mask.load()
    assert pixels is not None
    hits = possible = 0
    for k in range(directions):
        angle = 2 * math.pi * k / directions
        cos, sin = math.cos(angle), math.sin(angle)
        edge = 1 / max(abs(cos) / max(hw, 1), abs(sin) / max(hh, 1))
        near, far = edge * 2 / 3, edge * 1.5 + 0.8 * max(hw, hh)
        points = [(cx + cos * (near + (far - near) * t / 60), cy + sin * (near + (far - near) * t / 60))
                  for t in range(61)]
        points = [(x, y) for x, y in points if 0 <= x < mask.width and 0 <= y < mask.height]
        if len(points) < 10:
            continue
        possible += 1
        hits += any(pixels[int(x), int(y)] >= 128 for x, y in points)  # type: ignore[operator]
    return hits / max(1, possible)


def label_block(delivered: Image.Image, customer: Image.Image) -> tuple[int, int, int, int] | None:
    """Where deskmark's label is: white text on a filled red box, a red block thicker than any
    stroke (found by its core, the box shrunk by 5 px; then the red around that core)."""
    red = redness(delivered).point(lambda v: 255 if v >= 120 else 0)
    new = ImageChops.subtract(red, redness(customer).point(lambda v: 255 if v >= 60 else 0))
    box = new.filter(ImageFilter.MinFilter(11)).getbbox()
    while box is not None:  # grow it over the red that touches it (the box around the text)
        wider = (max(0, box[0] - 6), max(0, box[1] - 6), box[2] + 6, box[3] + 6)
        inside = new.crop(wider).getbbox()
        assert inside is not None
        grown = (wider[0] + inside[0], wider[1] + inside[1], wider[0] + inside[2], wider[1] + inside[3])
        if grown == box:
            break
        box = grown
    return box


def label_box_seen(delivered: Image.Image, customer: Image.Image) -> bool:
    return label_block(delivered, customer) is not None


def ellipse_band(ellipse: tuple[float, ...], size: tuple[int, int], width: int) -> Image.Image:
    band = Image.new("L", size, 0)
    ImageDraw.Draw(band).ellipse([v - width / 2 if i < 2 else v + width / 2 for i, v in enumerate(ellipse)],
                                 outline=255, width=width)
    return band


def scaled(box: tuple[float, ...], source: tuple[int, int], target: tuple[int, int]) -> tuple[float, ...]:
    sx, sy = target[0] / source[0], target[1] / source[1]
    return box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy


# --- the model's mark, verified ---------------------------------------------------------------------
@pytest.mark.parametrize("margin", [0.15, 0.6])
@pytest.mark.parametrize("damage", ["tall", "wide", "small"])
def test_the_models_circle_is_kept_and_every_other_pixel_is_the_customers(
        model: Callable[..., tuple[SandboxOpenAI, MarkingModel]], damage: str, margin: float) -> None:
    fake, stand_in = model(damage, margin=margin)
    photo = damaged_product(1600, 1200, damage=damage)
    marked = marker_for(fake).mark(photo, "Cracked", "It arrived like this")
    delivered, customer = open_pair(marked, photo)
    strokes = strokes_seen(delivered, customer)

    # The model's own circle is there, where it drew it (scaled to the delivered photo)...
    [ellipse] = stand_in.drawn
    [request_size] = fake.calls[0]["image_sizes"]
    ex0, ey0, ex1, ey1 = scaled(ellipse, request_size, delivered.size)
    on_circle = [((ex0 + ex1) / 2 + (ex1 - ex0) / 2 * math.cos(a), (ey0 + ey1) / 2 + (ey1 - ey0) / 2 * math.sin(a))
                 for a in (2 * math.pi * k / 64 for k in range(64))]
    on_circle = [(x, y) for x, y in on_circle if 2 <= x < delivered.width - 2 and 2 <= y < delivered.height - 2]
    seen = strokes.load()
    assert seen is not None
    assert sum(seen[int(x), int(y)] >= 128 for x, y in on_circle) >= 0.9 * len(on_circle)  # type: ignore[operator]
    # ... with deskmark's label beside it, and no other stroke: no ring of deskmark's own, and
    # none of the model's text (it was asked for none; deskmark writes the label).
    block = label_block(delivered, customer)
    assert block is not None
    dx0, dy0, dx1, dy1 = damage_box(damage, *delivered.size)
    assert block[3] <= dy0 or block[1] >= dy1 or block[2] <= dx0 or block[0] >= dx1  # not over the damage
    assert "Write no text" in fake.calls[0]["prompt"]
    label = Image.new("L", delivered.size, 0)
    label.paste(255, (block[0] - 12, block[1] - 12, block[2] + 12, block[3] + 12))
    extra = ImageChops.subtract(ImageChops.subtract(strokes, ellipse_band((ex0, ey0, ex1, ey1), delivered.size, 24)),
                                label)
    assert count(extra) < 0.01 * count(strokes), count(extra)
    # ... and every other pixel, the damage's own included, is the customer's.
    assert share_equal(delivered, customer, outside(strokes)) >= 0.97
    damage_area = only(damage_box(damage, *delivered.size), delivered.size, strokes)
    assert count(damage_area) > 0 and share_equal(delivered, customer, damage_area) >= 0.97

    [item] = marked.meta["marks"]
    assert item["drawn_by"] == "model" and item["why"] == ""
    html = note_html("IMG_1.jpg", marked.meta, "dm-1")
    assert "crack (circled in red by gpt-image-2)" in html and "Located by gpt-5.4" in html
    assert "the damage included, this is the customer's own photo" in html
    assert delivered_name("IMG_1.jpg", marked.meta) == "IMG_1-marked.jpg"


def test_a_red_product_does_not_become_strokes(
        model: Callable[..., tuple[SandboxOpenAI, MarkingModel]]) -> None:
    fake, _ = model("star", margin=0.3)
    photo = damaged_product(1600, 1200, body=(196, 28, 34))
    marked = marker_for(fake).mark(photo)
    delivered, customer = open_pair(marked, photo)
    strokes = strokes_seen(delivered, customer)
    # The red body was redrawn brighter and blurred by the model; none of that was taken.
    body = only(product_box(*delivered.size), delivered.size, strokes)
    assert share_equal(delivered, customer, body) >= 0.97
    assert share_equal(delivered, customer, outside(strokes)) >= 0.97
    assert marked.meta["marks"][0]["drawn_by"] == "model"


# --- an unusable model mark: deskmark draws its own ---------------------------------------------
@pytest.mark.parametrize(("behaviour", "why"), [
    ("nothing", "the model's mark was missing"),
    ("elsewhere", "the model"),  # "did not go around the damage", or "marked another place"
    ("paint", "the model painted over the photo instead of circling the damage"),
    ("partial", "the model's mark did not go around the damage"),
])
def test_an_unusable_model_mark_is_replaced_by_deskmarks_own_circle_and_label(
        model: Callable[..., tuple[SandboxOpenAI, MarkingModel]], behaviour: str, why: str) -> None:
    fake, _ = model("star", mode=behaviour)
    fake.locate = locating("star", "cracked screen")
    photo = damaged_product(1600, 1200)
    marked = marker_for(fake).mark(photo)
    delivered, customer = open_pair(marked, photo)
    strokes = strokes_seen(delivered, customer)

    box = damage_box("star", *delivered.size)
    assert ring_around(strokes, box) >= 0.9  # a circle all around the located damage
    assert label_box_seen(delivered, customer)  # and its label, white on red
    # None of the model's output was taken: not its paint, not its stray circle.
    assert share_equal(delivered, customer, outside(strokes)) >= 0.99
    damage_area = only(box, delivered.size, strokes)
    assert share_equal(delivered, customer, damage_area) >= 0.99

    [item] = marked.meta["marks"]
    assert item["drawn_by"] == "deskmark" and (item["why"] or "").startswith(why)
    html = note_html("IMG_2.jpg", marked.meta, "dm-2")
    assert f"cracked screen (circled by deskmark: {item['why']})" in html
    assert "circled in red by" not in html


def test_a_verified_and_a_failed_mark_on_one_photo_are_each_told(
        model: Callable[..., tuple[SandboxOpenAI, MarkingModel]]) -> None:
    fake, _ = model("star", margin=0.2)
    star = locating("star", "cracked screen")
    scratch = locating("wide", "scratch")
    fake.locate = lambda image: star(image) + scratch(image)  # the model circles only the star
    photo = damaged_product(1600, 1200)
    marked = marker_for(fake).mark(photo)
    delivered, customer = open_pair(marked, photo)
    drawn = [(m["label"], m["drawn_by"]) for m in marked.meta["marks"]]
    assert drawn == [("cracked screen", "model"), ("scratch", "deskmark")]
    assert ring_around(strokes_seen(delivered, customer), damage_box("wide", *delivered.size)) >= 0.9
    html = note_html("x.jpg", marked.meta, "dm-3")
    assert "cracked screen (circled in red by gpt-image-2); scratch (circled by deskmark:" in html


# --- nothing located ------------------------------------------------------------------------------
def test_nothing_located_and_no_model_mark_gives_an_unmarked_photo_and_says_so(
        model: Callable[..., tuple[SandboxOpenAI, MarkingModel]]) -> None:
    fake, _ = model("star", located=False, mode="nothing")
    photo = damaged_product(1600, 1200)
    marked = marker_for(fake).mark(photo, "Broken", "")
    assert fake.calls[0]["mask"] is False  # nothing to point the model at
    delivered, customer = open_pair(marked, photo)
    everything = Image.new("L", delivered.size, 255)
    assert share_equal(delivered, customer, everything) >= 0.99  # no circle was invented
    assert marked.meta["marked"] is False and marked.meta["marks"] == []
    html = note_html("IMG_3.jpg", marked.meta, "dm-4")
    assert "could not mark the damage" in html and "This photo is not marked" in html
    assert "gpt-5.4 found no damage to locate" in html and "deskmark drew none" in html
    assert delivered_name("IMG_3.jpg", marked.meta) == "IMG_3-unmarked.jpg"


def test_nothing_located_but_a_clean_model_circle_is_kept_and_called_unchecked(
        model: Callable[..., tuple[SandboxOpenAI, MarkingModel]]) -> None:
    fake, stand_in = model("star", located=False, margin=0.25)
    photo = damaged_product(1600, 1200)
    marked = marker_for(fake).mark(photo)
    delivered, customer = open_pair(marked, photo)
    strokes = strokes_seen(delivered, customer)
    assert ring_around(strokes, damage_box("star", *delivered.size)) >= 0.9  # the model's circle
    assert share_equal(delivered, customer, outside(strokes)) >= 0.97
    assert marked.meta["unlocated_mark"] is True and marked.meta["marked"] is True
    html = note_html("x.jpg", marked.meta, "dm-5")
    assert "The red mark is gpt-image-2's own" in html and "could not check it" in html


def test_nothing_located_and_paint_from_the_model_is_not_kept(
        model: Callable[..., tuple[SandboxOpenAI, MarkingModel]]) -> None:
    fake, _ = model("star", located=False, mode="paint")
    photo = damaged_product(1600, 1200)
    marked = marker_for(fake).mark(photo)
    delivered, customer = open_pair(marked, photo)
    assert share_equal(delivered, customer, Image.new("L", delivered.size, 255)) >= 0.99
    assert marked.meta["marked"] is False


def test_a_refused_locate_model_is_named_in_the_note(openai_fake: SandboxOpenAI) -> None:
    openai_fake.faults.add("POST", "/responses", 404, {"error": {
        "message": "The model `gpt-5.4` does not exist or you do not have access to it.",
        "type": "invalid_request_error", "param": "model", "code": "model_not_found"}})
    marked = marker_for(openai_fake).mark(damaged_product(800, 600))
    located = marked.meta["located"]
    assert located is not None and "model_not_found" in located["problem"]
    assert marked.meta["marks"] == [] and marked.meta["unlocated_mark"]  # the stand-in circled it
    assert "locating failed: the configured model is not available" in note_html("x.jpg", marked.meta, "dm-6")


def test_locating_is_off_with_an_empty_model(openai_fake: SandboxOpenAI) -> None:
    before = len(openai_fake.located)
    marked = marker_for(openai_fake, locate_model="").mark(damaged_product(800, 600))
    assert len(openai_fake.located) == before
    assert marked.meta["located"] is None and marked.meta["marks"] == []
    assert "locating is off" in note_html("x.jpg", marked.meta, "dm-7")


# --- upright, located on what was sent, retried without paying twice ------------------------------
def sideways_phone_photo() -> bytes:
    """A 4000x3000 JPEG whose pixels are stored sideways (EXIF Orientation 6)."""
    upright = Image.open(io.BytesIO(damaged_product(3000, 4000, fmt="PNG")))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # displayed by rotating 90° clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    stored.save(out, format="JPEG", quality=92, exif=exif.tobytes())
    return out.getvalue()


def test_a_sideways_phone_photo_is_located_and_marked_upright(openai_fake: SandboxOpenAI) -> None:
    data = sideways_phone_photo()
    calls, located = len(openai_fake.calls), len(openai_fake.located)
    marked = marker_for(openai_fake).mark(data, "Cracked screen", "It arrived cracked")
    [edit] = openai_fake.calls[calls:]
    [locate] = openai_fake.located[located:]
    assert edit["image_sizes"] == [(768, 1024)] and locate["image_size"] == (768, 1024)
    assert locate["detail"] == "original" and edit["mask"] is True
    delivered, customer = open_pair(marked, data)
    assert delivered.size == (1500, 2000)  # a 1/2-scale decode, upright
    [region] = marked.meta["regions"]
    x0, y0, x1, y1 = region
    bx0, by0, bx1, by1 = damage_box("star", 1500, 2000)
    assert abs(x0 - bx0) < 4 and abs(y1 - by1) < 4  # the located box, on the upright photo
    strokes = strokes_seen(delivered, customer)
    assert ring_around(strokes, (bx0, by0, bx1, by1)) >= 0.9
    assert share_equal(delivered, customer, outside(strokes)) >= 0.97
    assert marked.meta["marks"][0]["drawn_by"] == "model"
    assert "(locate $" in note_html("IMG_1.jpg", marked.meta, "dm-8")


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
    assert marked.meta["regions"] and marked.meta["marked"]
    assert "no AI model was used" in note_html("x.jpg", marked.meta, "dm-9")


def test_the_two_halves_make_the_photo_a_sync_mark_makes(openai_fake: SandboxOpenAI) -> None:
    """Marker.ask (up to the edit request) and Marker.answer (from the edit's answer), as a
    batch will call them apart, give what Marker.mark gives with the edit call between."""
    marker = marker_for(openai_fake)
    photo = damaged_product(800, 600, seed=12)
    edits_before = len(openai_fake.calls)
    plan = marker.ask(photo, "Cracked case", "It came cracked.")
    assert isinstance(plan, EditPlan)
    assert len(openai_fake.calls) == edits_before  # the first half asks for no edit
    assert plan.found is not None and plan.found.boxes and plan.request.mask is not None
    assert "Cracked case" in plan.request.prompt and plan.located_cost > 0
    assert marker.editor is not None
    result = marker.editor.edit(plan.request)
    halves = marker.answer(plan, photo, result, 1.0)
    whole = marker.mark(photo, "Cracked case", "It came cracked.")
    assert halves.image == whole.image
    assert halves.meta["marks"] == whole.meta["marks"] and halves.meta["marks"]
    assert halves.meta["result_key"] == whole.meta["result_key"] == plan.key
