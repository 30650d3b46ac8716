"""The baseline for bench/ingest.py: a Flask app that answers the webhook route and does nothing."""

from flask import Flask


def create_app() -> Flask:
    app = Flask("bare")

    @app.post("/webhooks/zendesk")
    def noop() -> tuple[str, int]:
        return "", 202

    return app
