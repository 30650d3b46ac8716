"""Webhooks in: `POST /webhooks/<helpdesk>` for every helpdesk in the registry, and Slack's
button clicks. A webhook is verified, parsed, de-duplicated and enqueued, and answered without
calling the helpdesk: 202 enqueued · 200 deliberately ignored · 400 malformed · 401 bad
signature or secret · 404 that helpdesk is not configured · 413 too large · 503 (with
Retry-After) when it could not be enqueued.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import TypeVar

import redis
from flask import Blueprint, Response, abort, g, request
from kombu.exceptions import KombuError, OperationalError

from integrations.events import Ignored, Malformed, RawRequest, TicketEvent
from integrations.registry import HELPDESKS
from integrations.slack import interactions as slack_interactions
from webhooks.metrics import OUTCOMES, WEBHOOKS, outcome
from webhooks.services import Services, services
from worker.store import ACCEPT_OUTCOMES

__all__ = ["blueprint", "accept", "MAX_BODY_BYTES", "RETRY_AFTER_SECONDS", "WEBHOOK_VENDORS"]

MAX_BODY_BYTES = 1024 * 1024  # helpdesk events are a few KB; attachments are never inlined
RETRY_AFTER_SECONDS = 30  # Zendesk retries a 503 only when Retry-After is under 60 s
WEBHOOK_VENDORS = (*HELPDESKS, "slack")  # the vendor label of deskmark_webhooks_total
IGNORED = {outcome: why for outcome, why in ACCEPT_OUTCOMES.items() if outcome != "enqueued"}
# The broker unreachable, or refusing: the webhook is answered 503 and the vendor retries.
QUEUE_DOWN = (redis.RedisError, OperationalError, KombuError, OSError)

blueprint = Blueprint("intake", __name__)

# Every vendor x outcome series exists from the start at 0, so rate() works from the first
# scrape; the pairs are looked up once, since labels() takes a lock.
_counters = {(vendor, status): WEBHOOKS.labels(vendor, outcome(status))
             for vendor in WEBHOOK_VENDORS for status in OUTCOMES}


@blueprint.after_request
def _count(response: Response) -> Response:
    # Only matched routes get here, so a scan of made-up /webhooks/… paths adds no series.
    vendor = (request.view_args or {}).get("vendor", "slack")
    key = (vendor, response.status_code)
    if key not in _counters:
        _counters[key] = WEBHOOKS.labels(vendor, outcome(response.status_code))
    _counters[key].inc()
    if vendor != "slack" and not g.get("logged") and response.status_code != 503:
        _log_delivery(vendor, response)
    return response


# What the delivery log calls a webhook that did not reach the accept step (which logs its own).
NOT_ACCEPTED = {400: "malformed", 401: "rejected", 404: "not configured", 413: "too large"}


def _log_delivery(vendor: str, response: Response) -> None:
    """The delivery log's line for a webhook answered before the accept step: its answer and
    why, never its body. Best effort: the webhook's answer stands whatever Redis says."""
    status = response.status_code
    detail = ""
    if response.is_json:
        with contextlib.suppress(ValueError, TypeError, KeyError):
            detail = str(json.loads(response.get_data())["detail"])
    elif status == 413:
        detail = f"body over {MAX_BODY_BYTES // 1024} KB"
    with contextlib.suppress(redis.RedisError):
        services().store.log_delivery(vendor, status, NOT_ACCEPTED.get(status, "ignored" if status == 200
                                                                     else f"HTTP {status}"), detail)


def answer(status: str, detail: str) -> Response:
    # json.dumps rather than jsonify: half the cost, on the path every webhook takes.
    return Response(json.dumps({"status": status, "detail": detail}),
                    content_type="application/json")


def unavailable(detail: str) -> tuple[Response, int]:
    response = answer("unavailable", detail)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response, 503


def raw_request() -> RawRequest:
    """The body, whole, or a 413. With a Content-Length, werkzeug refuses one over the limit
    before reading. A chunked body is read here up to one byte past the limit: `get_data` would
    cut it at the limit and hand it on (to be answered 400 or 401 instead of 413)."""
    if request.content_length is not None:
        body = request.get_data(cache=False)
    else:
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
        body = b"".join(chunks)
    # werkzeug's headers: looked up by any case, read from the WSGI environ only when asked.
    return RawRequest(body=body, headers=request.headers)


T = TypeVar("T")


def read(raw: RawRequest, verified: bool, rejected: str,
         parse: Callable[[RawRequest], T]) -> T | tuple[Response, int]:
    """The parsed webhook, or its answer: 401 unverified, 400 malformed, 200 ignored."""
    if not verified:
        return answer("rejected", rejected), 401
    try:
        return parse(raw)
    except Malformed as exc:
        return answer("rejected", str(exc)), 400
    except Ignored as exc:
        return answer("ignored", str(exc)), 200


def accept(event: TicketEvent, svc: Services) -> tuple[Response, int]:
    """Loop guard, de-duplication and enqueue in one atomic step: Celery builds and publishes
    the message, and the broker stores it with the accept script (worker.broker)."""
    step = svc.store.acceptance(event.vendor, event.ticket_id, event.actor_id, event.delivery_key,
                                event.photo is None, event.replay_key)
    try:
        svc.sender.send("deskmark.handle_event", [event.to_dict()],
                        f"[{event.vendor} ticket {event.ticket_id}]", accept=step)
    except QUEUE_DOWN:
        return unavailable("the queue (Redis) is unreachable")
    if step.outcome is None:  # a broker transport without the accept step: never acknowledge
        raise RuntimeError("the broker did not run deskmark's accept step (worker.broker)")
    g.logged = True  # the accept step wrote the delivery log's line
    if step.outcome in IGNORED:
        return answer("ignored", IGNORED[step.outcome]), 200
    return answer("enqueued", f"{event.vendor} ticket {event.ticket_id}"), 202


@blueprint.post(f"/webhooks/<any({', '.join(HELPDESKS)}):vendor>")
def helpdesk(vendor: str) -> tuple[Response, int]:
    svc = services()
    verify = svc.verifiers.get(vendor)
    spec = svc.spec(vendor)
    if verify is None:
        return answer("rejected", f"{spec.title} is not configured ({vendor.upper()}_* variables)"), 404
    raw = raw_request()
    event = read(raw, verify(raw), spec.rejected, spec.parse)
    return event if isinstance(event, tuple) else accept(event, svc)


@blueprint.post("/webhooks/slack/interactions")
def slack() -> tuple[Response, int]:
    # Slack wants a 200 within 3 s: verify, enqueue, answer; the decision runs in a task.
    svc = services()
    if svc.settings.slack is None:
        return answer("rejected", "Slack is not configured (SLACK_* variables)"), 404
    raw = raw_request()
    click = read(raw, slack_interactions.verify(raw, svc.settings.slack.signing_secret),
                 "missing, wrong or stale Slack signature", slack_interactions.parse)
    if isinstance(click, tuple):
        return click
    try:
        svc.sender.send("deskmark.review", [click.to_dict()], f"[review of {click.job_id}]")
    except QUEUE_DOWN:
        return unavailable("the queue (Redis) is unreachable")
    return Response(b"", status=200), 200
