"""Fonts that can write a label in any of deskmark's languages, and the layout that shapes it.

Pillow's built-in font has Latin glyphs only: a Japanese, Arabic or Hindi label would come out
as empty boxes. deskmark writes its labels with Google's Noto fonts, as Debian packages them
(`fonts-noto-core`, `fonts-noto-cjk`; deploy/apt-packages.txt installs them in the Docker image
and in CI), and picks, for each label, the first font whose character map covers every one of
its characters (fontTools reads the map). Arabic and Devanagari need shaping (joined letters,
right to left, conjuncts): Pillow's raqm layout does it, but its wheel loads FriBiDi at run time,
and a slim container without `libfribidi0` silently falls back to the basic layout, which draws
Arabic disconnected and left to right. `problems()` says what is missing and what to install;
`deskmark check` and the worker's start-up print it.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import ImageFont, features

__all__ = ["FontFile", "FONTS", "label_font", "covering", "problems", "raqm_ready", "font_dirs"]

log = logging.getLogger("deskmark.fonts")


@dataclass(frozen=True)
class FontFile:
    name: str  # the file's name, looked for in the font directories
    package: str  # the Debian package that ships it (deploy/apt-packages.txt)
    index: int = 0  # the face in a collection (.ttc)
    languages: tuple[str, ...] = ()  # the languages this face is the preferred one for


# Bold faces: a label is white on red at the size of a caption, and bold stays legible there.
# In order: the first whose map covers a label's every character writes it, except that a
# CJK face preferred for the label's language goes before the other CJK faces (the same Han
# character is drawn differently in Japan, Korea, mainland China and Taiwan).
FONTS: tuple[FontFile, ...] = (
    FontFile("NotoSans-Bold.ttf", "fonts-noto-core"),  # Latin, Greek, Cyrillic
    FontFile("NotoSansArabic-Bold.ttf", "fonts-noto-core"),
    FontFile("NotoSansDevanagari-Bold.ttf", "fonts-noto-core"),
    FontFile("NotoSansCJK-Bold.ttc", "fonts-noto-cjk", 0, ("ja",)),
    FontFile("NotoSansCJK-Bold.ttc", "fonts-noto-cjk", 1, ("ko",)),
    FontFile("NotoSansCJK-Bold.ttc", "fonts-noto-cjk", 2, ("zh-Hans",)),
    FontFile("NotoSansCJK-Bold.ttc", "fonts-noto-cjk", 3, ("zh-Hant",)),
)
RAQM_PACKAGE = "libfribidi0"  # what raqm loads at run time (Pillow's wheel bundles the rest)


def font_dirs() -> list[Path]:
    """Where fonts are looked for: DESKMARK_FONT_DIRS (colon-separated) when set, else the
    system's and the user's font directories."""
    chosen = [Path(p) for p in os.environ.get("DESKMARK_FONT_DIRS", "").split(":") if p]
    return chosen or [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"),
                      Path.home() / ".local/share/fonts", Path.home() / ".fonts"]


@functools.cache
def _installed() -> dict[str, Path]:
    """Every font file in the font directories by its name, the first directory's first: one
    walk per process, not one per font asked for."""
    wanted = {font.name for font in FONTS}
    found: dict[str, Path] = {}
    for directory in font_dirs():
        if directory.is_dir():
            for path in sorted(directory.rglob("*.tt[fc]")):
                if path.name in wanted:
                    found.setdefault(path.name, path)
    return found


def _path(name: str) -> Path | None:
    return _installed().get(name)


@functools.cache
def _characters(name: str, index: int) -> frozenset[int]:
    """The code points the face has a glyph for (its best Unicode character map)."""
    from fontTools.ttLib import TTFont

    path = _path(name)
    if path is None:
        return frozenset()
    with TTFont(str(path), fontNumber=index, lazy=True) as font:
        cmap = font.getBestCmap() or {}
    return frozenset(cmap)


def covering(text: str, language: str = "en") -> FontFile | None:
    """The font that writes every character of `text` (spaces aside), the language's own CJK
    face first; None when no installed font does."""
    wanted = {ord(c) for c in text if not c.isspace()}
    preferred = sorted(FONTS, key=lambda f: 0 if language in f.languages else 1)
    for font in preferred:
        if _path(font.name) is not None and wanted <= _characters(font.name, font.index):
            return font
    return None


def raqm_ready() -> bool:
    """Pillow's raqm layout is there, FriBiDi included (right to left, joined letters)."""
    return bool(features.check("raqm") and features.version("fribidi"))


def label_font(text: str, size: int, language: str = "en") -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A font of `size` pixels that writes `text`, with raqm layout where it is ready. Without
    an installed font that covers it, Pillow's own (Latin only), and a warning in the log."""
    font = covering(text, language)
    if font is None:
        log.warning("no installed font writes the label %r: install %s (deploy/apt-packages.txt)",
                    text[:40], " and ".join(sorted({f.package for f in FONTS})))
        return ImageFont.load_default(size=size)
    path = _path(font.name)
    assert path is not None
    engine = ImageFont.Layout.RAQM if raqm_ready() else ImageFont.Layout.BASIC
    return _truetype(str(path), font.index, size, engine)


@functools.lru_cache(maxsize=64)
def _truetype(path: str, index: int, size: int, engine: ImageFont.Layout) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size, index=index, layout_engine=engine)


def problems() -> list[str]:
    """What stops deskmark writing a label in some language, and what to install."""
    found: list[str] = []
    missing = sorted({f"{f.name} ({f.package})" for f in FONTS if _path(f.name) is None})
    if missing:
        found.append(f"fonts missing: {', '.join(missing)}: labels in those scripts cannot be "
                     f"written; install {' '.join(sorted({f.package for f in FONTS}))} "
                     "(deploy/apt-packages.txt), or put the files in DESKMARK_FONT_DIRS")
    if not raqm_ready():
        found.append(f"Pillow's raqm layout is not available (FriBiDi missing: install {RAQM_PACKAGE}): "
                     "Arabic labels would be drawn disconnected and left to right")
    return found
