"""`deskmark replay JOB_ID…` / `deskmark replay --failed`: re-run dead-lettered work.

Replaying is idempotent: every step of a job is recorded, so a replay redoes only what did not
happen (a note that was posted is not posted again), and a finished job is left alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from integrations.config import Settings
from worker.app import QUEUE, make_celery
from worker.store import Store

__all__ = ["replay"]

IN_FLIGHT = ("queued", "running", "retrying", "waiting")


def replay(settings: Settings, job_ids: list[str], failed: bool,
           echo: Callable[[str], None] = print) -> int:
    store = Store.from_url(settings.redis_url)
    celery = make_celery(settings)
    targets = store.dead_ids() if failed else job_ids
    if not targets:
        echo("nothing to replay: the dead-letter list is empty" if failed else "no job ids given")
        return 0
    problems = 0
    for job_id in targets:
        record = store.job(job_id)
        state = record.get("state")
        if not record:
            echo(f"{job_id}: no such job")
            problems += 1
            continue
        if state == "done":
            store.unbury(job_id)
            echo(f"{job_id}: already done, nothing to replay")
            continue
        if state in IN_FLIGHT and job_id not in store.dead_ids():
            echo(f"{job_id}: already {state}, not queued again")
            continue
        if record.get("kind") == "event":
            celery.send_task("deskmark.handle_event", args=[record["event"]], queue=QUEUE)
        else:
            job = {"job_id": job_id, "vendor": record["vendor"],
                   "ticket_id": str(record["ticket_id"]), "photo": record["photo"]}
            celery.send_task("deskmark.process_photo", args=[job], queue=QUEUE)
        store.update(job_id, {"state": "queued", "replayed": time.time(),
                              "reason": f"replayed after: {record.get('reason', '')}"[:300]})
        store.unbury(job_id)
        echo(f"{job_id}: queued again ({record.get('vendor')} ticket {record.get('ticket_id')}; "
             f"it had failed with: {record.get('reason', 'unknown')})")
    return 1 if problems else 0
