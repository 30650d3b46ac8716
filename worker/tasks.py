"""Celery tasks: thin wrappers over `worker.pipeline`; what an exception means for a task
(retry, dead letter, back to the queue) is decided in one place, `_routed`. Nothing is built at
import: the settings, the Celery configuration and the vendor clients on first use.

Tasks take JSON-able dicts. `handle_event` fans an event out into one `process_photo` per photo.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from celery import Task
from celery.exceptions import Reject
from celery.signals import setup_logging, worker_init, worker_ready, worker_shutdown
from kombu.exceptions import OperationalError

from integrations.config import Settings
from integrations.errors import PermanentError, RetryableError, Throttled, UnusablePhoto, VendorError
from integrations.events import TicketEvent
from integrations.logs import configure_logging, log_context
from integrations.models import retirement_problem, retirement_warning
from integrations.openai_batch import BatchEditor
from integrations.registry import HELPDESKS
from integrations.slack.interactions import ReviewClick
from integrations.slack.notifier import SlackNotifier
from integrations.tokens import RedisTokenCache
from worker import pipeline
from worker.app import make_celery
from worker.batches import BatchQueue
from worker.jobs import Job
from worker.limits import EditGate
from worker.liveness import STALE_AFTER, Liveness, beat_age
from worker.marking import make_marker
from worker.records import JobRecord
from worker.recovery import REDIS_DOWN, RESTART_GRACE, LeaseLost, reap, reap_every
from worker.retry import MAX_RETRIES, countdown, throttle_countdown
from worker.store import Store

__all__ = ["app", "handle_event", "process_photo", "review", "runtime", "settings"]

log = logging.getLogger("deskmark.worker")


@functools.cache
def settings() -> Settings:
    return Settings.from_env()


app = make_celery(settings)
app.steps["consumer"].add(Liveness)
TaskBody = Callable[..., str]


def _task(name: str) -> Callable[[TaskBody], Task]:
    """`@app.task` for deskmark's tasks (Celery's decorator is untyped)."""
    decorator: Any = app.task(bind=True, name=name, max_retries=MAX_RETRIES)
    return cast(Callable[[TaskBody], Task], decorator)


def _on(signal: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """`@signal.connect` (Celery's signals are untyped); the receiver is kept as it is."""

    def connect(receiver: Callable[..., None]) -> Callable[..., None]:
        signal.connect(receiver)
        return receiver

    return connect

_runtime: pipeline.Runtime | None = None
_runtime_lock = threading.Lock()
REDIS_PATIENCE = 30.0  # seconds a job waits for Redis to come back before it is requeued
CREDENTIALS_EVERY = 600.0  # how often a worker records what each helpdesk's credential is
# Redis (job state, or the broker when publishing a retry) unreachable for longer than that.
BROKER_DOWN = (*REDIS_DOWN, OperationalError)


def runtime() -> pipeline.Runtime:
    """The per-process runtime: settings, Redis, vendor clients. Built on first use."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            config = settings()
            # Patient: a job rides out a Redis restart of up to this long (see _routed).
            store = Store.from_url(config.redis_url, patience=REDIS_PATIENCE,
                                   retention_days=config.retention_days)
            _runtime = pipeline.Runtime(
                settings=config,
                store=store,
                # Expiring tokens (OAuth clients) are shared by every process through Redis.
                helpdesks={key: HELPDESKS[key].client(own, config.attachment_hosts,
                                                      RedisTokenCache(store.r))
                           for key, own in config.helpdesks.items()},
                marker=make_marker(config, EditGate(store, config)),
                notifier=SlackNotifier(config.slack) if config.slack else None,
                batches=(BatchQueue(store, BatchEditor(config), config.batch_collect_seconds)
                         if config.edit_mode == "batch" else None),
            )
        return _runtime


# --- what an exception means ---------------------------------------------------------------------
GiveUp = Callable[[str, VendorError | None], str]


def _routed(task: Task, what: str, work: Callable[[], str], give_up: GiveUp,
            reschedule: Callable[[str, float, JobRecord], None] | None = None) -> str:
    """Run `work` as task `task` and route what it raises:

    | raised                        | what happens                                               |
    |-------------------------------|------------------------------------------------------------|
    | Redis gone > REDIS_PATIENCE   | the message goes back to the queue; nothing is failed      |
    | LeaseLost                     | another worker has the job: this attempt stops             |
    | Throttled                     | sent again for then (`reschedule`); not an attempt         |
    | RetryableError                | retried with backoff (worker.retry); after MAX_RETRIES,    |
    |                               | `give_up` (a dead letter)                                  |
    | PermanentError, UnusablePhoto | `give_up` at once                                          |
    | anything else (a bug)         | logged with its traceback, then `give_up`                  |

    `reschedule(state, wait, fields)` records the job's wait before a retry or a re-send."""
    try:
        try:
            return work()
        except LeaseLost as exc:
            log.warning("%s; this attempt stops here", exc)
            return "lease lost"
        except Throttled as exc:
            wait = throttle_countdown(exc.wait, settings().visibility_timeout)
            if reschedule is not None:
                reschedule("waiting", wait, {"reason": str(exc)})
            # Come back when the limit opens, without holding a worker slot or using an attempt.
            task.apply_async(args=task.request.args, retries=task.request.retries, countdown=wait)
            return "throttled"
        except RetryableError as exc:
            if task.request.retries >= MAX_RETRIES:
                return give_up(f"gave up after {MAX_RETRIES + 1} attempts: {exc}", exc)
            wait = countdown(exc, task.request.retries, settings().visibility_timeout)
            if reschedule is not None:
                reschedule("retrying", wait, {"reason": str(exc)[:300], "last_error": exc.record()})
            raise task.retry(countdown=wait, exc=exc) from exc
        except BROKER_DOWN:
            raise
        except (PermanentError, UnusablePhoto) as exc:
            return give_up(str(exc), exc if isinstance(exc, VendorError) else None)
        except Exception as exc:
            # A bug must not strand the work: record it, tell the agents, keep going.
            log.exception("%s failed unexpectedly", what)
            return give_up(f"internal error ({type(exc).__name__}); see the worker log", None)
    except BROKER_DOWN as exc:
        # Redis away for longer than REDIS_PATIENCE: not the job's failure. The message goes
        # back to the queue (or, if Redis is still away, stays unacknowledged and comes back
        # with the reaper or the visibility timeout); what was done is not done again.
        log.warning("%s: Redis is unreachable (%s); the message goes back to the queue", what, exc)
        raise Reject(str(exc), requeue=True) from exc


# --- the tasks -----------------------------------------------------------------------------------
@_task("deskmark.handle_event")
def handle_event(self: Task, event: dict[str, Any]) -> str:
    parsed = TicketEvent.from_dict(event)

    def expand() -> str:
        rt = runtime()
        if parsed.photo is None:
            # From here on, a new event for this ticket may see photos this scan will not.
            rt.store.release_scan(parsed.vendor, parsed.ticket_id)
        jobs = pipeline.expand_event(parsed, rt)
        for job in jobs:
            process_photo.apply_async(args=[job.to_dict()])
        log.info("event for %s ticket %s read: %d photo jobs queued", parsed.vendor,
                 parsed.ticket_id, len(jobs))
        return f"{len(jobs)} photo jobs"

    def give_up(reason: str, error: VendorError | None) -> str:
        log.warning("event for ticket %s could not be read: %s", parsed.ticket_id, reason)
        runtime().store.bury_event(event, reason, error.record() if error else None)
        return "failed"

    with log_context(vendor=parsed.vendor, ticket_id=parsed.ticket_id):
        return _routed(self, f"event for {parsed.vendor} ticket {parsed.ticket_id}", expand, give_up)


@_task("deskmark.process_photo")
def process_photo(self: Task, job: dict[str, Any]) -> str:
    parsed = Job.from_dict(job)

    def give_up(reason: str, error: VendorError | None) -> str:
        pipeline.fail_job(parsed, runtime(), reason, error)
        return "failed"

    def reschedule(state: str, wait: float, fields: JobRecord) -> None:
        # If the job is not back by then (its worker died holding the delayed message), the
        # reaper queues it again.
        store = runtime().store
        store.update(parsed.job_id, {**fields, "state": state, "due": time.time() + wait})
        store.watch(parsed.job_id, time.time() + wait + RESTART_GRACE)

    with log_context(job_id=parsed.job_id, vendor=parsed.vendor, ticket_id=parsed.ticket_id):
        return _routed(self, f"job {parsed.job_id}", lambda: pipeline.run_job(parsed, runtime()),
                       give_up, reschedule)


@_task("deskmark.review")
def review(self: Task, click: dict[str, str]) -> str:
    parsed = ReviewClick(**click)

    def give_up(reason: str, error: VendorError | None) -> str:
        log.warning("review of %s could not be applied: %s", parsed.job_id, reason)
        return "failed"

    with log_context(job_id=parsed.job_id, vendor=parsed.vendor, ticket_id=parsed.ticket_id):
        return _routed(self, f"review of {parsed.job_id}", lambda: pipeline.decide(parsed, runtime()),
                       give_up)


# --- worker life cycle --------------------------------------------------------------------------
_stop_beating = threading.Event()


@_on(setup_logging)
def _json_logs(loglevel: Any = None, **_: Any) -> None:
    configure_logging(settings(), loglevel or "INFO")


@_on(worker_init)
def _check_model(**_: Any) -> None:
    if settings().edit_provider == "openai":
        problem = retirement_problem(settings().edit_model)
        if problem:
            raise SystemExit(f"deskmark worker: {problem}")
        warning = retirement_warning(settings().edit_model)
        if warning:
            log.warning(warning)


@_on(worker_ready)
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    store = Store.from_url(settings().redis_url)
    name = getattr(sender, "hostname", "worker")

    def beat() -> None:
        while not _stop_beating.is_set():
            # Only while the consumer's own loop beats (worker.liveness): a wedged consumer
            # must show as down on /readyz and the dashboard, not just a dead process.
            if beat_age() < STALE_AFTER / 2:
                try:
                    store.beat(str(name))
                except Exception as exc:  # Redis away: keep trying, readyz will say so
                    log.warning("heartbeat failed: %s", exc)
            _stop_beating.wait(10)

    threading.Thread(target=beat, name="deskmark-heartbeat", daemon=True).start()


@_on(worker_ready)
def _say_hello(**_: Any) -> None:
    # Here rather than at worker_init, which runs before Celery sets up logging (the line was lost).
    log.info("deskmark worker starting with %s", settings().describe())
    for warning in settings().warnings():
        log.warning(warning)


@_on(worker_ready)
def _start_reaper(**_: Any) -> None:
    store = Store.from_url(settings().redis_url, retention_days=settings().retention_days)

    def requeue(job: Job) -> None:
        process_photo.apply_async(args=[job.to_dict()])

    def give_up(job: Job, reason: str) -> None:  # a poison job (worker.recovery)
        pipeline.fail_job(job, runtime(), reason, None)

    lease = settings().lease_seconds

    def reap_forever() -> None:
        credentials_due = 0.0
        while not _stop_beating.wait(reap_every(lease)):
            try:
                reap(store, requeue, give_up=give_up, requeued_grace=2 * lease)
                store.trim()  # the job index and dead letters, to DESKMARK_RETENTION_DAYS
            except Exception as exc:  # Redis away: the next round tries again
                log.warning("reaper: %s", exc)
            if time.monotonic() >= credentials_due:
                credentials_due = time.monotonic() + CREDENTIALS_EVERY
                try:
                    pipeline.record_credentials(runtime())
                except Exception as exc:  # a vendor or Redis away: say so, look again later
                    log.warning("could not record the helpdesks' credentials: %s", exc)

    threading.Thread(target=reap_forever, name="deskmark-reaper", daemon=True).start()
    if settings().edit_mode == "batch":
        threading.Thread(target=_batch_forever, args=(store,), name="deskmark-batches", daemon=True).start()


def _batch_forever(store: Store) -> None:
    """Batch mode: submit, look at and apply OpenAI batches (worker.batches; one worker at a
    time does a round)."""
    every = min(5.0, max(0.5, settings().batch_collect_seconds / 4))

    def requeue(job_id: str) -> None:
        process_photo.apply_async(args=[Job.from_record(job_id, store.job(job_id)).to_dict()])

    def give_up(job_id: str, reason: str, error: VendorError | None) -> None:
        pipeline.fail_job(Job.from_record(job_id, store.job(job_id)), runtime(), reason, error)

    while not _stop_beating.wait(every):
        try:
            batches = runtime().batches
            if batches is not None:
                batches.tick(requeue, give_up)
        except Exception as exc:  # OpenAI or Redis away: the next round tries again
            log.warning("batches: %s", exc)


@_on(worker_ready)
def _build_runtime(sender: Any = None, **_: Any) -> None:
    # A threads or solo pool runs its jobs in this process: make the clients (their TLS
    # contexts, the OpenAI SDK's primed validators) now, not in the first job, which every
    # other job of a burst would wait for. A prefork pool's children build their own.
    if type(getattr(sender, "pool", None)).__module__ in ("celery.concurrency.thread",
                                                          "celery.concurrency.solo"):
        try:
            runtime()
        except Exception as exc:  # the first job tries again, and reports
            log.warning("could not prepare the worker's clients yet: %s", exc)


@_on(worker_shutdown)
def _stop_heartbeat(**_: Any) -> None:
    _stop_beating.set()
