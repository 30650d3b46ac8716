"""Worker memory under hostile photo sizes: 64 jobs at once through one `deskmark worker`
(default settings), against a loopback OpenAI whose edits take a few seconds. Prints the
worker's peak RSS and what became of each photo.

    python bench/memory.py [--latency 3] [--jobs 64]

The photos (made once, cached under bench/, about 1 GB), each job's its own, since the same
photo twice would be edited once (a reuse) and spare the worker:
- a third of the jobs: a 64 MP PNG that compresses to 258 KB (cheap to send, 448 MB to decode:
  refused from its header);
- a third: a 64 MP PNG of about 12 MB, a speckled scan (plausible, and 192 MB to decode);
- a third: a 48 MP JPEG of about 37 MB (a helpdesk download is at most 40 MB).
Goal: peak RSS under 1 GB, the size of a small container.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from loopback import ROOT, Loopback  # noqa: E402 (bench/, beside this file)
from PIL import Image, ImageFilter

from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.photos import damaged_product
from worker.store import Store

CACHE = ROOT / "bench"


def _photo_like(width: int, height: int, noise: float) -> Image.Image:
    base = Image.open(io.BytesIO(damaged_product(width // 4, height // 4, fmt="PNG"))).convert("RGB")
    base = base.resize((width, height), Image.Resampling.BILINEAR)
    random.seed(3)
    grain = Image.effect_noise((width, height), 60).convert("RGB").filter(ImageFilter.GaussianBlur(0.6))
    return Image.blend(base, grain, noise)


def _speckled_scan() -> Image.Image:
    base = Image.open(io.BytesIO(damaged_product(2000, 2000, fmt="PNG"))).convert("RGB")
    base = base.resize((8000, 8000), Image.Resampling.NEAREST)
    specks = Image.effect_noise((8000, 8000), 60).point(lambda v: 255 if v > 250 else 0)
    base.paste((255, 255, 255), (0, 0), specks)
    return base


def hostile_photos(count: int) -> dict[str, bytes]:
    """`count` photos of each kind but the tiny PNG, made once and cached (a few minutes)."""
    made: dict[str, bytes] = {}
    tiny = CACHE / ".memory-64mp-tiny.png"
    if not tiny.exists():
        out = io.BytesIO()
        Image.new("RGBA", (8000, 8000), (240, 240, 240, 255)).save(out, format="PNG")
        tiny.write_bytes(out.getvalue())
    made[tiny.name] = tiny.read_bytes()
    scan: Image.Image | None = None
    for i in range(count):
        path = CACHE / f".memory-64mp-scan-{i:02d}.png"
        if not path.exists():
            if scan is None:
                print(f"making {count} 64 MP scans…", file=sys.stderr, flush=True)
                scan = _speckled_scan()
            variant = scan.copy()
            variant.paste((i * 4 % 256, 0, 0), (0, 0, 64, 64))  # its own pixels
            out = io.BytesIO()
            variant.save(out, format="PNG", compress_level=6)
            path.write_bytes(out.getvalue())
        made[path.name] = path.read_bytes()
    jpegs = count
    base: Image.Image | None = None
    quality = 100
    for i in range(jpegs):
        path = CACHE / f".memory-48mp-{i:02d}.jpg"
        if not path.exists():
            if base is None:
                print(f"making {jpegs} 48 MP JPEGs…", file=sys.stderr, flush=True)
                base = _photo_like(8000, 6000, 0.6)
            variant = base.copy()
            variant.paste((i * 4 % 256, 0, 0), (0, 0, 64, 64))  # its own pixels
            while True:  # the best quality that stays under the 40 MB download cap
                out = io.BytesIO()
                variant.save(out, format="JPEG", quality=quality)
                if out.tell() <= 39 * 2**20 or quality <= 80:
                    break
                quality -= 1
            path.write_bytes(out.getvalue())
        made[path.name] = path.read_bytes()
    return made


def rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--latency", type=float, default=3.0)
    args = parser.parse_args()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)
    each = args.jobs // 3
    photos = hostile_photos(each)
    kinds = [".memory-64mp-tiny.png", ".memory-64mp-scan-00.png", ".memory-48mp-00.jpg"]
    for name, data in ((k, photos[k]) for k in kinds):
        with Image.open(io.BytesIO(data)) as image:
            print(f"  {name}: {image.width}x{image.height} {image.mode}, {len(data) / 2**20:.1f} MB")
    loop = Loopback.start(SandboxOpenAI(latency=args.latency, locate_latency=0.2, cheap=True))
    zendesk = loop.zendesk
    worker = loop.start_worker(Path(tempfile.mkdtemp()) / "worker.log")
    store = Store.from_url(loop.redis.url)
    deadline = time.monotonic() + 60
    while not store.worker_seen() and time.monotonic() < deadline:
        time.sleep(0.2)
    idle = rss_mb(worker.pid, "VmRSS")
    names = [".memory-64mp-tiny.png"] * (args.jobs - 2 * each) + [
        name for pair in zip([n for n in photos if "scan" in n], [n for n in photos if n.endswith(".jpg")],
                             strict=True) for name in pair]
    print(f"\n{args.jobs} jobs at once, edit latency {args.latency:.0f} s; worker idle RSS {idle:.0f} MB",
          flush=True)
    started = time.monotonic()
    for i in range(args.jobs):
        name = names[i]
        ticket_id = zendesk.create_ticket(f"Memory {i}", "damaged")
        zendesk.add_comment(ticket_id, zendesk.CUSTOMER_ID, "photo",
                            [(f"{i}-{name}", photos[name], "image/png" if name.endswith("png") else "image/jpeg")])
    finished = None
    while time.monotonic() - started < 900:
        records = [store.job(i.decode() if isinstance(i, bytes) else str(i)) for i in store.r.zrange("dm:jobs", 0, -1)]
        ended = [r for r in records if r.get("state") in ("done", "failed", "skipped")]
        if len(ended) >= args.jobs:
            finished = time.monotonic() - started
            break
        time.sleep(0.5)
    peak = rss_mb(worker.pid, "VmHWM")
    records = [store.job(i.decode() if isinstance(i, bytes) else str(i)) for i in store.r.zrange("dm:jobs", 0, -1)]
    loop.stop()
    outcome: dict[str, dict[str, int]] = {}
    for record in records:
        name = str(record.get("filename"))
        kind = ("64 MP PNG of 258 KB" if "tiny" in name else "64 MP PNG scan" if "scan" in name
                else "48 MP JPEG")
        key = str(record.get("state"))
        if key == "failed":
            key += f": {str(record.get('reason'))[:70]}"
        outcome.setdefault(kind, {}).setdefault(key, 0)
        outcome[kind][key] += 1
    for kind, states in sorted(outcome.items()):
        print(f"  {kind}: " + "; ".join(f"{n} {state}" for state, n in states.items()))
    if finished is None:
        print("FAIL: not every job ended in 900 s")
        return 1
    print(f"\nall {args.jobs} jobs ended in {finished:.1f} s; worker peak RSS {peak:.0f} MB "
          f"(goal < 1024 MB)")
    return 0 if peak < 1024 else 1


if __name__ == "__main__":
    sys.exit(main())
