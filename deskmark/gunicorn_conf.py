"""gunicorn settings `deskmark web` runs with: JSON logs, and Prometheus multiprocess metrics
(each worker writes its counters to PROMETHEUS_MULTIPROC_DIR; /metrics sums them)."""

from __future__ import annotations

import os
import pathlib
from typing import Any

accesslog = "-"
# One JSON object per request, like the application's own log lines. No headers, no bodies.
access_log_format = ('{"time": "%(t)s", "level": "info", "logger": "gunicorn.access", '
                     '"method": "%(m)s", "path": "%(U)s", "status": %(s)s, "duration_ms": %(M)s, '
                     '"remote": "%(h)s"}')


def on_starting(server: Any) -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:  # counters of a previous run would be summed in: start from zero
        path = pathlib.Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()


def post_fork(server: Any, worker: Any) -> None:
    from integrations.config import Settings
    from integrations.logs import configure_logging

    configure_logging(Settings.from_env())


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        mark_dead: Any = multiprocess.mark_process_dead  # untyped in prometheus_client
        mark_dead(worker.pid)
