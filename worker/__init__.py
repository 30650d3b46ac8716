"""The Celery worker: `celery -A worker worker` (or `deskmark worker`) runs it.

The Celery app is built from the environment on first access, so that importing
`worker.app` or `worker.images` (as the web app and the CLI do) reads no configuration.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from worker.tasks import app

        return app
    raise AttributeError(name)
