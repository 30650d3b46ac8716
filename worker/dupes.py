"""Re-used photos: a perceptual hash of every customer photo, and an index in Redis that finds a
near-duplicate sent on another ticket without scanning.

The hash is a 64-bit difference hash (dHash): the photo in grey at 9×8, one bit per pair of
neighbours, set where the left one is darker. Recompressing at quality 70 and scaling to 80%
moves 0–3 bits; the tests' twenty different scenes are 15 or more apart, and among 200 random
synthetic scenes one pair came within 6 (tests/test_dupes.py).

The index splits each hash into four 16-bit bands. Two hashes at most 7 bits apart share a band
that differs in at most one bit (pigeonhole: 4 bands, 7 bits), so a lookup reads, for each
band, the bucket of its exact value and of its 16 one-bit neighbours: 68 buckets in one
pipeline, whatever the size of the index. Each bucket is a Redis list of 14-byte records: the
day the photo was sent, the hash's other 48 bits (the key holds the band's 16) and a 48-bit
reference to the photo. A record in band 0 also says what the reference stands for (the photo's
job, helpdesk, ticket and requester id), so a photo is in the index four times and nowhere else.

Entries in a list cannot expire one by one, and the index keeps a photo for `days`
(DESKMARK_DUPLICATE_DAYS): adding a photo drops the records older than that from the head of
each of its four lists (they were appended in the order they came), and a list no photo was
added to for `days` expires whole. A lookup skips any older record still waiting in a list.
bench/dupes.py, a million photos: memory per photo and lookup p99 in the README.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import IO, Any

import redis
from PIL import Image

__all__ = ["dhash", "photo_hash", "distance", "plain", "DupeIndex", "Seen", "MATCH_BITS", "BUCKET_CAP",
           "MAX_MATCHES"]

# At most this many bits apart: the same photo (see above for what moves how many).
MATCH_BITS = 6
BANDS = 4
REF_BYTES = 6  # a 48-bit reference: a chance in ~500 of one clash among a million photos


def dhash(image: Image.Image) -> int:
    """The 64-bit difference hash of `image`."""
    grey = image.convert("L").resize((9, 8), Image.Resampling.BOX)
    pixels = grey.tobytes()
    bits = 0
    for row in range(8):
        for col in range(8):
            left, right = pixels[row * 9 + col], pixels[row * 9 + col + 1]
            bits = (bits << 1) | (left < right)
    return bits


def photo_hash(source: IO[bytes]) -> int:
    """The hash of a photo file as the customer sent it, upright (its EXIF orientation applied,
    so a copy saved upright by an editor is the same photo). A JPEG is decoded at 1/8 scale."""
    from PIL import ImageOps

    source.seek(0)
    try:
        with Image.open(source) as image:
            image.draft("L", (max(9, image.width // 8), max(8, image.height // 8)))
            return dhash(ImageOps.exif_transpose(image))
    finally:
        source.seek(0)


def plain(value: int) -> bool:
    """A hash too plain to compare (see PLAIN_BITS)."""
    return not PLAIN_BITS <= value.bit_count() <= 64 - PLAIN_BITS


def distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def _bands(value: int) -> list[int]:
    return [(value >> (16 * (BANDS - 1 - i))) & 0xFFFF for i in range(BANDS)]


def reference(photo_id: str) -> int:
    """A photo's 48-bit reference in the index (from its job id, or any stable id)."""
    return int.from_bytes(hashlib.sha256(photo_id.encode()).digest()[:REF_BYTES], "big")


def _rest(value: int, band: int) -> int:
    """The hash's other 48 bits: what a record in band `band`'s bucket keeps of it (the bucket's
    key holds this band's 16)."""
    shift = 16 * (BANDS - 1 - band)
    return ((value >> 16) & ~((1 << shift) - 1)) | (value & ((1 << shift) - 1))


def _whole(band: int, part: int, rest: int) -> int:
    """The 64-bit hash from a band's 16 bits and the other 48 (`_rest`'s inverse)."""
    shift = 16 * (BANDS - 1 - band)
    low = rest & ((1 << shift) - 1)
    return ((rest >> shift) << (shift + 16)) | (part << shift) | low


def _day(when: float) -> int:
    return int(when // 86400)


# Adds a photo's four records, once: KEYS are its four buckets (band 0 first) and the hash
# that says it is indexed (its job's record); ARGV its four records, the first day still kept
# (2 bytes, big-endian, as records start), the buckets' time to live, the field to set, and the
# cap. Older records leave the head of each bucket first; past the cap, the oldest go too.
_ADD = """
if redis.call('HSETNX', KEYS[5], ARGV[7], 1) == 0 then return 0 end
for i = 1, 4 do
  while true do
    local first = redis.call('LINDEX', KEYS[i], 0)
    if not first or string.sub(first, 1, 2) >= ARGV[5] then break end
    redis.call('LPOP', KEYS[i])
  end
  redis.call('RPUSH', KEYS[i], ARGV[i])
  redis.call('LTRIM', KEYS[i], -tonumber(ARGV[8]), -1)
  redis.call('EXPIRE', KEYS[i], ARGV[6])
end
return 1
"""
# A bucket holds at most this many records, the newest: at a million photos a bucket holds 15
# on average, so only a "hot" one ever meets the cap (many photos with one band value: flat
# images, or the same picture sent over and over). It bounds an add and a lookup's reads.
BUCKET_CAP = 512
MAX_MATCHES = 10  # a lookup answers with at most this many photos, nearest first
# A hash with almost no bits set, or almost all, comes from a photo with no structure (flat,
# blank, all one colour): every such photo "matches" every other, so it is not compared.
PLAIN_BITS = 4


@dataclass(frozen=True)
class Seen:
    """A near-duplicate found in the index."""

    photo_id: str
    vendor: str
    ticket_id: str
    requester: str
    at: str  # the date (UTC) it was sent
    bits: int  # how far its hash is from the one looked up


class DupeIndex:
    """The index, keeping each photo for `days` after it was sent (see the module's doc)."""

    def __init__(self, client: redis.Redis, prefix: str = "dm:ph", days: int = 90,
                 indexed_in: str = "dm:job:{}") -> None:
        self.r = client
        self.prefix = prefix
        # The hash (by photo id) whose field `dupe_indexed` says the photo is in: its job's record.
        self.indexed_in = indexed_in
        self.days = max(1, days)
        self._add = client.register_script(_ADD)

    def _bucket(self, band: int, value: int) -> str:
        return f"{self.prefix}:{band}:{value:04x}"

    def add(self, photo_id: str, value: int, vendor: str, ticket_id: str, requester: str,
            when: float | None = None, pipe: Any | None = None) -> bool:
        """Index a photo sent at `when` (epoch; now by default), once: False when it was
        already there, as a field of its job's record says (photo ids are job ids: no list is
        scanned to find out). With `pipe`, a bulk load of new photos, it is only appended."""
        day = _day(time.time() if when is None else when)
        ref = reference(photo_id)
        about = "\t".join((photo_id, vendor, ticket_id, requester)).encode()
        stamp, tail = day.to_bytes(2, "big"), ref.to_bytes(REF_BYTES, "big")
        keys, records = [], []
        for band, part in enumerate(_bands(value)):
            keys.append(self._bucket(band, part))
            records.append(stamp + _rest(value, band).to_bytes(6, "big") + tail + (about if band == 0 else b""))
        ttl = self.days * 86400
        if pipe is not None:
            for key, record in zip(keys, records, strict=True):
                pipe.rpush(key, record)
                pipe.expire(key, ttl)
            return True
        kept_from = (day - self.days + 1).to_bytes(2, "big")
        return bool(self._add(keys=[*keys, self.indexed_in.format(photo_id)],
                              args=[*records, kept_from, ttl, "dupe_indexed", BUCKET_CAP]))

    def find(self, value: int, exclude: str | None = None, max_bits: int = MATCH_BITS,
             when: float | None = None) -> list[Seen]:
        """Photos sent in the `days` up to `when` (now by default) whose hash is at most
        `max_bits` (≤ 7) from `value`; nearest first, then oldest first."""
        kept_from = _day(time.time() if when is None else when) - self.days + 1
        skip = reference(exclude) if exclude else None
        probes = []
        for band, part in enumerate(_bands(value)):
            probes += [(band, part ^ flip) for flip in (0, *(1 << bit for bit in range(16)))]
        if plain(value):
            return []
        pipe = self.r.pipeline(transaction=False)
        for band, part in probes:
            pipe.lrange(self._bucket(band, part), -BUCKET_CAP, -1)  # the newest, at most the cap
        parts = _bands(value)
        rests = [_rest(value, band) for band in range(BANDS)]
        found: dict[int, tuple[int, int]] = {}  # reference -> (bits, its band 0 value)
        about: dict[int, bytes] = {}  # reference -> its band 0 record
        for (band, part), records in zip(probes, pipe.execute(), strict=True):
            # The distance: the band's bits (from the bucket's key) plus the rest's.
            base, rest = (part ^ parts[band]).bit_count(), rests[band]
            for record in records:
                other = int.from_bytes(record[2:8], "big")
                bits = base + (other ^ rest).bit_count()
                if bits > max_bits or int.from_bytes(record[:2], "big") < kept_from:
                    continue
                ref = int.from_bytes(record[8:14], "big")
                if ref == skip:
                    continue
                found[ref] = (bits, _bands(_whole(band, part, other))[0])
                if band == 0:
                    about[ref] = record
        missing = {zero for ref, (_, zero) in found.items() if ref not in about}
        if missing:  # found through another band only: band 0's record says what it is
            pipe = self.r.pipeline(transaction=False)
            for zero in missing:
                pipe.lrange(self._bucket(0, zero), -BUCKET_CAP, -1)
            for records in pipe.execute():
                for record in records:
                    ref = int.from_bytes(record[8:14], "big")
                    if ref in found:
                        about[ref] = record
        seen = []
        for ref, (bits, _) in found.items():
            record = about.get(ref)
            if record is None:
                continue  # its band 0 record left first (a lookup racing the trim)
            photo_id, vendor, ticket_id, requester = bytes(record[14:]).decode().split("\t")
            at = time.strftime("%Y-%m-%d", time.gmtime(int.from_bytes(record[:2], "big") * 86400))
            seen.append(Seen(photo_id, vendor, ticket_id, requester, at, bits))
        return sorted(seen, key=lambda s: (s.bits, s.at))[:MAX_MATCHES]
