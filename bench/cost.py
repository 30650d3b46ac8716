"""The cost of a photo by edit quality, from the model stand-in's `usage`, and how often
deskmark had to draw its own mark, in one run.

    python bench/cost.py [--photos 100] [--qualities low,medium,high] [--model gpt-image-2]
                         [--modes sync,batch] [--edges 1024,1536]

Each photo (a 1600x1200 product photo with damage, a different seed each) goes through
worker.marking's Marker, as a worker runs it: located (gpt-5.4) and edited at each quality, on
the loopback OpenAI stand-in (deskmark.sandbox.openai). The cost is what deskmark bills, from
each call's `usage` and integrations.models' prices; the stand-in's token counts follow
OpenAI's billing (output tokens by the formula of OpenAI's cost calculator, input images and
the locate model's image by 32 px patches; see deskmark.sandbox.openai) and the README's cost
table. `--edges` compares request sizes (the long edge deskmark sends, integrations.models.
MAX_REQUEST_EDGE; the first is deskmark's default). "deskmark drew" counts the photos where the
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
from integrations import models  # noqa: E402
from integrations.config import Settings  # noqa: E402
from integrations.openai_batch import ENDED, BatchEditor  # noqa: E402
from worker.marking import EditPlan, Marked, Marker, make_marker  # noqa: E402


def batched(marker: Marker, editor: BatchEditor, photos: list[bytes]) -> list[Marked]:
    """The photos' edits as one batch: the first half, the Batch API, the second half."""
    plans: dict[str, EditPlan] = {}
    done: dict[str, Marked] = {}
    lines, files = [], []
    for n, photo in enumerate(photos):
        plan = marker.ask(photo, "Cracked on arrival", "The case is cracked.")
        if isinstance(plan, Marked):
            done[str(n)] = plan
            continue
        image_id = editor.upload(f"bench-{n}.jpg", plan.request.image, plan.request.mime)
        mask_id = editor.upload(f"bench-{n}-mask.png", plan.request.mask, "image/png") if plan.request.mask else None
        files += [image_id, *([mask_id] if mask_id else [])]
        plans[str(n)] = plan
        lines.append(editor.line(str(n), plan.request, image_id, mask_id))
    input_id, batch_id = editor.submit(f"bench-{time.time_ns()}", lines)
    while (batch := editor.look(batch_id)).status not in ENDED:
        time.sleep(0.2)
    answers = editor.answers(batch, list(plans))
    for custom_id, result in answers.results.items():
        marked = marker.answer(plans[custom_id], photos[int(custom_id)], result, 0.0)
        located = plans[custom_id].located_cost
        marked.meta["cost_usd"] = located + (result.cost_usd or 0.0)
        done[custom_id] = marked
    editor.delete(*files, input_id, batch.output_file_id or "", batch.error_file_id or "")
    return [done[str(n)] for n in range(len(photos)) if str(n) in done]


def run(fake: SandboxOpenAI, model: str, quality: str, photos: int, mode: str) -> dict[str, float]:
    settings = Settings.from_env({
        "OPENAI_API_KEY": fake.api_key, "OPENAI_BASE_URL": fake.url, "DESKMARK_EDIT_MODEL": model,
        "DESKMARK_LOCATE_MODEL": "gpt-5.4", "DESKMARK_EDIT_QUALITY": quality}, dotenv=None)
    marker = make_marker(settings)
    costs, locates, edits, drawn, unmarked = [], [], [], 0, 0
    started = time.monotonic()
    pictures = [damaged_product(1600, 1200, seed=3000 + n) for n in range(photos)]
    done = (batched(marker, BatchEditor(settings), pictures) if mode == "batch" else
            [marker.mark(p, "Cracked on arrival", "The case is cracked.") for p in pictures])
    for n, meta in enumerate(marked.meta for marked in done):
        costs.append(meta.get("cost_usd") or 0.0)
        edits.append(meta.get("edit_cost_usd") or 0.0)
        locates.append((meta.get("located") or {}).get("cost_usd") or 0.0)
        drawn += any(m.get("drawn_by") == "deskmark" for m in meta.get("marks") or [])
        unmarked += not meta.get("marked", True)
        if (n + 1) % 20 == 0:
            print(f"  {model} {quality} {mode}: {n + 1}/{photos} photos", file=sys.stderr, flush=True)
    return {"cost": statistics.mean(costs), "locate": statistics.mean(locates),
            "edit": statistics.mean(edits), "drawn": drawn / photos, "unmarked": unmarked / photos,
            "seconds": (time.monotonic() - started) / photos}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--qualities", default="low,medium,high")
    parser.add_argument("--model", default="gpt-image-2")
    parser.add_argument("--modes", default="sync,batch")
    parser.add_argument("--edges", default=str(models.MAX_REQUEST_EDGE))
    args = parser.parse_args()
    fake = SandboxOpenAI(batch_delay=0.5).start()
    rows: dict[tuple[str, str, int], dict[str, float]] = {}
    try:
        for edge in (int(e) for e in args.edges.split(",")):
            models.MAX_REQUEST_EDGE = edge  # what request_size reads for every photo
            for mode in args.modes.split(","):
                for quality in args.qualities.split(","):
                    rows[quality, mode, edge] = run(fake, args.model, quality, args.photos, mode)
    finally:
        fake.stop()
    base = next(iter(rows.values()))
    print(f"{args.photos} photos each, {args.model} (the stand-in's usage, deskmark's prices)")
    print(f"{'quality':8} {'mode':6} {'edge':>5} {'per photo':>10} {'locate':>8} {'edit':>8} {'vs first':>9} "
          f"{'deskmark drew':>14} {'unmarked':>9} {'s/photo':>8}")
    for (quality, mode, edge), row in rows.items():
        dollars = [f"${row[k]:.4f}" for k in ("cost", "locate", "edit")]
        print(f"{quality:8} {mode:6} {edge:>5} {dollars[0]:>10} {dollars[1]:>8} {dollars[2]:>8} "
              f"{row['cost'] / base['cost']:>9.2f}x {row['drawn']:>13.0%} {row['unmarked']:>9.0%} "
              f"{row['seconds']:>8.2f}")


if __name__ == "__main__":
    main()
