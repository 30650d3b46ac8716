"""Fetching customer attachments without becoming a proxy into our own network.

Every hop of a download is checked: the host must be the vendor's own, one of its known
attachment locations (a host, or a host and path prefix where the vendor's files share a host
with anyone's, as S3 buckets do), or listed in DESKMARK_ATTACHMENT_HOSTS; a host that resolves
to a private, loopback or link-local address is refused unless it is allowed explicitly
(configured by the deployer, not merely matched by a wildcard). The connection then goes to the
very address that was checked, with the host name kept for the Host header, SNI and
certificate: a name that resolves to something else a moment later (DNS rebinding) cannot move
it. Credentials go only to the vendor's own origin, on the first hop only (a redirect, even one
back to the vendor, gets none), and never for a URL a customer wrote. The body is streamed with
a byte cap, and the whole download has a deadline, whatever the per-read timeouts allow.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from integrations.errors import PermanentError, RetryableError, UnsafeURL, UnusablePhoto

__all__ = ["DownloadPolicy", "fetch", "plain_path"]

MAX_REDIRECTS = 5
DEFAULT_MAX_BYTES = 40 * 1024 * 1024
DEFAULT_DEADLINE_SECONDS = 120.0  # 40 MB at a slow 2.7 Mbit/s; a drip-feeding host is cut off
SPOOL_BYTES = 1024 * 1024  # a download bigger than this waits on disk


@dataclass(frozen=True)
class DownloadPolicy:
    vendor: str
    vendor_origin: str  # scheme://host[:port] of the vendor API; gets credentials
    # The vendor's attachment locations: `host`, `*.domain`, or `host/path-prefix` (a bucket on
    # a shared S3 host); they must resolve to public addresses.
    known_hosts: tuple[str, ...] = ()
    extra_hosts: tuple[str, ...] = ()  # DESKMARK_ATTACHMENT_HOSTS: explicitly trusted
    max_bytes: int = DEFAULT_MAX_BYTES
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS

    def vet(self, url: str) -> tuple[bool, str | None]:
        """Raise UnsafeURL if `url` may not be fetched. Return whether it is the vendor's own
        origin (where credentials may go), and the checked address to connect to (None where
        the host is trusted by configuration)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UnsafeURL(f"not an http(s) URL: {url[:200]}")
        plain_path(parts.path)  # what is matched below is what will be sent
        host = parts.hostname.lower()
        netloc = f"{host}:{parts.port}" if parts.port else host
        origin = f"{parts.scheme}://{netloc}"
        vendor = urlsplit(self.vendor_origin)
        vendor_netloc = vendor.netloc.lower()
        if origin == f"{vendor.scheme}://{vendor_netloc}":
            return True, None
        # The vendor's own host counts only with its own port: 127.0.0.1:6379 is not the vendor.
        explicit = _matches(host, netloc, parts.path, self.extra_hosts) or netloc == vendor_netloc
        if not explicit and not _matches(host, netloc, parts.path, self.known_hosts):
            raise UnsafeURL(f"{netloc}{parts.path[:80]} is not {self.vendor}'s nor an allowed "
                            "attachment location")
        return False, (None if explicit else _public_address(host))


def plain_path(path: str) -> str:
    """`path` when it means what it says; else UnsafeURL. A `.` or `..` segment, also spelt
    %2e, or reached through an encoded slash or a backslash (`..%2F`, `..%5C`) would be
    resolved by the client or a server after the path was matched:
    `/cdn.freshdesk.com/../other-bucket/x.jpg` is sent as `/other-bucket/x.jpg`. An encoded
    slash elsewhere (a file named `a/b.jpg`) is only a name."""
    for segment in path.split("/"):
        if any(part in (".", "..") for part in re.split(r"[/\\]", unquote(segment))):
            raise UnsafeURL(f"the path {path[:120]!r} has a dot segment: refused")
    return path


def _matches(host: str, netloc: str, path: str, patterns: tuple[str, ...]) -> bool:
    for pattern in patterns:
        pattern, _, prefix = pattern.lower().partition("/")
        # A bucket on a shared host: only that bucket's paths, on a segment boundary.
        if prefix and not path.lower().startswith(f"/{prefix.rstrip('/')}/"):
            continue
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif pattern in (host, netloc):
            return True
    return False


def _public_address(host: str) -> str:
    """Resolve `host` once; refuse it if any address is not public; return the one to use."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise UnsafeURL(f"cannot resolve {host}: {exc}") from exc
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        if not address.is_global:
            raise UnsafeURL(f"{host} resolves to a non-public address ({address})")
    if not addresses:
        raise UnsafeURL(f"cannot resolve {host}: no address")
    # IPv4 first: containers often have no IPv6 route, and only this one address is tried.
    return str(min(addresses, key=lambda address: address.version))


def _pinned(url: str, address: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """`url` aimed at `address`, with the Host header and TLS server name of the original."""
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    original = parts.netloc.rsplit("@", 1)[-1]
    return (parts._replace(netloc=netloc).geturl(), {"Host": original},
            {"sni_hostname": parts.hostname or ""})


@functools.cache
def _tls() -> ssl.SSLContext:
    # httpx's own default (certifi's roots), built once: loading the roots costs ~25 ms of CPU,
    # with the GIL held, which a fresh client per download would pay every time.
    return httpx.create_ssl_context()


def fetch(url: str, policy: DownloadPolicy, vendor_client: httpx.Client,
          credentials: bool = True) -> tuple[BinaryIO, str]:
    """Download `url`, following redirects hop by hop; return (the file, content type).

    The file is a temporary one: kept in memory up to SPOOL_BYTES, on disk beyond, so that a
    worker's many jobs do not hold their photos (up to max_bytes each) in memory while they
    wait on the edit model. Close it when done; that deletes it.

    `credentials=False` for a URL that a customer wrote (an inline image in a ticket's HTML):
    it never gets the vendor's credentials, not even on the vendor's own origin."""
    deadline = time.monotonic() + policy.deadline_seconds
    # A client of its own per download: no cookies or connections carried from one customer's
    # attachment to the next, and never the vendor's credentials.
    with httpx.Client(timeout=vendor_client.timeout, trust_env=False, verify=_tls()) as anonymous:
        for hop in range(MAX_REDIRECTS + 1):
            vendor_origin, address = policy.vet(url)
            # Credentials on the first hop only: a redirect chooses its own target, and one back
            # to the vendor's origin would otherwise carry the API key to a path it chose.
            client = vendor_client if vendor_origin and credentials and hop == 0 else anonymous
            target, headers, extensions = (url, {}, {}) if address is None else _pinned(url, address)
            timeout = _remaining(deadline, policy)
            try:
                with client.stream("GET", target, headers=headers, extensions=extensions,
                                   follow_redirects=False,
                                   timeout=httpx.Timeout(timeout)) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code == 429 or response.status_code >= 500:
                        raise RetryableError(
                            f"attachment host answered {response.status_code}",
                            vendor=policy.vendor, status=response.status_code,
                        )
                    if not response.is_success:
                        raise PermanentError(
                            f"attachment download answered {response.status_code}",
                            vendor=policy.vendor, status=response.status_code,
                        )
                    return _read_capped(response, policy, deadline), response.headers.get(
                        "content-type", ""
                    )
            except httpx.TimeoutException as exc:
                raise RetryableError("attachment download timed out", vendor=policy.vendor) from exc
            except httpx.TransportError as exc:
                raise RetryableError(
                    f"attachment download failed: {exc}", vendor=policy.vendor
                ) from exc
    raise UnsafeURL(f"more than {MAX_REDIRECTS} redirects")


def _remaining(deadline: float, policy: DownloadPolicy) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise RetryableError(f"attachment download took longer than {policy.deadline_seconds:.0f} s",
                             vendor=policy.vendor)
    return left


def _read_capped(response: httpx.Response, policy: DownloadPolicy, deadline: float) -> BinaryIO:
    max_bytes = policy.max_bytes
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise UnusablePhoto(f"file is larger than {max_bytes // (1024 * 1024)} MB")
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, prefix="deskmark-photo-")  # noqa: SIM115 (returned open: the caller closes it)
    try:
        total = 0
        for chunk in response.iter_bytes():
            _remaining(deadline, policy)  # a host that drip-feeds is cut off at the deadline
            total += len(chunk)
            if total > max_bytes:
                raise UnusablePhoto(f"file is larger than {max_bytes // (1024 * 1024)} MB")
            spool.write(chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool  # type: ignore[return-value]
