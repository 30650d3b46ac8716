"""Reading content credentials deskmark did not write (a customer's photo, a file handed to
`deskmark verify`) where a hostile manifest cannot hurt: in a short-lived child process with an
address-space ceiling (RLIMIT_AS), a CPU and a wall-clock limit, no environment but what Python
needs (no secrets), and c2pa's no-network context (worker.credentials.context).

c2pa's reader allocates whatever a manifest's CBOR declares: a 9 KB JPEG whose one CBOR header
declares a 5 GiB text string took an in-process read to 5.3 GB of RSS and 17 s. In the child
it meets the ceiling, the child dies, and the photo is marked all the same, its Checks line
saying the credentials could not be read. A file with no sign of a manifest (no JUMBF box, no
C2PA chunk) is not read at all, so ordinary photos cost nothing.

Measured on the 2-core development machine: the child peaks at 65 MB of address space and
43 MB resident for a small file, and takes 0.14-0.19 s, most of it starting Python and c2pa.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from typing import IO

from worker.credentials import Summary

__all__ = ["Unreadable", "read_untrusted", "may_carry_manifest", "memory_cost", "TIMEOUT_SECONDS"]

BASE_ADDRESS_SPACE = 192 * 2**20  # the child's own: Python, c2pa, their libraries (65 MB seen)
ADDRESS_PER_BYTE = 6  # c2pa holds the file about 2.5 times over; room for its structures
BASE_RESIDENT = 48 * 2**20  # what the child holds resident before the file (43 MB seen)
RESIDENT_PER_BYTE = 3
TIMEOUT_SECONDS = 10.0
OUTPUT_LIMIT = 1 << 20  # the child prints a Summary of clipped strings: far less than this
# Signs of a manifest inside a file: JUMBF boxes (JPEG APP11, HEIF, the manifest store itself)
# and the PNG and WebP C2PA chunks.
MARKERS = (b"jumb", b"jumd", b"caBX", b"C2PA")


@dataclass(frozen=True)
class Unreadable:
    """The file's credentials could not be read: `reason` ("too large", "timed out", …)."""

    reason: str


def may_carry_manifest(source: bytes | IO[bytes]) -> bool:
    """Whether the file shows a sign of an embedded manifest (read in chunks, left at 0)."""
    if isinstance(source, bytes):
        return any(marker in source for marker in MARKERS)
    source.seek(0)
    tail = b""
    try:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            window = tail + chunk
            if any(marker in window for marker in MARKERS):
                return True
            tail = chunk[-3:]
        return False
    finally:
        source.seek(0)


def memory_cost(size: int) -> int:
    """What a read of a `size`-byte file holds resident, for the worker's image memory budget."""
    return BASE_RESIDENT + RESIDENT_PER_BYTE * size


def _ceiling(size: int) -> int:
    return BASE_ADDRESS_SPACE + ADDRESS_PER_BYTE * size


def read_untrusted(source: bytes | IO[bytes], content_type: str, anchors: str | None = None,
                   timeout: float = TIMEOUT_SECONDS) -> Summary | Unreadable | None:
    """The file's content credentials summed up (worker.credentials.Summary), read in a child
    process; None when it carries none; Unreadable when the child ran out of memory or time."""
    if isinstance(source, bytes):
        data = source
    else:
        source.seek(0)
        data = source.read()
        source.seek(0)
    if not may_carry_manifest(data):
        return None
    header = json.dumps({"type": content_type, "anchors": anchors}).encode()
    # Only what Python needs to start and find deskmark: no API keys or tokens in reach.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "TMPDIR")}
    try:
        done = subprocess.run([sys.executable, "-m", "worker.manifests", str(_ceiling(len(data)))],
                              input=header + b"\n" + data, capture_output=True, timeout=timeout,
                              env=env, check=False)
    except subprocess.TimeoutExpired:
        return Unreadable("timed out")
    if done.returncode != 0:
        ran_out = done.returncode in (-6, -9, 3) or b"memory" in done.stderr.lower()
        return Unreadable("too large" if ran_out else "unreadable")
    if len(done.stdout) > OUTPUT_LIMIT:
        return Unreadable("unreadable")
    found = json.loads(done.stdout)
    return Summary.from_dict(found) if found is not None else None


def _child(ceiling: int) -> int:
    """In the child: limits first, then c2pa, then the file from stdin."""
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
    cpu = int(TIMEOUT_SECONDS) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # it writes no file
    header, _, data = sys.stdin.buffer.read().partition(b"\n")
    options = json.loads(header)
    try:
        from worker import credentials

        summary = credentials.read(data, str(options["type"]), anchors=options.get("anchors"))
    except MemoryError:
        return 3
    sys.stdout.write(json.dumps(summary.to_dict() if summary is not None else None))
    return 0


if __name__ == "__main__":
    sys.exit(_child(int(sys.argv[1])))
