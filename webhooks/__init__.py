"""The web app: helpdesk webhooks in, durable jobs out; health endpoints, metrics, the dashboard.

`create_app(settings=None)` is the Flask app factory (`gunicorn 'webhooks:create_app()'`); it
only wires: the store, Celery and the webhook checks are built on first use (webhooks.services).
  webhooks.intake      POST /webhooks/<helpdesk>, POST /webhooks/slack/interactions
  webhooks.operations  GET /healthz, /readyz, /metrics
  webhooks.dashboard   GET / and the job images, POST replays (admin only)
"""

from __future__ import annotations

from flask import Flask, Response

from integrations.config import Settings
from webhooks import dashboard, guard, intake, operations
from webhooks.intake import MAX_BODY_BYTES, RETRY_AFTER_SECONDS
from webhooks.services import Services

__all__ = ["create_app", "MAX_BODY_BYTES", "RETRY_AFTER_SECONDS"]


def create_app(settings: Settings | None = None) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES + 1  # one byte over: see intake.raw_request
    app.extensions["deskmark"] = Services(settings or Settings.from_env())
    for part in (intake, operations, dashboard):
        app.register_blueprint(part.blueprint)
    app.after_request(guard.secure_headers)

    @app.errorhandler(413)
    def too_large(_: Exception) -> tuple[Response, int]:
        return intake.answer("rejected", f"body over {MAX_BODY_BYTES} bytes"), 413

    return app
