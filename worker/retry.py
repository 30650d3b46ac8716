"""The retry policy, by error class, for every vendor call (OpenAI, Zendesk, Freshdesk, Slack).

| what happened                                         | what deskmark does                    |
|-------------------------------------------------------|---------------------------------------|
| `RateLimited`: 429 with `Retry-After`/`retry-after-ms`| waits what the vendor asked, + jitter |
| `RetryableError`: 5xx, 408/409, timeout, no connection| backs off 5 s·2ⁿ (≤ 5 min), jittered   |
| `PermanentError`: 400/401/403/404, insufficient_quota,| no retry: dead letter, note to agents |
|   moderation_blocked, not_in_channel …                |                                       |
| `Throttled`: deskmark's own edit rate, a busy job     | re-queued for then; not an attempt    |

At most MAX_RETRIES retries; every countdown stays below the broker's visibility timeout, or
the waiting message would be delivered a second time.
"""

from __future__ import annotations

import random

from integrations.errors import RateLimited, RetryableError

__all__ = ["MAX_RETRIES", "countdown", "throttle_countdown"]

MAX_RETRIES = 6
BASE_SECONDS = 5.0
CAP_SECONDS = 300.0


def countdown(exc: RetryableError, retries: int, visibility_timeout: int) -> float:
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        delay = exc.retry_after + random.uniform(0.05, 1.0)
    else:
        delay = min(CAP_SECONDS, BASE_SECONDS * 2**retries) * random.uniform(0.5, 1.0)
    return _below(delay, visibility_timeout)


def throttle_countdown(wait: float, visibility_timeout: int) -> float:
    return _below(wait + random.uniform(0.05, 0.5), visibility_timeout)


def _below(delay: float, visibility_timeout: int) -> float:
    return max(0.0, min(delay, visibility_timeout * 0.8))
