"""Noticing dead workers: a job's lease is renewed while it runs, and a reaper re-queues the
jobs whose lease lapsed, within two minutes of a SIGKILL, an OOM kill or a lost host.

- A running job holds `dm:lease:{job}` for LEASE_SECONDS; one thread per worker process renews
  every lease the process holds every RENEW_EVERY seconds, and a job checks it still holds its
  lease right before each side effect (the note, the tags, Slack), so a job that lost it to a
  reaper stops instead of doubling a note.
- `dm:watch` is a sorted set of the jobs that are not finished, scored by when they must show
  life: a running job at once (its lease says whether it is alive), a job waiting for a retry
  or the edit rate at its due time plus RESTART_GRACE.
- Every worker runs `reap` every REAP_EVERY seconds: an overdue job without a lease is claimed
  atomically (so only one reaper acts) and queued again. Its message may still come back after
  the broker's visibility timeout; by then the job is done, or leased, and the message does
  nothing.

So a dead worker's job resumes after at most LEASE_SECONDS + REAP_EVERY (75 s) plus the time a
worker takes to start it, whatever DESKMARK_VISIBILITY_TIMEOUT says (DESKMARK_LEASE_SECONDS
changes the 60 s).

A poison job, one whose photo kills its worker every time (an out-of-memory kill), must end:
- a job whose worker died while it was running counts a death (`worker_deaths`);
- after ALONE_AFTER deaths it runs alone: one such job at a time in the whole deployment (the
  `suspect` lease), so that the jobs beside it no longer die with it, and its next death is
  its own;
- at POISON_DEATHS it is dead-lettered, "its worker died 3 times while processing it", with
  a note to the agents, instead of going round again.
Three, because one death is routine (a deploy, a lost host: everything in flight dies and
resumes), and the second only makes it run alone; the third is then the photo's own doing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import redis

from worker.jobs import Job
from worker.store import TERMINAL_STATES, Store

__all__ = ["Leases", "LeaseLost", "reap", "LEASE_SECONDS", "RENEW_EVERY", "REAP_EVERY",
           "RESTART_GRACE", "REQUEUED_GRACE", "REDIS_DOWN", "POISON_DEATHS", "ALONE_AFTER", "SUSPECT",
           "reap_every"]

log = logging.getLogger("deskmark.recovery")

LEASE_SECONDS = 60
RENEW_EVERY = 20
REAP_EVERY = 15
RESTART_GRACE = 30  # a retry or a throttled job not started this long after it was due
REQUEUED_GRACE = 120  # after re-queuing a job, before it may be re-queued again
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
POISON_DEATHS = 3  # a job whose worker died this often while running it is dead-lettered
ALONE_AFTER = 2  # ... and from this many deaths on, it runs alone
SUSPECT = "suspect"  # the lease a job that runs alone holds (dm:lease:suspect)


def reap_every(lease_seconds: int) -> float:
    """How often reapers look: a quarter of a lease, at most REAP_EVERY."""
    return min(float(REAP_EVERY), lease_seconds / 4)


class LeaseLost(Exception):
    """This worker no longer holds the job's lease: another one may be running it."""


class Leases:
    """The leases this process holds, renewed by one thread while their jobs run."""

    def __init__(self, store: Store, seconds: int = LEASE_SECONDS) -> None:
        self.store = store
        self.seconds = seconds
        self.held: dict[str, str] = {}
        self._lock = threading.Lock()
        self._pid = 0  # the renewer thread belongs to the process that started it (prefork)

    def acquire(self, job_id: str) -> str | None:
        token = self.store.acquire_lease(job_id, self.seconds)
        if token is not None:
            with self._lock:
                self.held[job_id] = token
                if self._pid != os.getpid():
                    self._pid = os.getpid()
                    threading.Thread(target=self._renew_forever, name="deskmark-leases",
                                     daemon=True).start()
        return token

    def release(self, job_id: str) -> None:
        with self._lock:
            token = self.held.pop(job_id, None)
        if token is not None:
            self.store.release_lease(job_id, token)

    def check(self, job_id: str) -> None:
        """Renew the job's lease now; raise LeaseLost when it is no longer this worker's."""
        token = self.held.get(job_id)
        if token is None or not self.store.renew_leases({job_id: token}, self.seconds)[job_id]:
            raise LeaseLost(f"job {job_id}: this worker's lease lapsed, another worker may run it")

    def _renew_forever(self) -> None:
        while True:
            time.sleep(min(RENEW_EVERY, self.seconds / 3))
            with self._lock:
                held = dict(self.held)
            if not held:
                continue
            try:
                renewed = self.store.renew_leases(held, self.seconds)
            except REDIS_DOWN as exc:  # the jobs' own Redis calls will wait or fail too
                log.warning("could not renew %d job leases: %s", len(held), exc)
                continue
            for job_id, ok in renewed.items():
                if not ok:
                    log.warning("the lease of job %s lapsed while it ran; it stops at its next "
                                "step if another worker took it", job_id)


def reap(store: Store, requeue: Callable[[Job], None], now: float | None = None,
         give_up: Callable[[Job, str], None] | None = None,
         requeued_grace: float = REQUEUED_GRACE) -> list[str]:
    """Queue again every overdue job that no worker holds a lease on; return their ids. A job
    whose worker died under it POISON_DEATHS times goes to `give_up` (the dead letters)."""
    now = time.time() if now is None else now
    requeued: list[str] = []
    for job_id in store.overdue(now):
        if not store.claim_overdue(job_id, now, now + requeued_grace):
            continue  # alive (leased), or another reaper took it
        record = store.job(job_id)
        if not record or record.get("state") in TERMINAL_STATES or record.get("kind") == "event":
            store.unwatch(job_id)
            continue
        job = Job.from_record(job_id, record)
        deaths = int(record.get("worker_deaths") or 0)
        if record.get("state") == "running":  # its worker died while it ran
            deaths += 1
            store.update(job_id, {"worker_deaths": deaths})
            if deaths >= POISON_DEATHS and give_up is not None:
                log.warning("job %s: its worker died %d times while processing it; dead-lettered",
                            job_id, deaths)
                give_up(job, f"its worker died {deaths} times while processing it (out of memory, "
                             "or killed): dead-lettered so that it stops taking workers down")
                store.unwatch(job_id)
                continue
        requeue(job)
        alone = " (it runs alone from now on)" if deaths >= ALONE_AFTER else ""
        store.update(job_id, {"state": "queued", "requeued": int(record.get("requeued") or 0) + 1,
                              "reason": f"its worker stopped while it was {record.get('state')}; "
                                        f"queued again{alone}"})
        log.warning("job %s was %s with no live worker: queued again", job_id, record.get("state"))
        requeued.append(job_id)
    return requeued
