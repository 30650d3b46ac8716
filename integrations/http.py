"""The one place deskmark builds HTTP clients for vendors, and turns their answers into errors.

Vendor clients never construct `httpx.Client` themselves: `make_http_client` sets timeouts,
the user agent and auth, and `raise_for_vendor` maps 429/5xx/4xx to `integrations.errors`.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Mapping

import httpx

from integrations.errors import PermanentError, RateLimited, RetryableError

__all__ = ["USER_AGENT", "make_http_client", "raise_for_vendor", "parse_retry_after", "call", "Paced"]

USER_AGENT = "deskmark/0.1 (+https://github.com/deskmark/deskmark)"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def make_http_client(
    base_url: str = "",
    *,
    auth: httpx.Auth | tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
) -> httpx.Client:
    # Redirects are never followed implicitly: downloads follow them hop by hop (see downloads).
    return httpx.Client(
        base_url=base_url,
        auth=auth,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `retry-after-ms` (OpenAI), `Retry-After` (seconds or HTTP date) or
    `X-RateLimit-Retry-After` (Help Scout)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    # Help Scout says it as X-RateLimit-Retry-After (seconds).
    value = headers.get("retry-after") or headers.get("x-ratelimit-retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def raise_for_vendor(response: httpx.Response, vendor: str) -> httpx.Response:
    """Return the response when it is a success; raise the matching deskmark error otherwise."""
    if response.is_success:
        return response
    status = response.status_code
    request_id = response.headers.get("x-request-id") or response.headers.get("x-zendesk-request-id")
    detail = " ".join(response.text[:300].split())
    message = f"{vendor} answered {status} to {response.request.method} {response.request.url.path}: {detail}"
    kw = {"vendor": vendor, "status": status, "request_id": request_id}
    if status == 429 or (status == 503 and "retry-after" in response.headers):
        raise RateLimited(message, retry_after=parse_retry_after(response.headers), **kw)
    if status >= 500 or status in (408, 409):
        raise RetryableError(message, **kw)
    raise PermanentError(message, **kw)


def call(client: httpx.Client, vendor: str, method: str, url: str, **kw: object) -> httpx.Response:
    """One request; transport failures become `RetryableError`, bad statuses deskmark errors."""
    try:
        response = client.request(method, url, **kw)  # type: ignore[arg-type]
    except httpx.TimeoutException as exc:
        raise RetryableError(f"{vendor} timed out on {method} {url}", vendor=vendor) from exc
    except httpx.TransportError as exc:
        raise RetryableError(f"{vendor} unreachable on {method} {url}: {exc}", vendor=vendor) from exc
    return raise_for_vendor(response, vendor)


class Paced:
    """Calls to a vendor whose account-wide rate budget is spent wait, rather than spend the
    next window's calls on 429s: after a 429 (for its Retry-After), or when the vendor says no
    calls are left, every call of this client raises RateLimited until the pause ends, which
    the worker turns into a retry at that time."""

    def __init__(self, client: httpx.Client, vendor: str) -> None:
        self.client = client
        self.vendor = vendor
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def request(self, method: str, url: str, **kw: object) -> httpx.Response:
        wait = self._paused_until - time.monotonic()
        if wait > 0:
            raise RateLimited(f"{self.vendor} rate limit reached; waiting {wait:.0f} s",
                              retry_after=wait, vendor=self.vendor, status=429)
        try:
            return call(self.client, self.vendor, method, url, **kw)
        except RateLimited as exc:
            self.pause(exc.retry_after or 60)
            raise

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
