"""For the machines that watch deskmark: `/healthz`, `/readyz`, `/metrics`."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify

from integrations.events import Credential
from webhooks import guard
from webhooks.metrics import render
from webhooks.services import services

__all__ = ["blueprint"]

blueprint = Blueprint("operations", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    return Response(b'{"status": "ok", "detail": "alive"}', content_type="application/json")


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    svc = services()
    checks: dict[str, str] = {}
    try:
        svc.store.r.ping()
        checks["redis"] = "ok"
        checks["worker"] = "ok" if svc.store.worker_seen() else "no heartbeat in the last 45 s"
        credentials = svc.store.credentials(list(svc.settings.helpdesks))
    except redis.RedisError as exc:
        checks["redis"] = f"unreachable: {exc}"
        checks["worker"] = "unknown"
        credentials = {}
    ready = all(v == "ok" for v in checks.values())
    # What is wrong (hosts, error text) only to those who may see the dashboard. A credential
    # that ends is said there, not counted against readiness: the webhooks are still taken.
    details: dict[str, str] = {}
    if guard.is_admin(svc.settings):
        details = dict(checks)
        for vendor, raw in credentials.items():
            credential = Credential.from_dict(raw)
            details[f"{vendor} credential"] = " ".join(
                filter(None, (credential.describe() + ".", credential.warning)))
    return jsonify({"status": "ready" if ready else "not ready", **details}), 200 if ready else 503


@blueprint.get("/metrics")
def metrics() -> Response:
    # Public without DESKMARK_ADMIN_TOKEN (Prometheus scrapes from elsewhere); with one, a
    # scrape sends it as a Bearer token (README: Operating it).
    svc = services()
    guard.require_admin(svc.settings, local_without_token=False)
    try:
        body = render(svc.store, svc.settings)
    except redis.RedisError as exc:
        return Response(f"# Redis unreachable: {exc}\n", status=503, mimetype="text/plain")
    return Response(body, mimetype="text/plain; version=0.0.4; charset=utf-8")
