"""Redis restarts: the worker that was consuming before is the one consuming after, and every
photo in flight gets exactly one note.

The first tests pin the kombu bug that worker.broker works around, with kombu alone: if stock
kombu stops failing after an upgrade, worker.broker's override can go (and should).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from kombu.common import Broadcast
from kombu.connection import Connection
from kombu.entity import Queue
from kombu.transport import redis as kombu_redis

from deskmark.redis_server import EmbeddedRedis
from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.zendesk import SandboxZendesk
from tests.helpers import Stack, job_reaches, marked_notes, send_photo, wait_for
from worker import broker


@pytest.fixture
def lost_redis() -> Iterator[Callable[[str | None], Connection]]:
    """A kombu connection as a Celery consumer leaves it when Redis goes away: a BRPOP pending
    on its task channel with an unacknowledged message, and a control channel with an
    auto-delete fanout queue; then Redis stops and Celery's consumer calls collect()."""
    servers: list[EmbeddedRedis] = []

    def make(transport: str | None) -> Connection:
        server = EmbeddedRedis().start()
        servers.append(server)
        conn = Connection(server.url, transport=transport)
        name = f"q-{uuid.uuid4().hex[:6]}"
        queue = Queue(name, routing_key=name)
        with conn.Producer() as producer:
            producer.publish({"job": 1}, routing_key=name, declare=[queue])
        received: list[object] = []
        conn.Consumer([queue], callbacks=[lambda body, message: received.append(message)]).consume()
        control = conn.channel()
        conn.Consumer([Broadcast("control")], channel=control, callbacks=[lambda b, m: None]).consume()
        for _ in range(20):
            if received:
                break
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.5)
        assert received  # delivered, not acknowledged
        for _ in range(3):  # the next BRPOP goes out, and waits
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.2)
        server.stop()
        conn.collect(socket_timeout=1)
        return conn

    yield make
    for server in servers:
        server.cleanup()


def test_stock_kombu_still_fails_to_close_a_connection_after_redis_went_away(
        lost_redis: Callable[[str | None], Connection]) -> None:
    conn = lost_redis(None)
    # The error Celery calls unrecoverable. If this test fails, kombu fixed it: remove
    # worker/broker.py and the broker_transport setting in worker/app.py.
    with pytest.raises(AttributeError, match="hostname"):
        conn.close()


def test_deskmarks_transport_closes_it_with_a_connection_error_at_most(
        lost_redis: Callable[[str | None], Connection]) -> None:
    conn = lost_redis(broker.TRANSPORT)
    with contextlib.suppress(*conn.connection_errors):  # Celery's consumer reconnects on these
        conn.close()
    assert "_connparams" in vars(kombu_redis.Channel)  # what the override replaces still exists


@pytest.fixture
def slow_openai() -> Iterator[SandboxOpenAI]:
    """A loopback OpenAI whose edits take 5 s: time for Redis to go away while they are out."""
    slow = SandboxOpenAI(latency=5).start()
    yield slow
    slow.stop()


def edits_in_flight(make_stack: Callable[..., Stack], zendesk: SandboxZendesk, slow: SandboxOpenAI,
                    label: str, seeds: range) -> tuple[Stack, subprocess.Popen[bytes], list[tuple[int, str]]]:
    """A stack (Redis with an append-only file, so a restart keeps its data) and one photo per
    seed sent to it, returned once all their edits are in flight: the stack, its worker
    process and the (ticket, job) of each photo."""
    stack = make_stack(appendonly=True, OPENAI_BASE_URL=slow.url)
    wait_for(stack.store.worker_seen, timeout=30)
    worker = stack.workers[0].process
    assert worker is not None
    tag = uuid.uuid4().hex[:8]
    sent = [send_photo(zendesk, stack.web.url, f"{label} {tag} #{i}", seed=seed)
            for i, seed in enumerate(seeds)]
    wait_for(lambda: len([c for c in slow.calls if tag in str(c["prompt"])]) == len(seeds), timeout=60)
    return stack, worker, sent


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_redis_restart_loses_and_doubles_nothing_and_the_same_worker_goes_on(
    make_stack: Callable[..., Stack], zendesk: SandboxZendesk, slow_openai: SandboxOpenAI, how: str,
) -> None:
    stack, worker, before = edits_in_flight(make_stack, zendesk, slow_openai, "In flight", range(700, 706))
    # Six edits in flight: Redis goes away for three seconds.
    if how == "SIGTERM":
        stack.redis.stop()
    else:
        stack.redis.crash()
    time.sleep(3)
    stack.redis.start()
    tag = uuid.uuid4().hex[:8]
    after = [send_photo(zendesk, stack.web.url, f"After {tag} #{i}", seed=710 + i) for i in range(2)]
    for _, job_id in before + after:
        job_reaches(stack.store, job_id, "done", timeout=90)
    assert [len(marked_notes(zendesk, t)) for t, _ in before + after] == [1] * 8
    assert worker.poll() is None and stack.workers[0].process is worker  # the same process
    log = stack.workers[0].output()
    assert "Unrecoverable error" not in log and "Connected to" in log


def healthcheck(stack: Stack, max_age: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deskmark.cli", "worker", "--healthcheck", "--max-age", str(max_age)],
        env=stack.workers[0].env, capture_output=True, text=True, timeout=30)


def test_the_health_check_follows_the_consumers_own_loop(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(appendonly=True)
    wait_for(lambda: healthcheck(stack, 8).returncode == 0, timeout=30)
    assert "healthy (consumer beat" in healthcheck(stack, 8).stdout
    # No broker: the process and its threads live on, but the consumer is not consuming.
    stack.redis.stop()
    unhealthy = wait_for(lambda: (r := healthcheck(stack, 8)).returncode == 1 and r, timeout=30)
    assert "has not run its loop" in unhealthy.stderr
    stack.redis.start()
    wait_for(lambda: healthcheck(stack, 8).returncode == 0, timeout=45)


def test_redis_gone_longer_than_a_job_waits_puts_the_job_back_and_it_ends_with_one_note(
    make_stack: Callable[..., Stack], zendesk: SandboxZendesk, slow_openai: SandboxOpenAI,
) -> None:
    """Redis away for longer than a job's patience (worker.tasks.REDIS_PATIENCE, 30 s) while
    edits are in flight: each job gives its message back instead of failing, and once Redis is
    back the job runs again and its ticket gets exactly one note."""
    stack, worker, sent = edits_in_flight(make_stack, zendesk, slow_openai, "Long outage", range(720, 722))
    stack.redis.stop()
    # The edits answer after 5 s; the jobs then wait for Redis, each command up to 30 s
    # (saving the result, then releasing the lease), and give their messages back.
    wait_for(lambda: stack.workers[0].output().count("the message goes back to the queue") >= 2,
             timeout=150)
    stack.redis.start()
    for _, job_id in sent:
        job_reaches(stack.store, job_id, "done", timeout=180)
    assert [len(marked_notes(zendesk, t)) for t, _ in sent] == [1, 1]
    for _, job_id in sent:  # the edit whose result was lost with the outage is on record
        assert stack.store.job(job_id)["attempts"] >= 2
    assert worker.poll() is None and stack.workers[0].process is worker  # the same process
    assert "Unrecoverable error" not in stack.workers[0].output()
