"""The re-used-photo index (worker.dupes), on a real Redis: a recompressed, downscaled copy sent
on another ticket is found and named; twenty different scenes flag nothing. (Not yet wired into
the pipeline: see the README.)"""

from __future__ import annotations

import io
import random
import uuid
from collections.abc import Iterator

import pytest
import redis
from PIL import Image

from deskmark.sandbox.photos import scene
from worker.dupes import MATCH_BITS, DupeIndex, dhash, distance


@pytest.fixture
def index(redis_url: str) -> Iterator[DupeIndex]:
    client = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/8")
    yield DupeIndex(client, prefix=f"test:{uuid.uuid4().hex[:8]}")
    client.close()


def hash_of(data: bytes) -> int:
    return dhash(Image.open(io.BytesIO(data)))


def recompressed(data: bytes, quality: int = 70, scale: float = 0.8) -> bytes:
    image = Image.open(io.BytesIO(data))
    out = io.BytesIO()
    image.resize((int(image.width * scale), int(image.height * scale))).save(out, "JPEG", quality=quality)
    return out.getvalue()


def test_a_recompressed_downscaled_copy_on_another_ticket_is_found(index: DupeIndex) -> None:
    photo = scene(901)
    index.add("dm-first", hash_of(photo), "zendesk", "1001", "361502847215", "2026-11-02")
    copy = hash_of(recompressed(photo))
    assert distance(copy, hash_of(photo)) <= 3
    [seen] = index.find(copy, exclude="dm-second")
    assert (seen.photo_id, seen.vendor, seen.ticket_id, seen.requester, seen.at) == (
        "dm-first", "zendesk", "1001", "361502847215", "2026-11-02")
    assert index.find(copy, exclude="dm-first") == []  # a photo is not its own duplicate


def test_twenty_different_scenes_flag_nothing(index: DupeIndex) -> None:
    hashes = {f"dm-{seed}": hash_of(scene(seed)) for seed in range(910, 930)}
    for photo_id, value in hashes.items():
        index.add(photo_id, value, "gorgias", photo_id[3:], "someone", "2026-11-29")
    for photo_id, value in hashes.items():
        assert index.find(value, exclude=photo_id) == [], photo_id
        assert [s.photo_id for s in index.find(value)] == [photo_id]


def test_every_hash_within_seven_bits_is_found_without_a_scan(index: DupeIndex) -> None:
    rng = random.Random(3)
    stored = [rng.getrandbits(64) for _ in range(300)]
    for n, value in enumerate(stored):
        index.add(f"dm-{n}", value, "freshdesk", str(n), "r", "2026-11-29")
    for n, value in enumerate(stored[:100]):
        flips = rng.sample(range(64), 7)
        near = value
        for bit in flips:
            near ^= 1 << bit
        assert [s.photo_id for s in index.find(near, max_bits=7)] == [f"dm-{n}"]
        assert index.find(near, max_bits=MATCH_BITS) == []  # 7 bits is beyond the match


def test_indexing_a_photo_twice_keeps_one_entry(index: DupeIndex) -> None:
    value = hash_of(scene(940))
    for _ in range(2):
        index.add("dm-twice", value, "zendesk", "7", "r", "2026-11-29")
    assert len(index.find(value)) == 1
    assert all(index.r.llen(key) == 1 for key in index.r.scan_iter(f"{index.prefix}:[0-3]:*"))
