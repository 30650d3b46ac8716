"""Taking the mark, and only the mark, from an edit model's output, and checking it.

An image edit model redraws the whole photo, the damage too, and circles what it sees with its
own margin, mask or not. So deskmark compares the model's output with the photo it sent, at the
same size, and keeps only the colour the model *added*: pixels that are clearly red in the
output and were not red anywhere near them in the photo, so a red product stays the customer's.
Those strokes are kept near the located damage only, and only where they form a mark around it
(`read_mark`); everywhere else the delivered photo is the customer's own (`paste_strokes`). Of a
located mark only the ring is kept: deskmark writes its label itself (images.draw_label), in
a font it knows covers the words, however the model drew or misspelt its own.

Pure functions over Pillow images, no vendor knowledge. Boxes are (x0, y0, x1, y1) pixels of
the sent image, x1 and y1 exclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from PIL import Image, ImageChops, ImageDraw

from integrations.i18n import N_

__all__ = [
    "Box",
    "Check",
    "Reading",
    "VERDICTS",
    "added_red",
    "check_area",
    "keep_area",
    "read_mark",
    "paste_strokes",
    "strokes_preview",
]

Box = tuple[int, int, int, int]

# How far from a damage box its mark may reach: the circle (models leave margins of 15% to 60%
# of the damage's longer side) is looked for within CHECK_*; the strokes kept are the ones found
# there plus whatever continues them with gaps under RING_GAP (the ring's own soft or broken
# edge). What continues them with gaps under LABEL_GAP (a label the model wrote beside the
# circle) belongs to the mark too, so it is not stray red, but is not kept. Both within KEEP_*.
# Each is: that many times the box's longer side, plus a floor that is a share of the photo's
# shorter side (a chip's label is no smaller than a screen's).
CHECK_REACH, CHECK_FLOOR = 0.7, 0.05
KEEP_REACH, KEEP_FLOOR = 0.8, 0.35
LABEL_GAP = 0.04
RING_GAP = 0.006
SECTORS = 32  # directions around a box in which the ring is looked for
RING_COVERAGE = 0.7  # share of those directions the mark must cover (a label may interrupt it)
RING_INNER = 0.6  # a stroke counts for its direction from this fraction of the way to the box's edge
MAX_FILL = 0.3  # strokes over more of the checked area than this: painted over, not circled
MAX_INNER_FILL = 0.3  # ... or over more of the damage's own middle (its inner half) than this
STRAY_SHARE, STRAY_FLOOR = 0.3, 0.0005  # added red away from every box, of the kept / of the photo
GRID = 160  # the ring is checked on a grid of at most this many cells a side
SOLID = 128  # an added-red value at least this counts as a stroke pixel

# What the note says of a model's mark deskmark did not take (integrations.i18n translates it there).
VERDICTS = {
    "ok": "",
    "missing": N_("the model's mark was missing"),
    "incomplete": N_("the model's mark did not go around the damage"),
    "elsewhere": N_("the model marked another place"),
    "painted": N_("the model painted over the photo instead of circling the damage"),
    "stray": N_("the model also drew away from the damage"),
}

# The two tests of an added stroke, as lookup tables: how much redder than the photo nearby
# (from 24, fully at 120), and how red in itself (from 64, fully at 150). Anti-aliased edges get
# partial values, so the strokes keep their soft edges.
_NEW = [0 if v <= 24 else 255 if v >= 120 else (v - 24) * 255 // 96 for v in range(256)]
_RED = [0 if v <= 64 else 255 if v >= 150 else (v - 64) * 255 // 86 for v in range(256)]
_SOLID = [255 if v >= SOLID else 0 for v in range(256)]


def redness(image: Image.Image) -> Image.Image:
    """R - max(G, B), clipped at 0: how red each pixel is, whatever its brightness."""
    r, g, b = image.convert("RGB").split()
    return ImageChops.subtract(r, ImageChops.lighter(g, b))


def _shifted(image: Image.Image, dx: int, dy: int) -> Image.Image:
    out = Image.new(image.mode, image.size, 0)
    out.paste(image, (dx, dy))
    return out


def _dilate(image: Image.Image, radius: int) -> Image.Image:
    """Each pixel the largest value within `radius` (a square), in 4 x radius cheap passes."""
    rows = image
    for d in range(1, radius + 1):
        rows = ImageChops.lighter(rows, ImageChops.lighter(_shifted(image, d, 0), _shifted(image, -d, 0)))
    out = rows
    for d in range(1, radius + 1):
        out = ImageChops.lighter(out, ImageChops.lighter(_shifted(rows, 0, d), _shifted(rows, 0, -d)))
    return out


def added_red(sent: Image.Image, output: Image.Image) -> Image.Image:
    """How much each pixel of `output` is a red stroke the model added, 0-255 (an L image).

    Red that was already in the photo within 3 pixels does not count: a red product, or its
    edge softened or shifted a little by the model's redraw, is not a stroke.
    """
    out_red = redness(output)
    new = ImageChops.subtract(out_red, _dilate(redness(sent), 3))
    return ImageChops.darker(new.point(_NEW), out_red.point(_RED))


def _grow(box: Box, size: tuple[int, int], reach: float, floor: float) -> Box:
    x0, y0, x1, y1 = box
    pad = int(reach * max(x1 - x0, y1 - y0) + floor * min(size))
    return max(0, x0 - pad), max(0, y0 - pad), min(size[0], x1 + pad), min(size[1], y1 + pad)


def check_area(box: Box, size: tuple[int, int]) -> Box:
    """Where the mark around `box` is looked for (also the edit mask's transparent area)."""
    return _grow(box, size, CHECK_REACH, CHECK_FLOOR)


def keep_area(solid: Image.Image, box: Box, reach: float = LABEL_GAP) -> Box:
    """Where the strokes of the mark around `box` are: those in its check area, grown by what
    continues them with gaps under `reach` of the photo's shorter side (LABEL_GAP: a label's
    letters, its distance from the circle; RING_GAP: the ring alone), never beyond KEEP_* (so a
    mark drawn elsewhere stays apart). `solid`: the stroke pixels."""
    size = solid.size
    area = check_area(box, size)
    found = solid.crop(area).getbbox()
    if found is None:
        return area
    limit = _grow(box, size, KEEP_REACH, KEEP_FLOOR)
    gap = max(3, int(reach * min(size)))
    current = (area[0] + found[0], area[1] + found[1], area[0] + found[2], area[1] + found[3])
    for _ in range(8):
        wider = (max(limit[0], current[0] - gap), max(limit[1], current[1] - gap),
                 min(limit[2], current[2] + gap), min(limit[3], current[3] + gap))
        inside = solid.crop(wider).getbbox()
        assert inside is not None  # `current` holds strokes
        grown = (min(current[0], wider[0] + inside[0]), min(current[1], wider[1] + inside[1]),
                 max(current[2], wider[0] + inside[2]), max(current[3], wider[1] + inside[3]))
        if grown == current:
            break
        current = grown
    edge = 3  # the soft edges of the outermost strokes
    return (max(0, current[0] - edge), max(0, current[1] - edge), min(size[0], current[2] + edge),
            min(size[1], current[3] + edge))


def _count(image: Image.Image) -> int:
    """Stroke pixels in an added-red image."""
    return image.point(_SOLID).histogram()[255]


@dataclass(frozen=True)
class Check:
    """What the strokes around one located box amount to."""

    box: Box
    verdict: str  # a key of VERDICTS: "ok", or why the model's mark cannot be used
    pixels: int  # stroke pixels in the checked area
    coverage: float  # share of the directions around the box that strokes cover

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    @property
    def why(self) -> str:
        return VERDICTS[self.verdict]


def _ring(added: Image.Image, box: Box, size: tuple[int, int]) -> Check:
    area = check_area(box, size)
    crop = added.crop(area)
    pixels = _count(crop)
    x0, y0, x1, y1 = box
    hw, hh = max(1.0, (x1 - x0) / 2), max(1.0, (y1 - y0) / 2)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # Painted over rather than circled: strokes fill the area, or the damage's own middle.
    inner = added.crop((int(cx - hw / 2), int(cy - hh / 2), math.ceil(cx + hw / 2), math.ceil(cy + hh / 2)))
    inner_fill = _count(inner) / max(1, inner.width * inner.height)
    if pixels > MAX_FILL * crop.width * crop.height or inner_fill > MAX_INNER_FILL:
        return Check(box, "painted", pixels, 0.0)
    if pixels < max(40.0, math.pi * (hw + hh)):
        return Check(box, "missing", pixels, 0.0)
    # The ring: in which directions from the box's centre is there a stroke at least RING_INNER
    # of the way to the box's edge? Read on a coarse grid; a stroke survives the averaging.
    step = max(1, math.ceil(max(crop.size) / GRID))
    grid = crop.reduce(step) if step > 1 else crop
    columns = grid.width
    covered: set[int] = set()
    for index, value in enumerate(grid.tobytes()):
        if value < 48:
            continue
        dx = area[0] + (index % columns + 0.5) * step - cx
        dy = area[1] + (index // columns + 0.5) * step - cy
        if max(abs(dx) / hw, abs(dy) / hh) >= RING_INNER:
            covered.add(int((math.atan2(dy, dx) + math.pi) / (2 * math.pi) * SECTORS) % SECTORS)
    # Directions whose ring would lie outside the photo cannot be asked for.
    open_sectors = []
    for k in range(SECTORS):
        angle = (k + 0.5) / SECTORS * 2 * math.pi - math.pi
        cos, sin = math.cos(angle), math.sin(angle)
        reach = 1.0 / max(abs(cos) / hw, abs(sin) / hh) * 1.15 + 4
        if 0 <= cx + cos * reach < size[0] and 0 <= cy + sin * reach < size[1]:
            open_sectors.append(k)
    wanted = open_sectors or list(range(SECTORS))
    coverage = len(covered.intersection(wanted)) / len(wanted)
    return Check(box, "ok" if coverage >= RING_COVERAGE else "incomplete", pixels, round(coverage, 3))


@dataclass
class Reading:
    """The model's strokes as deskmark judged them, at the sent image's size."""

    added: Image.Image  # every red stroke the model added (L)
    strokes: Image.Image  # the ones kept: zero outside the kept areas (L)
    areas: list[Box]  # where the kept strokes are
    checks: list[Check]  # one per located box, in order
    stray: int  # added-red pixels away from every located box
    unlocated: Box | None = None  # no box located: where the model's own mark is, when usable

    @property
    def kept(self) -> bool:
        return bool(self.areas)


def read_mark(sent: Image.Image, output: Image.Image, boxes: list[Box]) -> Reading:
    """Judge the model's strokes around each located box; keep only the verified ones.

    A box's mark is verified when the strokes around it are enough, go around it (most
    directions covered), do not paint it over, and the model drew nothing much far from every
    box. With no box located, the model's strokes are kept when they look like one mark: one
    compact ring, not paint (`Reading.unlocated`).
    """
    added = added_red(sent, output)
    size = added.size
    solid = added.point(_SOLID)
    if not boxes:
        return _read_unlocated(added, solid)
    near = Image.new("L", size, 0)
    draw = ImageDraw.Draw(near)
    for x0, y0, x1, y1 in (keep_area(solid, box) for box in boxes):  # the marks, labels and all
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=255)
    kept_areas = [keep_area(solid, box, RING_GAP) for box in boxes]  # their rings
    stray = solid.histogram()[255] - ImageChops.multiply(solid, near).histogram()[255]
    checks = [_ring(added, box, size) for box in boxes]
    kept = sum(c.pixels for c in checks if c.ok)
    if stray > max(STRAY_SHARE * kept, STRAY_FLOOR * size[0] * size[1]):
        checks = [c if c.verdict == "painted" else
                  replace(c, verdict="stray" if c.ok else "elsewhere") for c in checks]
    strokes = Image.new("L", size, 0)
    areas = []
    for check, area in zip(checks, kept_areas, strict=True):
        if check.ok:
            strokes.paste(added.crop(area), area[:2])
            areas.append(area)
    return Reading(added, strokes, areas, checks, stray)


def _read_unlocated(added: Image.Image, solid: Image.Image) -> Reading:
    size = added.size
    empty = Reading(added, Image.new("L", size, 0), [], [], 0)
    bbox = solid.getbbox()
    pixels = solid.histogram()[255]
    if bbox is None or pixels < STRAY_FLOOR * size[0] * size[1]:
        return empty
    x0, y0, x1, y1 = bbox
    if (x1 - x0) * (y1 - y0) > 0.5 * size[0] * size[1]:
        return empty  # spread over the photo: paint, or marks all over
    # One mark around something: judged like a mark around the middle of its own extent.
    middle = (x0 + (x1 - x0) // 4, y0 + (y1 - y0) // 4, x1 - (x1 - x0) // 4, y1 - (y1 - y0) // 4)
    check = _ring(added, middle, size)
    if not check.ok:
        return empty
    return Reading(added, added.copy(), [bbox], [], 0, unlocated=bbox)


def paste_strokes(photo: Image.Image, output: Image.Image, reading: Reading) -> None:
    """Paint the kept strokes of `output` onto `photo` (any size, same aspect), in place."""
    sx, sy = photo.width / output.width, photo.height / output.height
    for area in reading.areas:
        tight = reading.strokes.crop(area).getbbox()
        if tight is None:
            continue
        left, top = area[0] + tight[0], area[1] + tight[1]
        right, bottom = area[0] + tight[2], area[1] + tight[3]
        x0, y0 = int(left * sx), int(top * sy)
        x1, y1 = min(photo.width, math.ceil(right * sx)), min(photo.height, math.ceil(bottom * sy))
        if x1 <= x0 or y1 <= y0:
            continue
        # The same source rectangle for both, resampled to the photo's pixels in one step.
        source = (x0 / sx, y0 / sy, x1 / sx, y1 / sy)
        patch = output.resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR, box=source)
        alpha = reading.strokes.resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR, box=source)
        photo.paste(patch, (x0, y0), alpha)


def strokes_preview(output: Image.Image, reading: Reading) -> Image.Image:
    """For `deskmark annotate --debug`: the kept strokes as the model drew them, the red it
    added that was not kept in translucent magenta, each located box in yellow (RGBA)."""
    preview = Image.new("RGBA", output.size, (0, 0, 0, 0))
    rejected = ImageChops.subtract(reading.added, reading.strokes).point(lambda v: v * 3 // 5)
    preview.paste((255, 0, 255, 255), (0, 0), rejected)
    preview.paste(output.convert("RGB"), (0, 0), reading.strokes)
    draw = ImageDraw.Draw(preview)
    for check in reading.checks:
        x0, y0, x1, y1 = check.box
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=(255, 220, 0, 255), width=2)
    return preview
