"""The re-used-photo index (worker.dupes), on a real Redis: a recompressed, downscaled copy sent
on another ticket is found and named; twenty different scenes flag nothing; a photo is kept for its
window, then trimmed. The pipeline's use of it: tests/test_signals.py."""

from __future__ import annotations

import io
import random
import uuid
from collections.abc import Iterator

import pytest
import redis

from deskmark.sandbox.photos import damaged_product, scene
from tests.helpers import recompressed
from worker.dupes import MATCH_BITS, DupeIndex, distance, photo_hash

NOV_2 = 1793577600.0  # 2026-11-02 00:00 UTC
DAY = 86400


@pytest.fixture
def index(redis_url: str) -> Iterator[DupeIndex]:
    client = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/8")
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    yield DupeIndex(client, prefix=prefix, indexed_in=prefix + ":job:{}")
    client.close()


def hash_of(data: bytes) -> int:
    return photo_hash(io.BytesIO(data))


def test_a_recompressed_downscaled_copy_on_another_ticket_is_found(index: DupeIndex) -> None:
    photo = scene(901)
    index.add("dm-first", hash_of(photo), "zendesk", "1001", "361502847215", when=NOV_2 + 3600)
    copy = hash_of(recompressed(photo))
    assert distance(copy, hash_of(photo)) <= 3
    [seen] = index.find(copy, exclude="dm-second", when=NOV_2 + 7 * DAY)
    assert (seen.photo_id, seen.vendor, seen.ticket_id, seen.requester, seen.at) == (
        "dm-first", "zendesk", "1001", "361502847215", "2026-11-02")
    assert index.find(copy, exclude="dm-first", when=NOV_2 + 7 * DAY) == []  # not its own duplicate


def test_twenty_different_scenes_flag_nothing(index: DupeIndex) -> None:
    hashes = {f"dm-{seed}": hash_of(scene(seed)) for seed in range(910, 930)}
    for photo_id, value in hashes.items():
        index.add(photo_id, value, "gorgias", photo_id[3:], "someone")
    for photo_id, value in hashes.items():
        assert index.find(value, exclude=photo_id) == [], photo_id
        assert [s.photo_id for s in index.find(value)] == [photo_id]


def test_every_hash_within_seven_bits_is_found_without_a_scan(index: DupeIndex) -> None:
    rng = random.Random(3)
    stored = [rng.getrandbits(64) for _ in range(300)]
    for n, value in enumerate(stored):
        index.add(f"dm-{n}", value, "freshdesk", str(n), "r")
    for n, value in enumerate(stored[:100]):
        flips = rng.sample(range(64), 7)
        near = value
        for bit in flips:
            near ^= 1 << bit
        assert [s.photo_id for s in index.find(near, max_bits=7)] == [f"dm-{n}"]
        assert index.find(near, max_bits=MATCH_BITS) == []  # 7 bits is beyond the match


def test_indexing_a_photo_twice_keeps_one_entry(index: DupeIndex) -> None:
    value = hash_of(scene(940))
    assert index.add("dm-twice", value, "zendesk", "7", "r")
    assert not index.add("dm-twice", value, "zendesk", "7", "r")
    assert len(index.find(value)) == 1
    buckets = list(index.r.scan_iter(f"{index.prefix}:[0-3]:*"))
    assert len(buckets) == 4 and all(index.r.llen(key) == 1 for key in buckets)


def test_a_photo_is_kept_for_its_window_and_then_leaves(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/8")
    index = DupeIndex(client, prefix=f"test:{uuid.uuid4().hex[:8]}", days=30)
    value = hash_of(scene(941))
    assert index.add("dm-old", value, "zendesk", "1", "r", when=NOV_2)
    for later in (0, 29):  # found for the window ...
        assert [s.photo_id for s in index.find(value, when=NOV_2 + later * DAY)] == ["dm-old"], later
    assert index.find(value, when=NOV_2 + 30 * DAY) == []  # ... and not after, trimmed or not
    buckets = sorted(client.scan_iter(f"{index.prefix}:*"))
    assert len(buckets) == 4  # a photo is four records, and nothing else
    assert all(29 * DAY < client.ttl(key) <= 30 * DAY for key in buckets)  # a bucket no one adds to ends
    # A photo added after the window takes the old one's records out of the buckets they share:
    # one bit apart, the two share the buckets of bands 0-2.
    assert index.add("dm-new", value ^ 1, "zendesk", "2", "r", when=NOV_2 + 31 * DAY)
    assert sorted(client.llen(key) for key in client.scan_iter(f"{index.prefix}:*")) == [1, 1, 1, 1, 1]
    [seen] = index.find(value, when=NOV_2 + 31 * DAY)
    assert (seen.photo_id, seen.bits, seen.at) == ("dm-new", 1, "2026-12-03")
    client.close()


def test_a_match_found_through_a_later_band_is_named(index: DupeIndex) -> None:
    value = hash_of(scene(942))
    index.add("dm-first", value, "freshdesk", "77", "5", when=NOV_2)
    near = value ^ (0b11 << 48)  # two bits of band 0: found through bands 1-3 only
    [seen] = index.find(near, when=NOV_2 + DAY)
    assert (seen.photo_id, seen.vendor, seen.ticket_id, seen.requester, seen.at, seen.bits) == (
        "dm-first", "freshdesk", "77", "5", "2026-11-02", 2)


def test_the_sandboxs_product_photos_are_different_pictures_for_different_seeds() -> None:
    """Each test ticket's photo is its own picture: otherwise every ticket would be flagged."""
    hashes = [hash_of(damaged_product(800, 600, seed=seed)) for seed in range(120)]
    assert min(distance(a, b) for n, a in enumerate(hashes) for b in hashes[n + 1:]) > MATCH_BITS
    assert distance(hash_of(damaged_product(1600, 1200, seed=5)), hashes[5]) <= 2  # a seed: one picture


def test_a_hot_bucket_is_capped_and_its_lookups_bounded(redis_url: str) -> None:
    """20k photos sharing one band value (the same picture sent over and over): an add does
    not scan, the bucket keeps the newest BUCKET_CAP, and a lookup answers MAX_MATCHES."""
    from worker.dupes import BUCKET_CAP, MAX_MATCHES, plain

    client = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/13")
    client.flushdb()
    index = DupeIndex(client)
    base = 0x5A5A_1234_5678_9ABC
    pipe = client.pipeline(transaction=False)
    for n in range(20_000):  # band 0 (the top 16 bits) the same for all; the others vary
        index.add(f"dm-hot-{n}", base ^ (n * 0x9E37_79B9) & 0xFFFF_FFFF_FFFF, "zendesk", str(n), "r",
                  pipe=pipe)
        if n % 5000 == 4999:
            pipe.execute()
            pipe = client.pipeline(transaction=False)
    pipe.execute()
    hot = f"dm:ph:0:{base >> 48:04x}"
    assert client.llen(hot) == 20_000  # as a bulk load left it
    # (bench/dupes.py times the two below: add p99 under a millisecond, lookup a few.)
    assert index.add("dm-hot-new", base, "zendesk", "999999", "r")
    assert client.llen(hot) == BUCKET_CAP
    assert not index.add("dm-hot-new", base, "zendesk", "999999", "r")  # once, without a scan
    found = index.find(base ^ 1)  # was every one of them
    assert 1 <= len(found) <= MAX_MATCHES and found[0].photo_id == "dm-hot-new"
    assert plain(0) and plain(2**64 - 1) and index.find(0) == []  # a flat image matches nothing
    client.flushdb()
