"""Dead workers are noticed: leases, the watch list and the reaper, against a real Redis."""

from __future__ import annotations

import time
import uuid

import pytest

from worker.jobs import Job
from worker.recovery import LEASE_SECONDS, REQUEUED_GRACE, RESTART_GRACE, LeaseLost, Leases, reap
from worker.store import Store


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store.from_url(redis_url)


def job(store: Store, state: str) -> str:
    job_id = f"dm-{uuid.uuid4().hex[:12]}"
    store.create_job(job_id, {"vendor": "zendesk", "ticket_id": "7", "photo": PHOTO})
    store.update(job_id, {"state": state})
    return job_id


PHOTO = {"attachment_id": "1", "filename": "a.jpg", "content_type": "image/jpeg",
         "url": "https://acme.zendesk.com/a/1"}


def test_only_jobs_without_a_live_lease_and_past_due_are_queued_again(store: Store) -> None:
    now = time.time()
    alive, dead = job(store, "running"), job(store, "running")
    waiting_soon, waiting_lost = job(store, "retrying"), job(store, "waiting")
    finished = job(store, "running")
    leases = Leases(store)
    assert leases.acquire(alive)
    for job_id in (alive, dead):
        store.watch(job_id, now - 1)
    store.watch(waiting_soon, now + 20 + RESTART_GRACE)  # its retry is due in 20 s
    store.watch(waiting_lost, now - 5)  # due, and nobody started it
    store.watch(finished, now - 1)
    store.update(finished, {"state": "done"})  # finishing takes it off the watch list
    queued: list[Job] = []
    assert sorted(reap(store, queued.append, now)) == sorted([dead, waiting_lost])
    assert sorted(j.job_id for j in queued) == sorted([dead, waiting_lost])
    assert queued[0].photo.attachment_id == "1" and queued[0].vendor == "zendesk"
    assert store.job(dead)["state"] == "queued" and store.job(dead)["requeued"] == 1
    # Queued again once: not again before REQUEUED_GRACE, however many reapers run.
    assert reap(store, queued.append, now + 1) == [] and len(queued) == 2
    # Still not started by then: queued again (and the retry that was due in 20 s, too).
    later = reap(store, queued.append, now + REQUEUED_GRACE + 1)
    assert sorted(later) == sorted([dead, waiting_lost, waiting_soon])
    assert store.r.zscore("dm:watch", finished) is None
    leases.release(alive)


def test_a_worker_that_lost_its_lease_stops_before_its_next_step(store: Store) -> None:
    job_id = job(store, "running")
    leases = Leases(store)
    assert leases.acquire(job_id) is not None
    assert Leases(store).acquire(job_id) is None  # another worker cannot take it
    leases.check(job_id)  # held: renewed
    assert LEASE_SECONDS - 2 <= store.r.ttl(f"dm:lease:{job_id}") <= LEASE_SECONDS
    store.r.delete(f"dm:lease:{job_id}")  # it lapsed (say, Redis was away for a minute) ...
    assert Leases(store).acquire(job_id) is not None  # ... and another worker took it
    with pytest.raises(LeaseLost):
        leases.check(job_id)


def test_a_job_whose_worker_keeps_dying_runs_alone_then_is_dead_lettered(store: Store) -> None:
    from worker.recovery import ALONE_AFTER, POISON_DEATHS, SUSPECT

    poison, waiting = job(store, "running"), job(store, "waiting")
    queued: list[Job] = []
    buried: list[tuple[str, str]] = []
    now = time.time()
    for death in range(1, POISON_DEATHS + 1):
        now += REQUEUED_GRACE + 1
        store.update(poison, {"state": "running"})  # it ran again, and its worker died again
        for job_id in (poison, waiting):
            store.watch(job_id, now - 1)
        reap(store, queued.append, now, give_up=lambda j, why: buried.append((j.job_id, why)))
        assert store.job(poison)["worker_deaths"] == death
        if death < POISON_DEATHS:  # queued again; from ALONE_AFTER on, to run alone
            assert ("runs alone" in store.job(poison).get("reason", "")) == (death >= ALONE_AFTER)
    assert [j.job_id for j in queued].count(poison) == POISON_DEATHS - 1
    assert buried == [(poison, f"its worker died {POISON_DEATHS} times while processing it (out of "
                                "memory, or killed): dead-lettered so that it stops taking workers down")]
    assert "worker_deaths" not in store.job(waiting)  # a job waiting for a retry did not die
    # Running alone is a lease: one holder in the whole deployment.
    one, other = Leases(store), Leases(store)
    assert one.acquire(SUSPECT) and other.acquire(SUSPECT) is None
    one.release(SUSPECT)
    assert other.acquire(SUSPECT)
    other.release(SUSPECT)
