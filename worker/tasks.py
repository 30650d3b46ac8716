"""Celery tasks: thin wrappers over `worker.pipeline`, plus the retry policy and worker start-up.

Tasks take JSON-able dicts. `handle_event` fans an event out into one `process_photo` per photo.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Task
from celery.exceptions import Reject
from celery.signals import setup_logging, worker_init, worker_ready, worker_shutdown
from kombu.exceptions import OperationalError

from integrations.config import Settings
from integrations.errors import PermanentError, RetryableError, Throttled, UnusablePhoto
from integrations.events import TicketEvent
from integrations.freshdesk.client import FreshdeskClient
from integrations.logs import configure_logging, log_context
from integrations.models import retirement_problem, retirement_warning
from integrations.slack.interactions import ReviewClick
from integrations.slack.notifier import SlackNotifier
from integrations.zendesk.client import ZendeskClient
from worker import pipeline
from worker.app import make_celery
from worker.limits import EditGate
from worker.liveness import STALE_AFTER, Liveness, beat_age
from worker.marking import make_marker
from worker.recovery import REAP_EVERY, REDIS_DOWN, RESTART_GRACE, LeaseLost, reap
from worker.retry import MAX_RETRIES, countdown, throttle_countdown
from worker.store import Store

__all__ = ["app", "handle_event", "process_photo", "review", "runtime"]

log = logging.getLogger("deskmark.worker")

settings = Settings.from_env()
app = make_celery(settings)
app.steps["consumer"].add(Liveness)

_runtime: pipeline.Runtime | None = None
_runtime_lock = threading.Lock()
REDIS_PATIENCE = 30.0  # seconds a job waits for Redis to come back before it is requeued
# Redis (job state, or the broker when publishing a retry) unreachable for longer than that.
BROKER_DOWN = (*REDIS_DOWN, OperationalError)


def _requeue(what: str, exc: Exception) -> Reject:
    """Redis was away for longer than REDIS_PATIENCE: this is not the job's failure. Its message
    goes back to the queue (or, if Redis is still away, stays unacknowledged and comes back with
    the reaper or the visibility timeout); what was done is recorded and is not done again."""
    log.warning("%s: Redis is unreachable (%s); the message goes back to the queue", what, exc)
    return Reject(str(exc), requeue=True)


def runtime() -> pipeline.Runtime:
    """The per-process runtime: settings, Redis, vendor clients. Built on first use."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            helpdesks: dict[str, Any] = {}
            if settings.zendesk:
                helpdesks["zendesk"] = ZendeskClient(settings.zendesk, settings.attachment_hosts)
            if settings.freshdesk:
                helpdesks["freshdesk"] = FreshdeskClient(settings.freshdesk, settings.attachment_hosts)
            # Patient: a job rides out a Redis restart of up to this long (see _requeue).
            store = Store.from_url(settings.redis_url, patience=REDIS_PATIENCE,
                                   retention_days=settings.retention_days)
            _runtime = pipeline.Runtime(
                settings=settings,
                store=store,
                helpdesks=helpdesks,
                marker=make_marker(settings, EditGate(store, settings)),
                notifier=SlackNotifier(settings.slack) if settings.slack else None,
            )
        return _runtime


@app.task(bind=True, name="deskmark.handle_event", max_retries=MAX_RETRIES)
def handle_event(self: Task, event: dict[str, Any]) -> None:
    parsed = TicketEvent.from_dict(event)
    with log_context(vendor=parsed.vendor, ticket_id=parsed.ticket_id):
        _handle_event(self, event, parsed)


def _handle_event(self: Task, event: dict[str, Any], parsed: TicketEvent) -> None:
    try:
        _expand(self, event, parsed)
    except BROKER_DOWN as exc:
        raise _requeue(f"event for {parsed.vendor} ticket {parsed.ticket_id}", exc) from exc


def _expand(self: Task, event: dict[str, Any], parsed: TicketEvent) -> None:
    rt = runtime()
    if parsed.photo is None:
        # From here on, a new event for this ticket may see photos this scan will not.
        rt.store.release_scan(parsed.vendor, parsed.ticket_id)
    try:
        jobs = pipeline.expand_event(parsed, rt)
    except RetryableError as exc:
        if self.request.retries >= MAX_RETRIES:
            rt.store.bury_event(event, f"gave up after {MAX_RETRIES + 1} attempts: {exc}", exc.record())
            return
        raise self.retry(countdown=countdown(exc, self.request.retries, settings.visibility_timeout),
                         exc=exc) from exc
    except (PermanentError, UnusablePhoto) as exc:
        log.warning("event for ticket %s could not be read: %s", parsed.ticket_id, exc)
        rt.store.bury_event(event, str(exc), exc.record() if isinstance(exc, PermanentError) else None)
        return
    for job in jobs:
        process_photo.apply_async(args=[job])


@app.task(bind=True, name="deskmark.process_photo", max_retries=MAX_RETRIES)
def process_photo(self: Task, job: dict[str, Any]) -> str:
    with log_context(job_id=job["job_id"], vendor=job["vendor"], ticket_id=job["ticket_id"]):
        return _process_photo(self, job)


def _process_photo(self: Task, job: dict[str, Any]) -> str:
    try:
        return _run_photo(self, job)
    except BROKER_DOWN as exc:
        raise _requeue(f"job {job['job_id']}", exc) from exc


def _schedule(rt: pipeline.Runtime, job_id: str, state: str, wait: float, fields: dict[str, Any]) -> None:
    """Record that the job comes back in `wait` seconds; if it has not by then (its worker
    died holding the delayed message), the reaper queues it again."""
    rt.store.update(job_id, {"state": state, "due": time.time() + wait, **fields})
    rt.store.watch(job_id, time.time() + wait + RESTART_GRACE)


def _run_photo(self: Task, job: dict[str, Any]) -> str:
    rt = runtime()
    try:
        return pipeline.run_job(job, rt)
    except LeaseLost as exc:
        log.warning("%s; this attempt stops here", exc)
        return "lease lost"
    except Throttled as exc:
        # Not a failure: come back when the limit opens, without holding this worker slot,
        # and without using up an attempt.
        wait = throttle_countdown(exc.wait, settings.visibility_timeout)
        _schedule(rt, job["job_id"], "waiting", wait, {"reason": str(exc)})
        process_photo.apply_async(args=[job], retries=self.request.retries, countdown=wait)
        return "throttled"
    except RetryableError as exc:
        if self.request.retries >= MAX_RETRIES:
            pipeline.fail_job(job, rt, f"gave up after {MAX_RETRIES + 1} attempts: {exc}", exc)
            return "failed"
        wait = countdown(exc, self.request.retries, settings.visibility_timeout)
        _schedule(rt, job["job_id"], "retrying", wait, {"reason": str(exc)[:300],
                                                         "last_error": exc.record()})
        raise self.retry(countdown=wait, exc=exc) from exc
    except BROKER_DOWN:
        raise
    except PermanentError as exc:
        pipeline.fail_job(job, rt, str(exc), exc)
        return "failed"
    except Exception as exc:
        # A bug must not strand the job as "running": record it, tell the agents, keep going.
        log.exception("job %s failed unexpectedly", job["job_id"])
        pipeline.fail_job(job, rt, f"internal error ({type(exc).__name__}); see the worker log", None)
        return "failed"


@app.task(bind=True, name="deskmark.review", max_retries=MAX_RETRIES)
def review(self: Task, click: dict[str, str]) -> str:
    with log_context(job_id=click.get("job_id", ""), vendor=click.get("vendor", ""),
                     ticket_id=click.get("ticket_id", "")):
        return _review(self, click)


def _review(self: Task, click: dict[str, str]) -> str:
    try:
        return _decide(self, click)
    except BROKER_DOWN as exc:
        raise _requeue(f"review of {click.get('job_id')}", exc) from exc


def _decide(self: Task, click: dict[str, str]) -> str:
    try:
        return pipeline.decide(ReviewClick(**click), runtime())
    except RetryableError as exc:
        raise self.retry(countdown=countdown(exc, self.request.retries, settings.visibility_timeout),
                         exc=exc) from exc
    except PermanentError as exc:
        log.warning("review of %s could not be applied: %s", click.get("job_id"), exc)
        return "failed"


# --- worker life cycle --------------------------------------------------------------------------
_stop_beating = threading.Event()


@setup_logging.connect
def _json_logs(loglevel: Any = None, **_: Any) -> None:
    configure_logging(settings, loglevel or "INFO")


@worker_init.connect
def _check_model(**_: Any) -> None:
    if settings.edit_provider == "openai":
        problem = retirement_problem(settings.edit_model)
        if problem:
            raise SystemExit(f"deskmark worker: {problem}")
        warning = retirement_warning(settings.edit_model)
        if warning:
            log.warning(warning)


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    store = Store.from_url(settings.redis_url)
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


@worker_ready.connect
def _say_hello(**_: Any) -> None:
    # Here rather than at worker_init, which runs before Celery sets up logging (the line was lost).
    log.info("deskmark worker starting with %s", settings.describe())


@worker_ready.connect
def _start_reaper(**_: Any) -> None:
    store = Store.from_url(settings.redis_url, retention_days=settings.retention_days)

    def requeue(job: dict[str, Any]) -> None:
        process_photo.apply_async(args=[job])

    def reap_forever() -> None:
        while not _stop_beating.wait(REAP_EVERY):
            try:
                reap(store, requeue)
                store.trim()  # the job index and dead letters, to DESKMARK_RETENTION_DAYS
            except Exception as exc:  # Redis away: the next round tries again
                log.warning("reaper: %s", exc)

    threading.Thread(target=reap_forever, name="deskmark-reaper", daemon=True).start()


@worker_ready.connect
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


@worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    _stop_beating.set()
