"""A poison job ends: a photo whose job kills its worker every time (as an out-of-memory kill
would) is dead-lettered after POISON_DEATHS deaths instead of going round for ever, and the
jobs that were in flight beside it get their notes."""

from __future__ import annotations

import base64
import json
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.zendesk import SandboxZendesk
from tests.helpers import Stack, job_reaches, send_photo, wait_for
from worker.app import QUEUE
from worker.recovery import POISON_DEATHS

CUSTOMER = SandboxZendesk.CUSTOMER_ID


def _job_of(message: dict[str, Any]) -> str:
    args = json.loads(base64.b64decode(message["body"]))[0]
    return str(args[0].get("job_id") or "")


def queued_messages(stack: Stack) -> list[bytes]:
    return [m if isinstance(m, bytes) else m.encode() for m in stack.store.r.lrange(QUEUE, 0, -1)]


def held_jobs(stack: Stack) -> set[str]:
    """The jobs of the messages dead workers took and never acknowledged (kombu's `unacked`)."""
    return {_job_of(json.loads(raw)[0]) for raw in stack.store.r.hvals("unacked")} - {""}


def test_a_job_that_kills_its_worker_every_time_is_dead_lettered_and_the_others_get_notes(
        make_stack: Callable[..., Stack], zendesk: SandboxZendesk) -> None:
    slow = SandboxOpenAI(latency=3.0).start()  # edits in flight long enough to die with the worker
    try:
        stack = make_stack(DESKMARK_LEASE_SECONDS="6", OPENAI_BASE_URL=slow.url,
                           OPENAI_API_KEY=slow.api_key)
        wait_for(lambda: stack.store.worker_seen(), timeout=60)
        poison = send_photo(zendesk, stack.web.url, f"Poison {uuid.uuid4().hex[:6]}", 960, size=(640, 480))
        others = [send_photo(zendesk, stack.web.url, f"Beside it {n}", 961 + n, size=(640, 480)) for n in range(3)]
        # All four in flight at once (each takes 6 s: locate and edit): then the first kill.
        wait_for(lambda: all(stack.store.job(j).get("state") == "running"
                             for _, j in [poison, *others]), timeout=60)
        kills = 0
        in_flight_at_first_kill = 0
        deadline = time.monotonic() + 120
        while stack.store.job(poison[1]).get("state") != "failed":
            assert time.monotonic() < deadline, (kills, stack.store.job(poison[1]).get("state"))
            now = stack.store.job(poison[1])
            if now.get("state") == "running" and int(now.get("edits_in_flight") or 0) > 0:
                # What the out-of-memory killer does to the worker running this photo, while its
                # edit is under way (a kill after the edit would leave a marked photo, and the
                # next run would only post the note).
                if kills == 0:
                    in_flight_at_first_kill = sum(stack.store.job(j).get("state") == "running"
                                                  for _, j in others)
                requeued = int(stack.store.job(poison[1]).get("requeued") or 0)
                worker = stack.workers[-1]
                assert worker.process is not None
                worker.process.send_signal(signal.SIGKILL)
                worker.process.wait()
                kills += 1
                stack.add_worker()
                # Until the reaper has noticed (the job's record counts it): then it runs again.
                def noticed(before: int = requeued) -> bool:
                    record = stack.store.job(poison[1])
                    return int(record.get("requeued") or 0) > before or record.get("state") == "failed"

                wait_for(noticed, timeout=60)
            time.sleep(0.1)
        record = stack.store.job(poison[1])
        assert kills == POISON_DEATHS and record["worker_deaths"] == POISON_DEATHS
        assert f"its worker died {POISON_DEATHS} times while processing it" in record["reason"]
        assert poison[1] in stack.store.dead_ids()
        assert in_flight_at_first_kill == 3  # the others did die with it at first
        for _, job in others:
            job_reaches(stack.store, job, "done", timeout=120)
        # Nothing more can happen: nothing is queued, and each message the killed workers held
        # (kombu gives those back after the visibility timeout) is for a job that has ended, so
        # it will do nothing.
        wait_for(lambda: zendesk.sending == 0 and not queued_messages(stack), timeout=60)
        held = held_jobs(stack)
        assert held and all(stack.store.job(j).get("state") in ("done", "failed") for j in held)
        assert [len(zendesk.marked_notes(t)) for t, _ in others] == [1, 1, 1]
        assert all(stack.store.job(j).get("worker_deaths", 0) < POISON_DEATHS for _, j in others)
        [failure] = zendesk.notes(poison[0])  # the agents hear of it, once
        assert not failure.attachments and "could not" in failure.html_body
        # Not queued again: the dead letter is where it ends.
        assert stack.store.job(poison[1])["state"] == "failed"
    finally:
        slow.stop()
