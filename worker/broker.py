"""kombu's Redis transport with one fix, so that a worker keeps consuming after Redis restarts.

The bug (celery 5.7, kombu 5.7; reproduced by tests/test_broker.py with kombu alone): when
Redis goes away, Celery's consumer calls `connection.collect()`, then `connection.close()`.
`collect()` tries to close each channel; a channel whose close needs Redis (a pending BRPOP, an
auto-delete fanout queue such as Celery's control queue) raises a connection error, which
`collect()` swallows, and then drops the transport's `client`. The next `close()`, or any ack
still on its way from a running task, makes the channel build a new connection pool from that
client: AttributeError("'NoneType' object has no attribute 'hostname'"). Celery treats that as
unrecoverable, and the worker consumes nothing more.

The fix: a channel whose transport has been closed raises a connection error instead, which
Celery handles as what it is. The messages that could not be restored or acknowledged stay in
kombu's unacknowledged index in Redis; kombu restores them after the visibility timeout, and
deskmark's job state makes their second run a no-op.

This overrides `_connparams`, a private method: tests/test_broker.py pins the kombu versions it
was checked against and shows the stock transport still failing, so an upgrade is looked at.
`make_celery` selects this transport through Celery's documented `broker_transport` setting,
for redis:// and rediss:// URLs only.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis

__all__ = ["Channel", "Transport", "TRANSPORT", "SCHEMES"]

TRANSPORT = "worker.broker:Transport"
SCHEMES = ("redis", "rediss")


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            # The connection was closed under this channel (see the module docstring).
            raise redis.exceptions.ConnectionError("the broker connection was closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel
