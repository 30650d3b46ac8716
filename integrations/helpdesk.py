"""What a helpdesk integration is: one `HelpdeskSpec`, in integrations/<key>/__init__.py,
listed once in integrations.registry. Everything that names helpdesks (settings, log
redaction, webhook routes, metrics, the dashboard, the worker's clients, `deskmark check`, the
demo, docker-compose's variables) reads the registry, so adding a helpdesk is its own folder and
one line there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from integrations.env import Reader
from integrations.events import Helpdesk, RawRequest, TicketEvent
from integrations.tokens import TokenCache

__all__ = ["HelpdeskSettings", "HelpdeskSpec", "Verifier"]


class HelpdeskSettings(Protocol):
    """What deskmark needs to know of any helpdesk's settings."""

    @property
    def base_url(self) -> str: ...

    @property
    def warranty_target(self) -> int | None:
        """The group (Zendesk, Freshdesk) or team (Gorgias) a damage ticket goes to."""
        ...

    def secrets(self) -> list[str]:
        """Every secret in these settings, for the log redactor."""
        ...

    def warnings(self) -> list[str]:
        """What start-up and `deskmark check` warn of (a credential that will stop working)."""
        ...


Verifier = Callable[[RawRequest], bool]
S = TypeVar("S", bound=HelpdeskSettings)


@dataclass(frozen=True)
class HelpdeskSpec(Generic[S]):
    """One helpdesk, as the rest of deskmark sees it. Generic in that helpdesk's own settings
    type S (what `read` returns, inferred from it): the callables take an S, so mypy checks
    every field a spec reads (`s.webhok_secret` is an error). The registry holds specs of
    every type."""

    key: str  # "zendesk": /webhooks/<key>, job ids, metric labels, the dashboard filter
    title: str  # "Zendesk", for people
    variables: tuple[str, ...]  # every environment variable it reads (README, compose, .env.example)
    read: Callable[[Reader], S | None]  # its settings, or None when it is off
    verifier: Callable[[S], Verifier]  # from its settings: the webhook's signature/secret check
    rejected: str  # what a 401 says: what to check
    parse: Callable[[RawRequest], TicketEvent]  # raises Malformed (400) or Ignored (200)
    # (its settings, extra attachment hosts, where expiring tokens are shared: Redis, or None
    # for this process alone)
    client: Callable[[S, tuple[str, ...], TokenCache | None], Helpdesk]
    auth_hint: str  # `deskmark check`, on 401/403: the variables that hold its credentials
    where_hint: str  # `deskmark check`, otherwise: the variables that say where it is
    sandbox: str  # "module:Class" of its loopback stand-in (deskmark.sandbox), for demo and tests
    setup: str  # its setup guide, from the repository's root
