"""Re-running dead-lettered work: `deskmark replay JOB_ID…` / `--failed`, and the dashboard's
Replay buttons.

Replaying is idempotent: every step of a job is recorded, so a replay redoes only what did not
happen (a note that was posted is not posted again), and a finished job is left alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from integrations.config import Settings
from worker.app import QUEUE, make_celery
from worker.jobs import Job
from worker.store import Store

__all__ = ["replay", "replay_jobs"]

IN_FLIGHT = ("queued", "running", "retrying", "waiting")


def replay_jobs(store: Store, celery: Any, job_ids: list[str]) -> list[tuple[str, bool, str]]:
    """Queue each job (or dead event) again; return (job id, queued?, what happened)."""
    dead = set(store.dead_ids())
    results: list[tuple[str, bool, str]] = []
    for job_id in job_ids:
        record = store.job(job_id)
        state = record.get("state")
        if not record:
            results.append((job_id, False, "no such job"))
            continue
        if state == "done":
            store.unbury(job_id)
            results.append((job_id, False, "already done, nothing to replay"))
            continue
        if state in IN_FLIGHT and job_id not in dead:
            results.append((job_id, False, f"already {state}, not queued again"))
            continue
        # Queued before it is sent: the worker that takes the message must find it queued, for
        # a message that finds its job "failed" does nothing (worker.pipeline.run_job).
        store.update(job_id, {"state": "queued", "replayed": time.time(),
                              "reason": f"replayed after: {record.get('reason', '')}"[:300]})
        try:
            if record.get("kind") == "event":
                celery.send_task("deskmark.handle_event", args=[record["event"]], queue=QUEUE)
            else:
                celery.send_task("deskmark.process_photo",
                                 args=[Job.from_record(job_id, record).to_dict()], queue=QUEUE)
        except Exception:
            store.update(job_id, {"state": str(state), "reason": str(record.get("reason", ""))})
            raise
        store.unbury(job_id)
        results.append((job_id, True, f"queued again ({record.get('vendor')} ticket "
                                      f"{record.get('ticket_id')}; it had failed with: "
                                      f"{record.get('reason', 'unknown')})"))
    return results


def replay(settings: Settings, job_ids: list[str], failed: bool,
           echo: Callable[[str], None] = print) -> int:
    store = Store.from_url(settings.redis_url, retention_days=settings.retention_days)
    targets = store.dead_ids() if failed else job_ids
    if not targets:
        echo("nothing to replay: the dead-letter list is empty" if failed else "no job ids given")
        return 0
    results = replay_jobs(store, make_celery(settings), targets)
    for job_id, _, what in results:
        echo(f"{job_id}: {what}")
    return 1 if any(what == "no such job" for _, _, what in results) else 0
