"""Makes docs/marking.png, the row of three in docs/marking.md: the customer's photo, what the
edit model answered, and what deskmark delivers; and docs/marked-photo.jpg, the README's
delivered photo. The model is the tests' stand-in (sandbox.openai.
MarkingModel): it redraws every pixel, brighter and blurred, and circles the crack with a
generous margin, past the box the locator found; asked for the ring only, it writes no label,
and deskmark writes its own beside the ring.

    python docs/marking_figure.py
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deskmark.sandbox.openai import MarkingModel  # noqa: E402
from deskmark.sandbox.photos import damage_box, damaged_product  # noqa: E402
from integrations.openai_images import DamageBox, Located  # noqa: E402
from worker import images  # noqa: E402
from worker.marking import RING_PROMPT, _take_mark  # noqa: E402

PANEL = 400


def main() -> int:
    photo = damaged_product(1600, 1200, damage="tall", seed=3)
    sent_bytes = images.prepare(photo).request_image  # as sent (here: the photo's own size)
    sent = images.load(sent_bytes)
    answer = MarkingModel(damage="tall", margin=0.2, label="crack")(sent, None, RING_PROMPT)
    out = io.BytesIO()
    answer.save(out, format="PNG")
    box = tuple(int(v) for v in damage_box("tall", *sent.size))
    delivered, *_ = _take_mark(photo, sent_bytes, out.getvalue(),
                               Located(model="figure", boxes=[DamageBox("crack", box)]))  # type: ignore[arg-type]
    # A window on the crack's upper half, at full resolution: the redraw shows in the crack.
    window = (500, 20, 1100, 470)
    panels = [(images.load(photo), "the customer's photo"),
              (answer, "the model's answer: every pixel redrawn"),
              (delivered, "delivered: customer's pixels, ring, label")]
    font = ImageFont.load_default(size=17)
    width = PANEL * 3 + 40
    height = int(PANEL * (window[3] - window[1]) / (window[2] - window[0]))
    figure = Image.new("RGB", (width, height + 34), "white")
    draw = ImageDraw.Draw(figure)
    for i, (image, caption) in enumerate(panels):
        crop = image.crop(window).resize((PANEL, height), Image.Resampling.LANCZOS)
        x = 10 + i * (PANEL + 10)
        figure.paste(crop, (x, 0))
        draw.text((x + 2, height + 8), caption, fill=(40, 40, 40), font=font)
    target = ROOT / "docs" / "marking.png"
    figure.save(target, format="PNG", optimize=True)
    print(f"wrote {target.relative_to(ROOT)} ({figure.width}x{figure.height})")
    # The README's first screen: the delivered photo, whole.
    sample = ROOT / "docs" / "marked-photo.jpg"
    images.fit_to(delivered, 640).save(sample, format="JPEG", quality=82, optimize=True)
    print(f"wrote {sample.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
