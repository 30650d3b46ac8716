"""The errors deskmark's vendor code raises; vendor SDK and HTTP errors are translated here.

    VendorError                 a vendor call did not do what we asked
     ├── RetryableError         worth trying again later (5xx, timeouts, connection errors)
     │    └── RateLimited       429 with the vendor's own `retry_after` (seconds)
     └── PermanentError         retrying unchanged cannot help (4xx, quota, moderation)
    UnusablePhoto               the customer's file cannot be marked (not an image, broken, too big)
    UnsafeURL                   an attachment URL we refuse to fetch
    Throttled                   deskmark's own limit says "not yet": try again in `wait` seconds
"""

from __future__ import annotations

__all__ = [
    "VendorError",
    "RetryableError",
    "RateLimited",
    "PermanentError",
    "UnusablePhoto",
    "UnsafeURL",
    "Throttled",
]


class VendorError(Exception):
    def __init__(
        self,
        message: str,
        *,
        vendor: str,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.vendor = vendor
        self.status = status
        self.code = code
        self.request_id = request_id

    def record(self) -> dict[str, object]:
        """What the job record keeps of the vendor's answer."""
        return {
            "vendor": self.vendor,
            "status": self.status,
            "code": self.code,
            "request_id": self.request_id,
            "message": str(self)[:500],
        }


class RetryableError(VendorError):
    pass


class RateLimited(RetryableError):
    def __init__(self, message: str, *, retry_after: float | None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class PermanentError(VendorError):
    pass


class UnusablePhoto(Exception):
    """The file is skipped; the message is the reason shown to agents and operators."""


class UnsafeURL(Exception):
    pass


class Throttled(Exception):
    """Not an error: a shared limit (edit rate, a busy job) says to come back in `wait` s."""

    def __init__(self, message: str, wait: float) -> None:
        super().__init__(message)
        self.wait = wait
