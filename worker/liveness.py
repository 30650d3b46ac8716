"""Is the worker's consumer alive? Beats from inside the consumer's own event loop.

A thread of its own keeps beating when the consumer is wedged or dead, which is what Redis
restarts used to do to kombu's consumer (worker.broker). So the beat is a timer of the
consumer's event loop, added as a Celery consumer bootstep (Celery's documented extension
API): only a consumer that is connected and running its loop beats. Two things follow it:
- the Redis heartbeat behind `GET /readyz` and the dashboard (worker.tasks writes it only
  while the beats are fresh);
- `deskmark worker --healthcheck`, docker-compose's health check, which reads the beat file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from celery import bootsteps

__all__ = ["Liveness", "beat_file", "beat_age", "BEAT_EVERY", "STALE_AFTER"]

BEAT_EVERY = 5.0
STALE_AFTER = 60.0  # the health check's default: a consumer quiet this long is not healthy

_last_beat = 0.0  # time.monotonic() of this process's last beat


def beat_file() -> Path:
    """Where the beats go: DESKMARK_HEALTH_FILE, or a file in the temp directory."""
    return Path(os.environ.get("DESKMARK_HEALTH_FILE")
                or Path(tempfile.gettempdir()) / "deskmark-worker.alive")


def beat_age() -> float:
    """Seconds since this process's consumer last beat (infinite before the first)."""
    return time.monotonic() - _last_beat if _last_beat else float("inf")


def _beat() -> None:
    global _last_beat
    _last_beat = time.monotonic()
    with contextlib.suppress(OSError):  # read-only: the Redis heartbeat still follows the beats
        beat_file().touch()


class Liveness(bootsteps.StartStopStep):  # type: ignore[misc]
    """Beats every BEAT_EVERY seconds from the consumer's event loop, once it consumes."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None

    def start(self, parent: Any) -> None:
        _beat()
        self.tref = parent.timer.call_repeatedly(BEAT_EVERY, _beat, priority=10)

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop
