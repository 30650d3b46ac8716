"""The operator's dashboard: recent jobs with their photos, dead letters and Replay, charts.
Admin only (webhooks.guard); what changes something also needs a same-origin request."""

from __future__ import annotations

import html
import re
import time

import redis
from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from integrations.config import Settings, masked_url
from integrations.events import Credential
from integrations.registry import HELPDESKS
from webhooks import charts, guard
from webhooks.services import services
from worker.batches import open_batches
from worker.limits import EditGate
from worker.notes import plain_text
from worker.replay import replay_jobs
from worker.signals import checks_line
from worker.store import JOB_STATES, REJECTED_SECONDS, Store

__all__ = ["blueprint"]

blueprint = Blueprint("dashboard", __name__)


@blueprint.app_template_filter("utc_time")
def utc_time(at: float, seconds: bool = False) -> str:
    """A unix time as the dashboard shows it: "2026-12-03 12:03 UTC" (or 12:03:07)."""
    return time.strftime(f"%Y-%m-%d %H:%M{':%S' if seconds else ''} UTC", time.gmtime(float(at)))


@blueprint.app_template_filter("utc_seconds")
def utc_seconds(seconds: float) -> str:
    """To the second, for a timeline: "12:03:07"."""
    return time.strftime("%H:%M:%S", time.gmtime(float(seconds)))


@blueprint.app_template_filter("slack_text")
def slack_text(mrkdwn: str) -> str:
    """A message as Slack shows it: links by their text, no bold marks, entities undone."""
    text = re.sub(r"<([^<>|]+)\|([^<>]+)>", r"\2", mrkdwn)
    return html.unescape(re.sub(r"(?<!\w)\*([^*\n]+)\*(?!\w)", r"\1", text))


@blueprint.app_template_filter("iso_time")
def iso_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(seconds)))


@blueprint.before_request
def _admin_only() -> None:
    guard.require_admin(services().settings)
    if request.method == "POST":
        guard.require_same_origin()


@blueprint.errorhandler(redis.RedisError)
def redis_down(exc: redis.RedisError) -> tuple[str, int, dict[str, str]]:
    """Every page reads Redis: when it is down, say so and what to check (503), not a 500."""
    settings = services().settings
    return (render_template("unavailable.html", redis_url=masked_url(settings.redis_url),
                            reason=str(exc).split("\n")[0][:200]),
            503, {"Retry-After": "30"})


@blueprint.get("/")
def index() -> str:
    svc = services()
    store, settings = svc.store, svc.settings
    state = request.args.get("state") or None
    vendor = request.args.get("vendor") or None
    ticket = (request.args.get("ticket") or "").strip().lstrip("#")[:64] or None
    if ticket:
        found = store.jobs_for_ticket(ticket, [vendor] if vendor else list(settings.helpdesks))
        jobs = [j for j in found if not state or j.get("state") == state]
    else:
        jobs = store.recent_jobs(100, state=state, vendor=vendor)
    series = store.series(30)
    return render_template(
        "dashboard.html", settings=settings, state=state, vendor=vendor, ticket=ticket,
        jobs=jobs,
        dead=store.jobs(store.dead_ids(100)), spent=EditGate(store, settings).spent(),
        health=store.metrics(), notice=request.args.get("notice"), states=JOB_STATES,
        helpdesks=[HELPDESKS[key] for key in settings.helpdesks],
        spend_chart=charts.spend_chart(series, settings.daily_budget_usd),
        latency_chart=charts.latency_chart(series),
        failures_chart=charts.failures_chart(series[-7:]), checks=checks_line,
        credentials=credentials(store, list(settings.helpdesks)),
        signer=signer_fingerprint(store, settings),
        batches=open_batches(store.r) if settings.edit_mode == "batch" else [],
    )


@blueprint.get("/deliveries")
def deliveries() -> str:
    """The webhooks each helpdesk sent lately, newest first: when, the answer, why, and the
    ticket's jobs. Rejected ones are kept for a day, without their bodies."""
    svc = services()
    vendor = request.args.get("vendor") or None
    vendors = [vendor] if vendor in HELPDESKS else list(svc.settings.helpdesks)
    return render_template("deliveries.html", settings=svc.settings, vendor=vendor,
                           helpdesks=[HELPDESKS[key] for key in svc.settings.helpdesks],
                           titles={key: spec.title for key, spec in HELPDESKS.items()},
                           deliveries=svc.store.deliveries(vendors, 200), kept_hours=REJECTED_SECONDS // 3600)


def signer_fingerprint(store: Store, settings: Settings) -> str | None:
    """The fingerprint of the CA content credentials chain to, for `deskmark verify --trust`."""
    from worker import credentials as c2pa_credentials

    try:
        if settings.c2pa_cert:
            chain = c2pa_credentials.read_pem(settings.c2pa_cert, "DESKMARK_C2PA_CERT")
        else:
            signer = store.signer_if_any()
            if signer is None:
                return None
            chain = c2pa_credentials.Keys.from_json(signer).chain_pem
        return c2pa_credentials.fingerprint(c2pa_credentials.issuer_pem(chain))
    except ValueError:
        return None


def credentials(store: Store, vendors: list[str]) -> list[tuple[str, Credential]]:
    """Each helpdesk's credential as the workers last saw it (worker.pipeline.record_credentials)."""
    return [(HELPDESKS[v].title, Credential.from_dict(c)) for v, c in store.credentials(vendors).items()]


@blueprint.get("/jobs/<job_id>")
def job_page(job_id: str) -> str:
    """One job: the photos, the claim signals, the content credentials, the cost and the
    vendors' request ids."""
    from worker import credentials  # c2pa only where a page asks for it

    svc = services()
    job = svc.store.job(job_id)
    if not job:
        abort(404)
    marked = svc.store.marked(job_id)
    summary = credentials.read(marked) if marked else None
    return render_template("job.html", job=job, summary=summary, checks=checks_line,
                           retention_days=svc.settings.retention_days, steps=svc.store.steps(job_id),
                           note_text=plain_text(job["note_html"]) if job.get("note_html") else None,
                           title=HELPDESKS[job["vendor"]].title if job.get("vendor") in HELPDESKS else "")


@blueprint.get("/jobs/<job_id>/<any(marked, before, after, model):name>.jpg")
def job_image(job_id: str, name: str) -> Response:
    image = services().store.image(job_id, name)
    if image is None:
        abort(404)
    return Response(image, mimetype="image/jpeg",
                    headers={"Cache-Control": "private, max-age=3600"})


@blueprint.post("/jobs/<job_id>/replay")
def replay_one(job_id: str) -> BaseResponse:
    svc = services()
    [(_, _, what)] = replay_jobs(svc.store, svc.celery, [job_id])
    return redirect(url_for(".index", notice=f"{job_id}: {what}"), code=303)


@blueprint.post("/replay-failed")
def replay_failed() -> BaseResponse:
    svc = services()
    results = replay_jobs(svc.store, svc.celery, svc.store.dead_ids())
    queued = sum(1 for _, ok, _ in results if ok)
    return redirect(url_for(".index", notice=f"{queued} dead letters queued again"), code=303)
