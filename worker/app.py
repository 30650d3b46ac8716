"""The one function that owns Celery's configuration, for the worker and for the web app."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any
from urllib.parse import urlparse

from celery import Celery

from integrations.config import Settings
from worker import broker

__all__ = ["make_celery", "task_message", "QUEUE"]

QUEUE = "deskmark"


def make_celery(settings: Settings) -> Celery:
    app = Celery("deskmark", broker=settings.redis_url, include=["worker.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        # A worker killed mid-task (OOM, SIGKILL, deploy) puts the message back.
        task_reject_on_worker_lost=True,
        task_default_queue=QUEUE,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # Sweep for messages abandoned by dead workers a few times per timeout, not once
            # per ~100 s (kombu's default interval x throttle).
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout // 4)),
            "unacked_restore_throttle": 1,
            # A publish to a broker that vanished without closing the connection must not hang.
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
        },
        # The web app must answer a webhook within seconds: publish fails fast, we answer 503.
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0.1,
                                   "interval_step": 0.2, "interval_max": 0.3},
        worker_send_task_events=False,
        enable_utc=True,
    )
    if urlparse(settings.redis_url).scheme in broker.SCHEMES:
        # kombu's Redis transport with the fix that keeps a worker consuming after a Redis
        # restart (worker.broker). Sentinel and other URLs keep kombu's own.
        app.conf.broker_transport = broker.TRANSPORT
    return app


def task_message(app: Celery, name: str, args: list[Any]) -> str:
    """A task message for `name(*args)`, exactly as Celery would put it on the Redis queue.

    The web app pushes it itself, in the same atomic step that records the delivery (see
    `Store.accept`), instead of going through kombu's producer: one Redis round trip per
    webhook, and never a claimed delivery without its message. The protocol part (headers,
    body) is Celery's own `as_task_v2`, made once per task name; kombu's Redis envelope around
    it is serialized once too, and only the arguments, the task id and the delivery tag are
    filled in per message.
    """
    envelope, body_tail = _envelope(app, name)
    body = "[" + json.dumps(args) + body_tail
    return envelope % {"body": base64.b64encode(body.encode()).decode(),
                       "id": uuid.uuid4(), "tag": uuid.uuid4()}


def _envelope(app: Celery, name: str) -> tuple[str, str]:
    """kombu's Redis envelope for `name` as JSON text with %(body)s, %(id)s and %(tag)s left to
    fill in (none of the three needs JSON escaping), and the end of the body after the args.
    Headers and properties are Celery's own `as_task_v2`: only the task id differs between two
    messages of the same task (the web app sends no eta, expiry, parent or group)."""
    cache: dict[str, tuple[str, str]] = app.__dict__.setdefault("_deskmark_envelopes", {})
    if name not in cache:
        headers, properties, body, _ = app.amqp.as_task_v2(
            "", name, args=[], kwargs={}, argsrepr="", kwargsrepr="", ignore_result=True)
        text = json.dumps({
            "body": "\0body",
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {**headers, "id": "\0id", "root_id": "\0id"},
            "properties": {
                **properties,
                "correlation_id": "\0id",
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": QUEUE},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": "\0tag",
            },
        }).replace("%", "%%")
        for field in ("body", "id", "tag"):
            text = text.replace(json.dumps("\0" + field), f'"%({field})s"')
        cache[name] = (text, ", {}, " + json.dumps(body[2]) + "]")
    return cache[name]
