"""Limits shared by every worker, kept in Redis with atomic scripts and Redis's own clock.

- Edit rate (DESKMARK_EDIT_RATE_PER_MINUTE): at most one paid edit per 60/rate seconds across
  all workers (a token bucket of depth one; OpenAI's image limits are per minute and tiny). A job
  that finds no slot is re-queued for when the next one opens: it does not hold a worker slot.
- Daily spend (DESKMARK_DAILY_BUDGET_USD): before the paid calls for a photo, an estimate is
  reserved, but only while the day's spend plus reservations is under the cap. Afterwards the
  reservation is settled to the calls' real cost (from `usage`). Concurrent workers therefore
  overshoot by at most one photo, never by one photo each.
"""

from __future__ import annotations

from dataclasses import dataclass

from integrations.config import Settings
from integrations.errors import Throttled
from worker.store import SERIES_DAYS, Store, day_key

__all__ = ["EditGate", "Reservation", "day_key"]

# KEYS[1] = next free slot (ms, Redis clock); ARGV[1] = interval ms. Returns ms to wait (0: go).
_RATE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
if free > now then return free - now end
redis.call('SET', KEYS[1], now + ARGV[1], 'PX', ARGV[1] + 60000)
return 0
"""

# KEYS[1] = today's spend; ARGV[1] = estimate, ARGV[2] = cap, ARGV[3] = TTL. Returns 1 if reserved.
# A call is reserved only when its estimate fits under the cap: the budget is not overshot by a
# photo, and when an edit no longer fits, the cheaper locate call may still (worker.marking).
_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
if spent + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


@dataclass
class Reservation:
    day: str
    amount: float


class EditGate:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.interval_ms = int(60_000 / settings.edit_rate_per_minute) if settings.edit_rate_per_minute else 0
        self.budget = settings.daily_budget_usd
        self._rate = store.r.register_script(_RATE)
        self._reserve = store.r.register_script(_RESERVE)

    def take_edit_slot(self) -> None:
        """Return when this worker may make an edit call now; else raise Throttled."""
        if not self.interval_ms:
            return
        wait_ms = int(self._rate(keys=["dm:limit:edit"], args=[self.interval_ms]))
        if wait_ms > 0:
            raise Throttled(f"edit rate limit: next slot in {wait_ms / 1000:.1f} s", wait_ms / 1000)

    def reserve(self, estimate: float) -> Reservation | None:
        """Reserve `estimate` of today's budget; None when it does not fit under the cap."""
        day = day_key()
        if not self._reserve(keys=[f"dm:spend:{day}"], args=[estimate, self.budget, SERIES_DAYS * 86400]):
            return None
        return Reservation(day, estimate)

    def settle(self, reservation: Reservation, actual: float) -> None:
        """Replace the reservation by what the calls really cost (0 when none was billed)."""
        delta = actual - reservation.amount
        if delta:
            self.store.r.incrbyfloat(f"dm:spend:{reservation.day}", delta)
        self.store.add_spend(actual)

    def spent(self, day: str | None = None) -> float:
        value = self.store.r.get(f"dm:spend:{day or day_key()}")
        return round(float(value), 6) if value else 0.0
