"""The web app: helpdesk webhooks in, durable jobs out; health endpoints and the dashboard.

`create_app(settings=None)` is the Flask app factory (`gunicorn 'webhooks:create_app()'`).
A webhook is verified, parsed, de-duplicated and enqueued, and answered without calling the
helpdesk: 202 enqueued · 200 deliberately ignored · 400 malformed · 401 bad signature ·
413 too large · 503 (with Retry-After) when it could not be enqueued.
"""

from __future__ import annotations

import json
from typing import Any

import redis
from flask import Flask, Response, abort, jsonify, redirect, render_template, request, url_for
from kombu.exceptions import KombuError, OperationalError

from integrations.config import Settings
from integrations.events import Ignored, Malformed, RawRequest, TicketEvent
from integrations.freshdesk import webhook as freshdesk_webhook
from integrations.slack import interactions as slack_interactions
from integrations.zendesk import webhook as zendesk_webhook
from webhooks import charts, guard
from webhooks.metrics import OUTCOMES, WEBHOOKS, outcome, render
from worker.app import QUEUE, make_celery, task_message
from worker.limits import EditGate
from worker.replay import replay_jobs
from worker.store import JOB_STATES, Store

__all__ = ["create_app", "MAX_BODY_BYTES", "RETRY_AFTER_SECONDS"]

MAX_BODY_BYTES = 1024 * 1024  # helpdesk events are a few KB; attachments are never inlined
RETRY_AFTER_SECONDS = 30  # Zendesk retries a 503 only when Retry-After is under 60 s
WEBHOOK_ENDPOINTS = ("zendesk", "freshdesk", "slack")  # view names, and the vendor label


class Intake:
    """Accepts parsed events: loop guard, de-duplication and enqueue, in one Redis round trip."""

    IGNORED = {"own": "deskmark's own action", "duplicate": "duplicate delivery",
               "scan queued": "a scan of this ticket is already queued"}

    def __init__(self, settings: Settings, store: Store, celery: Any) -> None:
        self.settings = settings
        self.store = store
        self.celery = celery

    def accept(self, event: TicketEvent) -> tuple[Response, int]:
        message = task_message(self.celery, "deskmark.handle_event", [event.to_dict()])
        try:
            outcome = self.store.accept(event.vendor, event.ticket_id, event.actor_id,
                                        event.delivery_key, event.photo is None, QUEUE, message,
                                        event.replay_key)
        except redis.RedisError:
            return _unavailable("the queue (Redis) is unreachable")
        if outcome in self.IGNORED:
            return _answer("ignored", self.IGNORED[outcome]), 200
        return _answer("enqueued", f"{event.vendor} ticket {event.ticket_id}"), 202


def _answer(status: str, detail: str) -> Response:
    # json.dumps rather than jsonify: half the cost, on the path every webhook takes.
    return Response(json.dumps({"status": status, "detail": detail}),
                    content_type="application/json")


def _unavailable(detail: str) -> tuple[Response, int]:
    response = _answer("unavailable", detail)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response, 503


def _raw_request() -> RawRequest:
    """The body, whole, or a 413: with a Content-Length over the limit (werkzeug refuses it
    before reading), and with a chunked body that runs past it, which `get_data` would cut at
    the limit and hand on (answered 400 or 401 instead)."""
    chunks: list[bytes] = []
    total = 0
    while total <= MAX_BODY_BYTES:
        chunk = request.stream.read(min(65536, MAX_BODY_BYTES + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > MAX_BODY_BYTES:
        abort(413)
    return RawRequest(body=b"".join(chunks),
                      headers={k.lower(): v for k, v in request.headers.items()})


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES + 1  # one byte over: see _raw_request
    store = Store.from_url(settings.redis_url, timeout=2.0, retention_days=settings.retention_days)
    intake = Intake(settings, store, make_celery(settings))
    app.extensions["deskmark"] = intake
    zendesk_verifier = (
        zendesk_webhook.ZendeskSignature(settings.zendesk.webhook_secret)
        if settings.zendesk else None
    )

    # Every vendor x outcome series exists from the start at 0, so rate() works from the first
    # scrape; the pairs are looked up once, since labels() takes a lock.
    counters: dict[tuple[str | None, int], Any] = {
        (vendor, status): WEBHOOKS.labels(vendor, outcome(status))
        for vendor in WEBHOOK_ENDPOINTS for status in OUTCOMES}

    @app.after_request
    def count_webhooks(response: Response) -> Response:
        # Keyed by the matched route, so a scan of made-up /webhooks/… paths adds no series.
        key = (request.endpoint, response.status_code)
        if key[0] in WEBHOOK_ENDPOINTS:
            if key not in counters:
                counters[key] = WEBHOOKS.labels(key[0], outcome(response.status_code))
            counters[key].inc()
        return response

    app.after_request(guard.secure_headers)

    @app.get("/metrics")
    def metrics() -> Response:
        # Public without DESKMARK_ADMIN_TOKEN (Prometheus scrapes from elsewhere); with one, a
        # scrape sends it as a Bearer token (README: Operating it).
        guard.require_admin(settings, local_without_token=False)
        try:
            body = render(store, settings)
        except redis.RedisError as exc:
            return Response(f"# Redis unreachable: {exc}\n", status=503, mimetype="text/plain")
        return Response(body, mimetype="text/plain; version=0.0.4; charset=utf-8")

    @app.errorhandler(413)
    def too_large(_: Exception) -> tuple[Response, int]:
        return _answer("rejected", f"body over {MAX_BODY_BYTES} bytes"), 413

    @app.post("/webhooks/zendesk")
    def zendesk() -> tuple[Response, int]:
        if zendesk_verifier is None:
            return _answer("rejected", "Zendesk is not configured (ZENDESK_* variables)"), 404
        raw = _raw_request()
        if not zendesk_verifier.is_valid(raw):
            return _answer("rejected", "missing, wrong or stale Zendesk signature"), 401
        try:
            event = zendesk_webhook.parse(raw)
        except Malformed as exc:
            return _answer("rejected", str(exc)), 400
        except Ignored as exc:
            return _answer("ignored", str(exc)), 200
        return intake.accept(event)

    @app.post("/webhooks/freshdesk")
    def freshdesk() -> tuple[Response, int]:
        if settings.freshdesk is None:
            return _answer("rejected", "Freshdesk is not configured (FRESHDESK_* variables)"), 404
        raw = _raw_request()
        if not freshdesk_webhook.authorized(raw, settings.freshdesk.webhook_secret):
            return _answer("rejected", "missing or wrong X-Deskmark-Secret / Basic password"), 401
        try:
            event = freshdesk_webhook.parse(raw)
        except Malformed as exc:
            return _answer("rejected", str(exc)), 400
        return intake.accept(event)

    @app.post("/webhooks/slack/interactions")
    def slack() -> tuple[Response, int]:
        # Slack wants a 200 within 3 s: verify, enqueue, answer; the decision runs in a task.
        if settings.slack is None:
            return _answer("rejected", "Slack is not configured (SLACK_* variables)"), 404
        raw = _raw_request()
        if not slack_interactions.verify(raw, settings.slack.signing_secret):
            return _answer("rejected", "missing, wrong or stale Slack signature"), 401
        try:
            click = slack_interactions.parse(raw)
        except Malformed as exc:
            return _answer("rejected", str(exc)), 400
        except Ignored as exc:
            return _answer("ignored", str(exc)), 200
        try:
            intake.celery.send_task("deskmark.review", args=[click.to_dict()], queue=QUEUE,
                                    ignore_result=True)
        except (OperationalError, KombuError, redis.RedisError, OSError):
            return _unavailable("the queue (Redis) is unreachable")
        return Response(b"", status=200), 200

    @app.get("/healthz")
    def healthz() -> Response:
        return _answer("ok", "alive")

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        checks: dict[str, str] = {}
        try:
            store.r.ping()
            checks["redis"] = "ok"
            checks["worker"] = "ok" if store.worker_seen() else "no heartbeat in the last 45 s"
        except redis.RedisError as exc:
            checks["redis"] = f"unreachable: {exc}"
            checks["worker"] = "unknown"
        ready = all(v == "ok" for v in checks.values())
        # What is wrong (hosts, error text) only to those who may see the dashboard.
        details = checks if guard.is_admin(settings) else {}
        return jsonify({"status": "ready" if ready else "not ready", **details}), (
            200 if ready else 503
        )

    def admin_only() -> None:
        guard.require_admin(settings)

    def same_origin() -> None:
        guard.require_same_origin()

    @app.get("/")
    def dashboard() -> str:
        admin_only()
        state = request.args.get("state") or None
        vendor = request.args.get("vendor") or None
        gate = EditGate(store, settings)
        series = store.series(30)
        return render_template(
            "dashboard.html", settings=settings, state=state, vendor=vendor,
            jobs=store.recent_jobs(100, state=state, vendor=vendor),
            dead=store.jobs(store.dead_ids(100)), spent=gate.spent(), health=store.metrics(),
            notice=request.args.get("notice"), states=JOB_STATES,
            vendors=[v for v in ("zendesk", "freshdesk") if getattr(settings, v)],
            spend_chart=charts.spend_chart(series, settings.daily_budget_usd),
            latency_chart=charts.latency_chart(series),
            failures_chart=charts.failures_chart(series[-7:]),
        )

    @app.get("/jobs/<job_id>/<any(marked, before, after):name>.jpg")
    def job_image(job_id: str, name: str) -> Response:
        admin_only()
        image = store.image(job_id, name)
        if image is None:
            abort(404)
        return Response(image, mimetype="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.post("/jobs/<job_id>/replay")
    def replay_one(job_id: str) -> Any:
        admin_only()
        same_origin()
        [(_, _, what)] = replay_jobs(store, intake.celery, [job_id])
        return redirect(url_for("dashboard", notice=f"{job_id}: {what}"), code=303)

    @app.post("/replay-failed")
    def replay_failed() -> Any:
        admin_only()
        same_origin()
        results = replay_jobs(store, intake.celery, store.dead_ids())
        queued = sum(1 for _, ok, _ in results if ok)
        return redirect(url_for("dashboard", notice=f"{queued} dead letters queued again"), code=303)

    return app
