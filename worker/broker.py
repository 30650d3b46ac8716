"""kombu's Redis transport, with two additions: a worker keeps consuming after Redis restarts,
and the web app's accept step (loop guard, duplicate check, enqueue) is one atomic script.

1. The restart bug (celery 5.7, kombu 5.7; reproduced by tests/test_broker.py with kombu alone):
   when Redis goes away, Celery's consumer calls `connection.collect()`, then
   `connection.close()`. `collect()` tries to close each channel; a channel whose close needs
   Redis (a pending BRPOP, an auto-delete fanout queue such as Celery's control queue) raises a
   connection error, which `collect()` swallows, and then drops the transport's `client`. The
   next `close()`, or any ack still on its way from a running task, makes the channel build a
   new connection pool from that client: AttributeError("'NoneType' object has no attribute
   'hostname'"). Celery treats that as unrecoverable, and the worker consumes nothing more.
   The fix: a channel whose transport has been closed raises a connection error instead, which
   Celery handles as what it is. This overrides `_connparams`, a private method:
   tests/test_broker.py pins the kombu versions it was checked against and shows the stock
   transport still failing, so an upgrade is looked at.

2. The accept step. The web app publishes Celery's own task message through a kombu channel
   (worker.app.Sender), inside `accepting(...)`. kombu hands the finished message to the
   channel's `_put(queue, message)`, the method every kombu virtual transport implements to
   store a message (kombu's "implementing a virtual transport" API); ours runs, instead of a
   bare LPUSH, a redis-py `Script` that does the loop guard, the duplicate check and the LPUSH
   of that very message in one step, and hands back what it did. Outside `accepting` (the
   worker's retries, replays, Slack clicks) `_put` is kombu's own. tests/test_enqueue.py shows
   that what the web app enqueues is consumed by the installed Celery.
   The script runs on a redis-py `Connection` the channel keeps for it (made by the channel's
   own pool, `make_connection`), with the connection's public `send_command` and
   `read_response`: the client's per-call pool checkout (a `poll` on every call), retry
   wrapper and observability counters cost more than the script's round trip (bench/ingest.py:
   46% of the no-op's webhooks/s on this path, 41% through the client, in the same hour).
   tests/test_zendesk_webhook.py drops that connection and flushes the script cache under it.

`make_celery` selects this transport through Celery's documented `broker_transport` setting.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.utils import json as kombu_json
from redis.commands.core import Script

__all__ = ["Accept", "Channel", "Transport", "TRANSPORT", "SCHEMES", "accepting"]

# kombu's own JSON (what its Redis transport stores messages with); untyped in kombu.
dumps: Callable[[Any], str] = kombu_json.dumps

TRANSPORT = "worker.broker:Transport"
SCHEMES = ("redis", "rediss")


@dataclass
class Accept:
    """One accept step: `script(keys=[*before, queue, *after], args=[*args, message])`."""

    script: Script
    keys_before: list[str]
    keys_after: list[str]
    args: list[str | int]
    outcome: str | None = field(default=None, init=False)

    def run(self, connection: Any, queue: str, message: str) -> None:
        """On one connection of its own: redis-py's `Connection.send_command` and
        `read_response`, the calls its clients make under their pool, retry and observability
        layers (which cost more than the script itself: bench/ingest.py). EVALSHA, and EVAL
        once when Redis does not know the script (after a restart or SCRIPT FLUSH), as
        `Script.__call__` does. A connection Redis dropped (idle, or restarted) is made again
        and the step tried once more, as redis-py's clients retry: should the first try have
        run with its answer lost, the second finds the delivery taken ("duplicate"), so the
        message is stored once either way."""
        # `connection` is a redis.connection.Connection (partly untyped in redis-py).
        keys = [*self.keys_before, queue, *self.keys_after]
        try:
            result = self._call(connection, keys, message)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            connection.disconnect()  # the next command connects again
            result = self._call(connection, keys, message)
        self.outcome = result.decode() if isinstance(result, bytes) else str(result)

    def _call(self, connection: Any, keys: list[str], message: str) -> Any:
        connection.send_command("EVALSHA", self.script.sha, len(keys), *keys, *self.args, message)
        try:
            return connection.read_response()
        except redis.exceptions.NoScriptError:
            connection.send_command("EVAL", self.script.script, len(keys), *keys, *self.args, message)
            return connection.read_response()


_accepting: ContextVar[Accept | None] = ContextVar("deskmark_accepting", default=None)


class accepting:  # noqa: N801 - a context manager, used as `with accepting(step):`
    """Messages published in this block are stored by `accept`'s script, not by a bare LPUSH.
    (A class rather than @contextmanager: it runs on every webhook.)"""

    __slots__ = ("accept", "token")

    def __init__(self, accept: Accept | None) -> None:
        self.accept = accept

    def __enter__(self) -> Accept | None:
        self.token = _accepting.set(self.accept)
        return self.accept

    def __exit__(self, *exc: object) -> None:
        _accepting.reset(self.token)


class Channel(kombu_redis.Channel):
    # The connection the accept step runs on: one per channel, and a channel is used by one
    # thread at a time (worker.app.Sender). Made from the channel's own pool, so with its
    # address, password, TLS and timeouts.
    _accept_connection: Any = None  # a redis.connection.Connection (partly untyped)

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            # The connection was closed under this channel (see 1. above).
            raise redis.exceptions.ConnectionError("the broker connection was closed")
        base: Any = super()  # kombu's methods are untyped
        return base._connparams(asynchronous=asynchronous)

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        accept = _accepting.get()
        if accept is None or kwargs.get("_publish_batch") is not None:
            base: Any = super()  # kombu's methods are untyped
            base._put(queue, message, **kwargs)
            return
        # deskmark sends no priorities: the message goes to the queue's own list, where a bare
        # LPUSH would have put it (and where the consumer's BRPOP looks).
        connection = self._accept_connection
        if connection is None:
            connection = self._accept_connection = self.pool.make_connection()
        try:
            accept.run(connection, queue, dumps(message))
        except BaseException:
            self._accept_connection = None  # in an unknown state: the next step gets a new one
            connection.disconnect()
            raise

    def close(self) -> None:
        connection, self._accept_connection = self._accept_connection, None
        if connection is not None:
            connection.disconnect()
        base: Any = super()  # kombu's methods are untyped
        base.close()


class Transport(kombu_redis.Transport):
    Channel = Channel
