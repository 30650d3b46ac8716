"""Makes docs/label-ja.png and docs/label-ar.png, the README's labels in Japanese and Arabic: the
sample photo marked through deskmark's marker against the tests' model stand-in (which, asked
for its labels in a language, writes them in it), cropped to the ring and the label.

    python docs/labels_figure.py
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deskmark.sandbox.openai import SandboxOpenAI  # noqa: E402
from deskmark.sandbox.photos import damaged_product  # noqa: E402
from integrations.config import Settings  # noqa: E402
from worker.marking import make_marker  # noqa: E402


def main() -> int:
    fake = SandboxOpenAI().start()
    try:
        settings = Settings.from_env({"OPENAI_API_KEY": fake.api_key, "OPENAI_BASE_URL": fake.url}, dotenv=None)
        marker = make_marker(settings)
        for language in ("ja", "ar"):
            marked = marker.mark(damaged_product(1600, 1200, seed=11), "", "", language=language)
            photo = Image.open(io.BytesIO(marked.image)).convert("RGB")
            x0, y0, x1, y1 = marked.meta["regions"][0]
            pad = (x1 - x0) // 2
            crop = photo.crop((max(0, x0 - pad), max(0, y0 - pad - 90), min(photo.width, x1 + pad),
                               min(photo.height, y1 + pad // 2)))
            target = ROOT / "docs" / f"label-{language}.png"
            crop.resize((crop.width * 360 // crop.height, 360)).save(target, optimize=True)
            print(f"wrote {target.relative_to(ROOT)}: {marked.meta['labels']}")
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
