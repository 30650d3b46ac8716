"""Gorgias HTTP-integration webhooks: shared-secret check and parsing into `TicketEvent`.

Gorgias signs nothing: the HTTP integration sends a header the admin configures,
`X-Deskmark-Secret: <GORGIAS_WEBHOOK_SECRET>`, compared in constant time. The body template is
`{"ticket_id": "{{ticket.id}}"}`; it names no message, so every delivery is a scan of the
ticket, coalesced while one is queued. The integration fires for agent messages and internal
notes too (deskmark's own included): the scan takes photos from customer messages only, and
a photo's job is deterministic, so those deliveries add nothing. There is no delivery id.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from integrations.events import Malformed, RawRequest, TicketEvent, load_json, valid_id

__all__ = ["SECRET_HEADER", "parse", "verifier"]

SECRET_HEADER = "x-deskmark-secret"


def verifier(secret: str) -> Callable[[RawRequest], bool]:
    expected = secret.encode("utf-8")

    def authentic(request: RawRequest) -> bool:
        given = request.header(SECRET_HEADER)
        if not given or not expected:
            return False
        return hmac.compare_digest(given.encode("utf-8"), expected)

    return authentic


def parse(request: RawRequest) -> TicketEvent:
    body: Any = load_json(request.body)
    if not isinstance(body, dict) or "ticket_id" not in body:
        raise Malformed('expected {"ticket_id": "{{ticket.id}}"} (the HTTP integration\'s body)')
    ticket_id = valid_id(body["ticket_id"], "ticket_id (is the placeholder {{ticket.id}}?)")
    return TicketEvent(vendor="gorgias", ticket_id=ticket_id, kind="http-integration",
                       delivery_key="")
