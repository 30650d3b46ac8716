"""What the web app's views use, built on first use rather than when the app is made: the
store, the Celery app, each helpdesk's webhook check. `services()` is the app's own."""

from __future__ import annotations

import functools
from typing import Any, cast

from celery import Celery
from flask import current_app

from integrations.config import Settings
from integrations.helpdesk import HelpdeskSpec, Verifier
from integrations.registry import HELPDESKS
from worker.app import Sender, make_celery
from worker.store import Store

__all__ = ["Services", "services"]


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @functools.cached_property
    def store(self) -> Store:
        # No patience: a webhook that cannot be enqueued gets its 503 at once.
        return Store.from_url(self.settings.redis_url, timeout=2.0,
                              retention_days=self.settings.retention_days)

    @functools.cached_property
    def celery(self) -> Celery:
        return make_celery(self.settings)

    @functools.cached_property
    def sender(self) -> Sender:
        return Sender(self.celery)

    @functools.cached_property
    def verifiers(self) -> dict[str, Verifier]:
        """Each configured helpdesk's webhook check (Zendesk's keeps its key ready)."""
        return {key: HELPDESKS[key].verifier(own) for key, own in self.settings.helpdesks.items()}

    def spec(self, vendor: str) -> HelpdeskSpec[Any]:
        return HELPDESKS[vendor]

    def close(self) -> None:
        """Let go of the connections made so far (an app that stops while its process goes on)."""
        if "sender" in self.__dict__:
            self.sender.close()
        if "celery" in self.__dict__:
            self.celery.close()
        if "store" in self.__dict__:
            self.store.r.close()


def services() -> Services:
    return cast(Services, current_app.extensions["deskmark"])
