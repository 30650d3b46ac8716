"""Edit calls in flight: N phone photos against a loopback OpenAI whose edit takes L seconds,
through one `deskmark worker` (default settings), timed from the first webhook to the last note.
Prints the makespan against the ideal (L: every edit at once), the most edits in flight at once,
and the worker's peak RSS.

    python bench/inflight.py [--photos 60] [--latency 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from loopback import Loopback  # noqa: E402 (bench/, beside this file)

from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.photos import damaged_product


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--latency", type=float, default=5.0)
    args = parser.parse_args()
    loop = Loopback.start(SandboxOpenAI(latency=args.latency, locate_latency=0.2, cheap=True))
    zendesk, openai = loop.zendesk, loop.openai
    log = Path(tempfile.mkdtemp()) / "worker.log"
    worker = loop.start_worker(log)
    # 12 MP phone photos, each its own (the same photo twice would be edited once: a reuse).
    photos = [damaged_product(4032, 3024, seed=100 + i) for i in range(args.photos)]
    print(f"{args.photos} photos of {len(photos[0]) // 1024} KB (4032x3024), edit latency "
          f"{args.latency:.0f} s; waiting for the worker…", flush=True)
    time.sleep(4)  # worker start-up is not part of the measurement
    tickets = []
    started = time.monotonic()
    for i in range(args.photos):
        ticket_id = zendesk.create_ticket(f"Inflight {i}", "cracked")
        zendesk.add_comment(ticket_id, zendesk.CUSTOMER_ID, "photo",
                            [(f"IMG_{i}.jpg", photos[i], "image/jpeg")])  # Zendesk sends the webhook
        tickets.append(ticket_id)
    finished = None
    pending = set(tickets)
    while time.monotonic() - started < 300:
        pending = {t for t in pending if not any(n.attachments for n in zendesk.notes(t))}
        if not pending:
            finished = time.monotonic() - started
            break
        time.sleep(0.05)
    rss = peak_rss_mb(worker.pid)
    wall_started = time.time() - (time.monotonic() - started)
    edits = sorted(call["time"] - wall_started for call in openai.calls)
    loop.stop()
    if finished is None:
        print(f"FAIL: not every photo got its note in 300 s (see {log})")
        return 1
    print(f"\nmakespan {finished:.1f} s for {args.photos} photos = {finished / args.latency:.2f}x the "
          f"ideal {args.latency:.0f} s (goal: <= 20 s, under 10 s)")
    print(f"edit calls in flight at once: {openai.max_in_flight}; worker peak RSS {rss:.0f} MB "
          f"(goal < 600 MB)")
    if edits:
        print(f"edit calls started {edits[0]:.1f}-{edits[-1]:.1f} s after the first webhook; the "
              f"last note landed {finished - args.latency - edits[-1]:.1f} s after the last edit returned")
    return 0


if __name__ == "__main__":
    sys.exit(main())
