"""The operator's dashboard: recent jobs with their photos, dead letters and Replay, charts.
Admin only (webhooks.guard); what changes something also needs a same-origin request."""

from __future__ import annotations

import time

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from integrations.config import Settings
from integrations.events import Credential
from integrations.registry import HELPDESKS
from webhooks import charts, guard
from webhooks.services import services
from worker.batches import open_batches
from worker.limits import EditGate
from worker.replay import replay_jobs
from worker.signals import checks_line
from worker.store import JOB_STATES, Store

__all__ = ["blueprint"]

blueprint = Blueprint("dashboard", __name__)


@blueprint.app_template_filter("utc_time")
def utc_time(seconds: float) -> str:
    """A unix time as the dashboard shows it: "2026-12-03 12:03 UTC"."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(seconds)))


@blueprint.before_request
def _admin_only() -> None:
    guard.require_admin(services().settings)
    if request.method == "POST":
        guard.require_same_origin()


@blueprint.get("/")
def index() -> str:
    svc = services()
    store, settings = svc.store, svc.settings
    state = request.args.get("state") or None
    vendor = request.args.get("vendor") or None
    series = store.series(30)
    return render_template(
        "dashboard.html", settings=settings, state=state, vendor=vendor,
        jobs=store.recent_jobs(100, state=state, vendor=vendor),
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
                           retention_days=svc.settings.retention_days)


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
