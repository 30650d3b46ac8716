"""Labels anyone can read: a font that has a glyph for every character of a Japanese, Korean,
Arabic and Hindi label, and raqm's shaping (Arabic joined and right to left, Devanagari's
conjuncts). Runs in CI with the fonts and FriBiDi of deploy/apt-packages.txt installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fontTools.ttLib import TTFont
from PIL import Image, ImageChops, ImageDraw, ImageFont

from worker import fonts, images

LABELS = {"ja": "画面割れ", "ko": "화면 균열", "ar": "شاشة مكسورة", "hi": "टूटी स्क्रीन"}


def trimmed(image: Image.Image) -> Image.Image:
    box = image.getbbox()
    assert box is not None
    return image.crop((box[0], 0, box[2], image.height))


def unlike(a: Image.Image, b: Image.Image) -> int:
    """How much two same-height pictures of text differ (b cut or padded to a's width)."""
    b = b.crop((0, 0, a.width, a.height))
    return sum(ImageChops.difference(a, b).point(lambda v: 1 if v > 100 else 0).histogram()[1:])


def rendered(text: str, font: ImageFont.FreeTypeFont, **options: object) -> Image.Image:
    image = Image.new("L", (900, 160), 0)
    ImageDraw.Draw(image).text((20, 20), text, fill=255, font=font, **options)  # type: ignore[arg-type]
    return image


def pieces(image: Image.Image) -> int:
    """Connected blobs of ink (8-neighbour), on a coarse copy: how many separate shapes."""
    small = image.point(lambda v: 255 if v > 100 else 0)
    width, height = small.size
    pixels = small.load()
    assert pixels is not None
    seen: set[tuple[int, int]] = set()
    count = 0
    for y in range(height):
        for x in range(width):
            if pixels[x, y] and (x, y) not in seen:
                count += 1
                stack = [(x, y)]
                seen.add((x, y))
                while stack:
                    cx, cy = stack.pop()
                    for dx in (-1, 0, 1):
                        for dy in (-1, 0, 1):
                            nx, ny = cx + dx, cy + dy
                            if 0 <= nx < width and 0 <= ny < height and pixels[nx, ny] and (nx, ny) not in seen:
                                seen.add((nx, ny))
                                stack.append((nx, ny))
    return count


@pytest.mark.parametrize(("language", "label"), list(LABELS.items()))
def test_every_character_of_the_label_has_a_glyph_in_the_font_used(language: str, label: str) -> None:
    chosen = fonts.covering(label, language)
    assert chosen is not None, fonts.problems()
    path = next(p for d in fonts.font_dirs() if d.is_dir() for p in sorted(d.rglob(chosen.name)))
    with TTFont(str(path), fontNumber=chosen.index, lazy=True) as font:  # read here, not through deskmark
        cmap = font.getBestCmap()
        missing = [c for c in label if not c.isspace() and ord(c) not in cmap]
        glyphs = [cmap[ord(c)] for c in label if not c.isspace()]
    assert missing == [] and ".notdef" not in glyphs
    # And drawn on a photo: a red label box with white letters in it.
    photo = Image.new("RGB", (1200, 900), (90, 120, 160))
    images.draw_label(photo, (400, 400, 800, 700), label, language)
    box = ImageChops.difference(photo, Image.new("RGB", photo.size, (90, 120, 160))).getbbox()
    assert box is not None and box[3] <= 400  # above the ring
    letters = photo.crop(box).convert("L").point(lambda v: 255 if v > 230 else 0)
    assert letters.histogram()[255] > 200  # white glyphs, not empty boxes


def test_cjk_labels_use_the_languages_own_face() -> None:
    han = "破損"  # written differently in Japan, Korea, mainland China and Taiwan
    faces = [fonts.covering(han, lang) for lang in ("ja", "ko", "zh-Hans", "zh-Hant")]
    assert [face.index if face else None for face in faces] == [0, 1, 2, 3]


def test_arabic_is_shaped_and_right_to_left() -> None:
    assert fonts.raqm_ready(), fonts.problems()
    label = LABELS["ar"]
    font = fonts.label_font(label, 48, "ar")
    assert isinstance(font, ImageFont.FreeTypeFont) and font.layout_engine == ImageFont.Layout.RAQM
    shaped = rendered(label, font)
    # Right to left: the label's first word is drawn at its right end, its last at the left.
    first, last = label.split()[0], label.split()[-1]
    whole = trimmed(shaped)
    for word, end in ((first, "right"), (last, "left")):
        alone = trimmed(rendered(word, font))
        right = whole.crop((whole.width - alone.width, 0, whole.width, whole.height))
        left = whole.crop((0, 0, alone.width, whole.height))
        here, there = (right, left) if end == "right" else (left, right)
        assert unlike(alone, here) < unlike(alone, there) / 2, word
    # Shaped: the letters join. Pillow's basic layout draws each letter apart.
    basic = ImageFont.truetype(font.path, 48, layout_engine=ImageFont.Layout.BASIC)
    assert pieces(shaped) < pieces(rendered(label, basic))


def test_hindi_conjuncts_are_shaped() -> None:
    label = "क्षति"  # क + ् + ष forms the conjunct क्ष
    font = fonts.label_font(label, 48, "hi")
    assert isinstance(font, ImageFont.FreeTypeFont) and font.layout_engine == ImageFont.Layout.RAQM
    basic = ImageFont.truetype(font.path, 48, layout_engine=ImageFont.Layout.BASIC)
    assert ImageChops.difference(rendered(label, font), rendered(label, basic)).getbbox() is not None


def test_without_fonts_check_says_what_to_install(tmp_path: Path) -> None:
    found = subprocess.run([sys.executable, "-c", "from worker import fonts; print('\\n'.join(fonts.problems()))"],
                           capture_output=True, text=True, timeout=60,
                           env={"DESKMARK_FONT_DIRS": str(tmp_path), "PATH": "/usr/bin:/bin",
                                "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert found.returncode == 0, found.stderr
    assert "fonts missing" in found.stdout and "install fonts-noto-cjk fonts-noto-core" in found.stdout
