"""Worker memory under hostile photo sizes: 64 jobs at once through one `deskmark worker`
(default settings), against a loopback OpenAI whose edits take a few seconds. Prints the
worker's peak RSS and what became of each photo.

    python bench/memory.py [--latency 3] [--jobs 64]

The photos, cycled over the jobs (made once, cached under bench/):
- a 64 MP PNG that compresses to a few hundred KB (cheap to send, 256 MB or more to decode);
- a 36 MP PNG with photo-like noise, about 30 MB (plausible, and 108 MB to decode);
- a 40 MB JPEG of 48 MP (the most a helpdesk download may be).
Goal: peak RSS under 1 GB, the size of a small container.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deskmark.redis_server import EmbeddedRedis  # noqa: E402
from deskmark.sandbox.openai import SandboxOpenAI  # noqa: E402
from deskmark.sandbox.photos import damaged_product  # noqa: E402
from deskmark.sandbox.server import LoopbackServer  # noqa: E402
from deskmark.sandbox.zendesk import SandboxZendesk  # noqa: E402
from integrations.config import Settings  # noqa: E402
from worker.store import Store  # noqa: E402

SECRET = "memory-secret"
CACHE = ROOT / "bench"


def _photo_like(width: int, height: int, noise: float) -> Image.Image:
    base = Image.open(io.BytesIO(damaged_product(width // 4, height // 4, fmt="PNG"))).convert("RGB")
    base = base.resize((width, height), Image.Resampling.BILINEAR)
    random.seed(3)
    grain = Image.effect_noise((width, height), 60).convert("RGB").filter(ImageFilter.GaussianBlur(0.6))
    return Image.blend(base, grain, noise)


def hostile_photos() -> dict[str, bytes]:
    """The three photos, made once and cached (a minute or two the first time)."""
    made: dict[str, bytes] = {}
    specs = {
        "64mp-tiny.png": lambda: Image.new("RGBA", (8000, 8000), (240, 240, 240, 255)),
        "36mp-noisy.png": lambda: _photo_like(6000, 6000, 0.07),
        "48mp-40mb.jpg": lambda: _photo_like(8000, 6000, 0.6),
    }
    for name, make in specs.items():
        path = CACHE / f".memory-{name}"
        if not path.exists():
            print(f"making {name}…", file=sys.stderr, flush=True)
            image = make()
            out = io.BytesIO()
            if name.endswith(".png"):
                image.save(out, format="PNG", compress_level=6)
            else:
                quality = 100
                while True:
                    out = io.BytesIO()
                    image.save(out, format="JPEG", quality=quality)
                    if out.tell() <= 39 * 1024 * 1024 or quality <= 80:
                        break
                    quality -= 1
            path.write_bytes(out.getvalue())
        made[name] = path.read_bytes()
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
    photos = hostile_photos()
    for name, data in photos.items():
        with Image.open(io.BytesIO(data)) as image:
            print(f"  {name}: {image.width}x{image.height} {image.mode}, {len(data) / 2**20:.1f} MB")
    redis = EmbeddedRedis().start()
    zendesk = SandboxZendesk().start()
    openai = SandboxOpenAI(latency=args.latency, locate_latency=0.2, cheap=True).start()
    env = {**os.environ, "REDIS_URL": redis.url, "OPENAI_API_KEY": openai.api_key,
           "OPENAI_BASE_URL": openai.url, "DESKMARK_EDIT_RATE_PER_MINUTE": "0",
           "ZENDESK_BASE_URL": zendesk.url, "ZENDESK_EMAIL": zendesk.email,
           "ZENDESK_API_TOKEN": zendesk.api_token, "ZENDESK_WEBHOOK_SECRET": SECRET,
           "DESKMARK_ATTACHMENT_HOSTS": zendesk.files_host}
    from webhooks import create_app

    web = LoopbackServer(create_app(Settings.from_env(env, dotenv=None))).start()
    zendesk.webhook_url, zendesk.webhook_secret = f"{web.url}/webhooks/zendesk", SECRET
    log = Path(tempfile.mkdtemp()) / "worker.log"
    worker = subprocess.Popen([sys.executable, "-m", "deskmark.cli", "worker", "--loglevel", "WARNING",
                               "--quiet"], env=env, cwd=ROOT, stdout=log.open("wb"),
                              stderr=subprocess.STDOUT)
    store = Store.from_url(redis.url)
    deadline = time.monotonic() + 60
    while not store.worker_seen() and time.monotonic() < deadline:
        time.sleep(0.2)
    idle = rss_mb(worker.pid, "VmRSS")
    names = list(photos)
    print(f"\n{args.jobs} jobs at once, edit latency {args.latency:.0f} s; worker idle RSS {idle:.0f} MB",
          flush=True)
    started = time.monotonic()
    for i in range(args.jobs):
        name = names[i % len(names)]
        ticket_id = zendesk.create_ticket(f"Memory {i}", "damaged")
        zendesk.add_comment(ticket_id, zendesk.CUSTOMER_ID, "photo",
                            [(f"{i}-{name}", photos[name], "image/png" if name.endswith("png") else "image/jpeg")])
    finished = None
    while time.monotonic() - started < 900:
        records = [store.job(i.decode()) for i in store.r.zrange("dm:jobs", 0, -1)]
        ended = [r for r in records if r.get("state") in ("done", "failed", "skipped")]
        if len(ended) >= args.jobs:
            finished = time.monotonic() - started
            break
        time.sleep(0.5)
    peak = rss_mb(worker.pid, "VmHWM")
    records = [store.job(i.decode()) for i in store.r.zrange("dm:jobs", 0, -1)]
    worker.terminate()
    worker.wait(60)
    web.stop()
    zendesk.stop()
    openai.stop()
    redis.cleanup()
    outcome: dict[str, dict[str, int]] = {}
    for record in records:
        kind = str(record.get("filename", "?")).split("-", 1)[-1]
        key = str(record.get("state"))
        if key == "failed":
            key += f": {str(record.get('reason'))[:70]}"
        outcome.setdefault(kind, {}).setdefault(key, 0)
        outcome[kind][key] += 1
    for kind, states in sorted(outcome.items()):
        print(f"  {kind}: " + "; ".join(f"{n} {state}" for state, n in states.items()))
    if finished is None:
        print(f"FAIL: not every job ended in 900 s (see {log})")
        return 1
    print(f"\nall {args.jobs} jobs ended in {finished:.1f} s; worker peak RSS {peak:.0f} MB "
          f"(goal < 1024 MB)")
    return 0 if peak < 1024 else 1


if __name__ == "__main__":
    sys.exit(main())
