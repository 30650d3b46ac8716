"""The cost of a photo by edit quality, from the model stand-in's `usage`, and how often
deskmark had to draw its own mark, in one run.

    python bench/cost.py [--photos 100] [--qualities low,medium,high] [--model gpt-image-2]

Each photo (a 1600x1200 product photo with damage, a different seed each) goes through
worker.marking's Marker, as a worker runs it: located (gpt-5.4) and edited at each quality, on
the loopback OpenAI stand-in (deskmark.sandbox.openai). The cost is what deskmark bills, from
each call's `usage` and integrations.models' prices; the stand-in's token counts follow
OpenAI's published output tokens per quality, and its input counts are its own (see the
README's cost table for the published figures). "deskmark drew" counts the photos where the
model's mark failed deskmark's check and deskmark drew its own circle: the stand-in draws the
same circle at every quality, so this shows what the check does at each request, not how the
real model's strokes change with quality.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deskmark.sandbox.openai import SandboxOpenAI  # noqa: E402
from deskmark.sandbox.photos import damaged_product  # noqa: E402
from integrations.config import Settings  # noqa: E402
from worker.marking import make_marker  # noqa: E402


def run(fake: SandboxOpenAI, model: str, quality: str, photos: int) -> dict[str, float]:
    marker = make_marker(Settings.from_env({
        "OPENAI_API_KEY": fake.api_key, "OPENAI_BASE_URL": fake.url, "DESKMARK_EDIT_MODEL": model,
        "DESKMARK_LOCATE_MODEL": "gpt-5.4", "DESKMARK_EDIT_QUALITY": quality}, dotenv=None))
    costs, locates, edits, drawn, unmarked = [], [], [], 0, 0
    started = time.monotonic()
    for n in range(photos):
        meta = marker.mark(damaged_product(1600, 1200, seed=3000 + n), "Cracked on arrival",
                           "The case is cracked.").meta
        costs.append(meta.get("cost_usd") or 0.0)
        edits.append(meta.get("edit_cost_usd") or 0.0)
        locates.append((meta.get("located") or {}).get("cost_usd") or 0.0)
        drawn += any(m.get("drawn_by") == "deskmark" for m in meta.get("marks") or [])
        unmarked += not meta.get("marked", True)
        if (n + 1) % 20 == 0:
            print(f"  {model} {quality}: {n + 1}/{photos} photos", file=sys.stderr, flush=True)
    return {"cost": statistics.mean(costs), "locate": statistics.mean(locates),
            "edit": statistics.mean(edits), "drawn": drawn / photos, "unmarked": unmarked / photos,
            "seconds": (time.monotonic() - started) / photos}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--qualities", default="low,medium,high")
    parser.add_argument("--model", default="gpt-image-2")
    args = parser.parse_args()
    fake = SandboxOpenAI().start()
    try:
        rows = {q: run(fake, args.model, q, args.photos) for q in args.qualities.split(",")}
    finally:
        fake.stop()
    base = rows.get("medium") or next(iter(rows.values()))
    print(f"{args.photos} photos each, {args.model}, sync (the stand-in's usage, deskmark's prices)")
    print(f"{'quality':8} {'per photo':>10} {'locate':>8} {'edit':>8} {'vs medium':>10} "
          f"{'deskmark drew':>14} {'unmarked':>9} {'s/photo':>8}")
    for quality, row in rows.items():
        dollars = [f"${row[k]:.4f}" for k in ("cost", "locate", "edit")]
        print(f"{quality:8} {dollars[0]:>10} {dollars[1]:>8} {dollars[2]:>8} "
              f"{row['cost'] / base['cost']:>9.2f}x {row['drawn']:>13.0%} {row['unmarked']:>9.0%} "
              f"{row['seconds']:>8.2f}")


if __name__ == "__main__":
    main()
