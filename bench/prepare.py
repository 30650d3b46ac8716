"""Preparing a 12 MP phone JPEG for the edit call: deskmark's path against a naive Pillow path
and pyvips, side by side in one run. Each method runs in its own child process, so its peak
memory is its own.

    python bench/prepare.py [--runs 15]      (pyvips is optional: pip install pyvips pyvips-binary)

All three produce the same thing: an upright JPEG (q95, no metadata) of the photo at the
gpt-image-2 request size (1536 px long edge). deskmark and the naive path resample with the
same filter (bicubic); pyvips with its own default (Lanczos 3) after shrinking on load.
deskmark's path also produces the photo it delivers (up to 2048 px), which the others do not,
so the comparison does not flatter it.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image, ImageFilter

CHILD = r"""
import io, json, sys, time
method, path, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(path, "rb").read()
if method == "deskmark":
    from integrations.models import request_size
    from worker import images
    def run():
        return images.prepare(data, lambda w, h: request_size("gpt-image-2", w, h)).request_image
elif method == "naive":
    from PIL import Image, ImageOps
    from integrations.models import request_size
    from worker import images  # only for its resampling filter: the same as deskmark's
    def run():
        image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
        image = image.resize(request_size("gpt-image-2", *image.size), images.REQUEST_FILTER)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=95)
        return out.getvalue()
else:
    import pyvips
    def run():
        thumb = pyvips.Image.thumbnail_buffer(data, 1536, height=1536)
        return thumb.write_to_buffer(".jpg", Q=95)
run()  # warm up: imports, codecs
times = []
for _ in range(runs):
    started = time.perf_counter()
    png = run()
    times.append(time.perf_counter() - started)
# ru_maxrss survives execve (it would report the parent's peak): read this process's own.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"times": times, "peak_kb": hwm, "png_bytes": len(png)}))
"""


def phone_photo(path: Path) -> None:
    """A 4032x3024 JPEG with photo-like texture (flat synthetic images decode unrealistically fast)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from deskmark.sandbox.photos import damaged_product

    base = Image.open(io.BytesIO(damaged_product(4032, 3024, fmt="PNG"))).convert("RGB")
    random.seed(1)
    noise = Image.effect_noise((4032, 3024), 40).convert("RGB").filter(ImageFilter.GaussianBlur(1))
    Image.blend(base, noise, 0.18).save(path, format="JPEG", quality=92)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    photo = root / "bench" / ".phone-12mp.jpg"
    if not photo.exists():
        phone_photo(photo)
    methods = ["deskmark", "naive"]
    try:
        import pyvips  # noqa: F401

        methods.append("pyvips")
    except (ImportError, OSError):
        print("pyvips not installed: comparing against Pillow only", file=sys.stderr)
    results: dict[str, dict[str, float]] = {}
    for method in methods:
        print(f"running {method} ({args.runs} runs)…", file=sys.stderr, flush=True)
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, method, str(photo), str(args.runs)],
                             capture_output=True, text=True, cwd=root, check=True)
        raw = json.loads(out.stdout)
        results[method] = {"median_ms": statistics.median(raw["times"]) * 1000,
                           "best_ms": min(raw["times"]) * 1000,
                           "peak_mb": raw["peak_kb"] / 1024,
                           "out_kb": raw["png_bytes"] / 1024,
                           "wall_s": time.perf_counter() - started}
    with Image.open(photo) as image:
        print(f"\n{photo.name}: {image.size[0]}x{image.size[1]} JPEG, {photo.stat().st_size // 1024} KB; "
              f"median of {args.runs} runs each, 1 process per method")
    print(f"{'method':<10}{'median ms':>11}{'best ms':>9}{'peak RSS MB':>13}{'out KB':>8}")
    for method, r in results.items():
        print(f"{method:<10}{r['median_ms']:>11.1f}{r['best_ms']:>9.1f}{r['peak_mb']:>13.0f}{r['out_kb']:>8.0f}")
    ours = results["deskmark"]["median_ms"]
    print(f"\nnaive / deskmark  = {results['naive']['median_ms'] / ours:.2f}x   (goal: >= 1.5x)")
    if "pyvips" in results:
        print(f"deskmark / pyvips = {ours / results['pyvips']['median_ms']:.2f}x   (goal: <= 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
