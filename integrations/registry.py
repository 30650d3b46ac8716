"""Every helpdesk deskmark speaks to, one line each. Adding one: write integrations/<key>/
(settings, webhook, client, SETUP.md, and a `SPEC`), a loopback sandbox in deskmark/sandbox/,
and list its SPEC here."""

from __future__ import annotations

from typing import Any

from integrations import freshdesk, gorgias, helpscout, zendesk
from integrations.helpdesk import HelpdeskSpec

__all__ = ["HELPDESKS"]

HELPDESKS: dict[str, HelpdeskSpec[Any]] = {spec.key: spec for spec in (
    zendesk.SPEC,
    freshdesk.SPEC,
    gorgias.SPEC,
    helpscout.SPEC,
)}
