"""Content credentials: what signing adds per delivered photo, with and without thumbnails,
measured side by side in one run.

    python bench/credentials.py [--rounds 15]

The photo is a 12 MP phone JPEG (4032x3024) as downloaded, the delivered one 1536x1152, as the
pipeline makes them. Goal: under 100 ms per photo.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deskmark.sandbox.photos import damaged_product  # noqa: E402
from worker import credentials  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    # Sensor noise, so that the original weighs what a phone's does (a few MB), not 0.3 MB.
    clean = Image.open(io.BytesIO(damaged_product(4032, 3024)))
    noisy = Image.blend(clean, Image.effect_noise(clean.size, 60).convert("RGB"), 0.12)
    out = io.BytesIO()
    noisy.save(out, "JPEG", quality=92)
    original = out.getvalue()
    out = io.BytesIO()
    Image.open(io.BytesIO(original)).resize((1536, 1152)).save(out, "JPEG", quality=92)
    marked = out.getvalue()
    keys = credentials.throwaway_keys()
    facts = credentials.Provenance("dm-bench", "zendesk", "1", "IMG_0001.jpg", "gpt-image-2",
                                   [{"label": "cracked screen", "x": 600, "y": 300, "width": 240,
                                     "height": 180}])
    times: dict[bool, list[float]] = {False: [], True: []}
    sizes: dict[bool, int] = {}
    signed = b""
    for turn in range(args.rounds):
        for thumbnails in ((False, True) if turn % 2 == 0 else (True, False)):
            started = time.perf_counter()
            signed = credentials.sign(marked, io.BytesIO(original), "image/jpeg", facts, keys,
                                      thumbnails=thumbnails)
            times[thumbnails].append((time.perf_counter() - started) * 1000)
            sizes[thumbnails] = len(signed) - len(marked)
    started = time.perf_counter()
    for _ in range(args.rounds):
        credentials.read(signed)
    read_ms = (time.perf_counter() - started) * 1000 / args.rounds
    print(f"{args.rounds} rounds, alternating; original {len(original) / 1e6:.1f} MB 4032x3024, "
          f"delivered {len(marked) / 1e3:.0f} KB 1536x1152")
    for thumbnails, label in ((False, "without thumbnails (deskmark)"), (True, "with thumbnails")):
        ms = times[thumbnails]
        print(f"sign {label:<30} median {statistics.median(ms):6.1f} ms  max {max(ms):6.1f} ms  "
              f"+{sizes[thumbnails] / 1e3:.0f} KB")
    ratio = statistics.median(times[True]) / statistics.median(times[False])
    print(f"thumbnails cost {ratio:.0f}x the time; read and validate: {read_ms:.1f} ms (goal: sign < 100 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
