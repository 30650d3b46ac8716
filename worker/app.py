"""The one place that owns Celery's configuration, for the worker and for the web app, and the
web app's way of sending a task (`Sender`)."""

from __future__ import annotations

import collections
import contextlib
import os
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from celery import Celery
from celery.utils.nodenames import anon_nodename
from kombu import serialization
from kombu.connection import Connection

from integrations.config import Settings
from worker import broker

__all__ = ["make_celery", "celery_config", "Sender", "QUEUE"]

QUEUE = "deskmark"


def _name_this_process() -> None:
    global _origin
    _origin = anon_nodename()


# The message's `origin` (gen<pid>@<host>), which Celery would work out on every message with
# two system calls; named again in a forked child (gunicorn's workers).
_origin = anon_nodename()
os.register_at_fork(after_in_child=_name_this_process)


def celery_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = dict(
        broker_url=settings.redis_url,
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
        # kombu's Redis transport with deskmark's two additions (worker.broker).
        config["broker_transport"] = broker.TRANSPORT
    return config


def make_celery(settings: Settings | Callable[[], Settings]) -> Celery:
    """A Celery app for `settings`, or for what `settings()` returns when Celery first needs
    its configuration (the worker's tasks module builds nothing at import)."""
    app = Celery("deskmark", include=["worker.tasks"])
    app.add_defaults(lambda: celery_config(settings if isinstance(settings, Settings) else settings()))
    return app


class Sender:
    """Sends task messages from the web app, through public Celery and kombu APIs only: the
    message is Celery's own (`app.amqp.create_task_message`), serialized by kombu's serializer
    registry, and published on a kombu channel (`prepare_message`, `basic_publish`) to the
    `deskmark` queue; with `accept`, the broker stores it with the webhook's accept script
    (worker.broker). This is `send_task` minus its router (the queue is fixed), its publish
    signals (none are used) and its producer pool and reconnect wrapper, which together cost
    more than the rest of a webhook's Python (bench/ingest.py). A channel that fails is closed
    and the webhook answered 503 (the vendor retries); the next one gets a new connection.

    Connections are kept for reuse in a deque, whose append and pop need no lock: there are
    never more than the web threads that were sending at once, whether the server keeps its
    threads (gunicorn) or starts one per request (werkzeug).
    """

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.idle: collections.deque[Connection] = collections.deque()

    def send(self, name: str, args: list[Any], argsrepr: str,
             accept: broker.Accept | None = None) -> None:
        """Publish `name(*args)`; raises the broker's errors (the caller answers 503).
        `argsrepr` is what logs and monitors show of the arguments (never a URL or a secret)."""
        amqp: Any = self.app.amqp  # Celery's and kombu's APIs are untyped
        headers, properties, body, _ = amqp.create_task_message(
            str(uuid.uuid4()), name, args, {}, ignore_result=True, argsrepr=argsrepr,
            kwargsrepr="{}", origin=_origin)
        encode: Any = serialization.dumps
        content_type, content_encoding, payload = encode(body, serializer="json")
        try:
            connection = self.idle.pop()
        except IndexError:
            connection = self.app.connection_for_write()
        try:
            channel: Any = connection.default_channel
            message = channel.prepare_message(payload, 0, content_type, content_encoding, headers,
                                              {**properties, "delivery_mode": 2})
            with broker.accepting(accept):  # None: a bare LPUSH, as kombu's own
                channel.basic_publish(message, exchange="", routing_key=QUEUE)
        except BaseException:
            _close(connection)  # in an unknown state: a new one next time
            raise
        self.idle.append(connection)

    def close(self) -> None:
        """Close the connections kept for the next publish."""
        while self.idle:
            _close(self.idle.pop())


def _close(connection: Any) -> None:  # kombu's Connection.close is untyped
    with contextlib.suppress(Exception):  # it is being thrown away
        connection.close()
