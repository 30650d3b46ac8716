"""Soak with faults: 200 Zendesk webhook deliveries (20% of them duplicates) against loopback
vendors and two workers at their default settings, while Redis is restarted once (SIGTERM, AOF
on) and a worker is SIGKILLed twice. Prints photos, notes, duplicates, lost, and the longest
delay from a photo's webhook to its note; exits 1 unless every photo got exactly one note.

    python bench/soak.py [--deliveries 200] [--latency 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from loopback import Loopback  # noqa: E402 (bench/, beside this file)

from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.photos import damaged_product


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--duplicates", type=float, default=0.2)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per edit call")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--spread", type=float, default=40.0,
                        help="seconds over which the deliveries arrive (so some meet the faults)")
    args = parser.parse_args()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)

    workdir = Path(tempfile.mkdtemp(prefix="deskmark-soak-"))
    loop = Loopback.start(SandboxOpenAI(latency=args.latency), appendonly=True,
                          DESKMARK_LOCATE_MODEL="gpt-5.4")
    redis, zendesk, openai, web = loop.redis, loop.zendesk, loop.openai, loop.web
    workers = [loop.start_worker(workdir / f"worker{i}.log", "--concurrency", "8") for i in range(2)]

    photos = int(args.deliveries * (1 - args.duplicates))
    deliveries: list[tuple[int, bytes, dict[str, str]]] = []
    tickets: list[int] = []
    for i in range(photos):  # a photo of its own each: one is never the reuse of another
        ticket_id = zendesk.create_ticket(f"Soak {i}", "damaged")
        comment = zendesk.add_comment(ticket_id, zendesk.CUSTOMER_ID, "photo",
                                      [(f"p{i}.jpg", damaged_product(1200, 900, seed=1000 + i),
                                        "image/jpeg")], notify=False)
        body = json.dumps(zendesk.event_for(ticket_id, comment, comment.attachments[0],
                                            zendesk.CUSTOMER_ID)).encode()
        deliveries.append((ticket_id, body, zendesk.signed_headers(body)))
        tickets.append(ticket_id)
    rng = random.Random(7)
    for _ in range(args.deliveries - photos):
        ticket_id, body, headers = rng.choice(deliveries[:photos])
        if rng.random() < 0.5:
            headers = zendesk.signed_headers(body)  # same event, new invocation id
        deliveries.append((ticket_id, body, headers))
    rng.shuffle(deliveries)

    answers: dict[int, int] = {}
    accepted: dict[int, float] = {}  # ticket -> when its first delivery was answered 2xx
    noted: dict[int, float] = {}  # ticket -> when its note was first seen
    lock = threading.Lock()

    def deliver(chunk: list[tuple[int, bytes, dict[str, str]]]) -> None:
        with httpx.Client(timeout=15) as client:
            for ticket_id, body, headers in chunk:
                status = 0
                for _attempt in range(20):  # as Zendesk does: retry a 503 (Retry-After)
                    try:
                        status = client.post(f"{web.url}/webhooks/zendesk", content=body,
                                             headers=headers).status_code
                    except httpx.HTTPError:
                        status = 0
                    if status not in (0, 503):
                        break
                    with lock:
                        answers[-status] = answers.get(-status, 0) + 1  # retried, as Zendesk would
                    time.sleep(1)
                with lock:
                    answers[status] = answers.get(status, 0) + 1
                    if 200 <= status < 300:
                        accepted.setdefault(ticket_id, time.monotonic())
                time.sleep(args.spread * len(senders) / len(deliveries))

    started = time.monotonic()
    senders = [threading.Thread(target=deliver, args=(deliveries[i::4],)) for i in range(4)]
    for sender in senders:
        sender.start()

    def done_count() -> int:
        now = time.monotonic()
        for t in tickets:
            if t not in noted and any(n.attachments for n in zendesk.notes(t)):
                noted[t] = now
        return len(noted)

    def wait_until(fraction: float) -> None:
        while done_count() < photos * fraction and time.monotonic() - started < args.timeout:
            time.sleep(0.2)

    def say(what: str) -> None:
        print(f"[{time.monotonic() - started:5.1f} s] {what} ({done_count()}/{photos} photos "
              "done)", flush=True)

    kills = 0
    for fraction, fault in ((0.25, "kill"), (0.45, "redis"), (0.65, "kill")):
        wait_until(fraction)
        if fault == "redis":
            redis.stop()  # SIGTERM: a managed restart (an upgrade, a container move)
            say("stopped Redis (SIGTERM) for 3 s")
            time.sleep(3)
            redis.start()
            say("Redis is back")
            continue
        victim = workers[kills % len(workers)]
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        kills += 1
        say(f"SIGKILLed worker {victim.pid}; starting a replacement")
        workers[workers.index(victim)] = loop.start_worker(workdir / f"worker-r{kills}.log",
                                                           "--concurrency", "8")
    for sender in senders:
        sender.join()
    while done_count() < photos and time.monotonic() - started < args.timeout:
        time.sleep(0.2)
    time.sleep(5)  # anything late would show up as a duplicate now

    per_ticket = [len([n for n in zendesk.notes(t) if n.attachments]) for t in tickets]
    notes = sum(per_ticket)
    duplicates = sum(n - 1 for n in per_ticket if n > 1)
    lost = sum(1 for n in per_ticket if n == 0)
    edits = len(openai.calls)
    loop.stop()

    final = {k: v for k, v in sorted(answers.items()) if k >= 0}
    retried = {-k: v for k, v in sorted(answers.items()) if k < 0}
    print(f"\ndeliveries {args.deliveries} ({args.deliveries - photos} duplicates), answers "
          f"{final}, retried after {retried or 'nothing'} (0: no answer), workers killed {kills}, "
          f"{time.monotonic() - started:.0f} s")
    delays = [noted[t] - accepted[t] for t in tickets if t in noted and t in accepted]
    print(f"photos {photos}   notes {notes}   duplicates {duplicates}   lost {lost}   "
          f"edit calls {edits} (re-done after kills: {edits - photos})")
    if delays:
        print(f"webhook to note: median {sorted(delays)[len(delays) // 2]:.1f} s, longest "
              f"{max(delays):.1f} s")
    ok = notes == photos and duplicates == 0 and lost == 0
    print("OK: every photo got exactly one note" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
