"""Freshdesk automation-rule webhooks: shared-secret check and parsing into `TicketEvent`.

Freshdesk signs nothing. The rule sends our secret, as the `X-Deskmark-Secret` header or as the
password of HTTP Basic auth; both are compared in constant time. Bodies are
`{"freshdesk_webhook": {"ticket_id": "{{ticket.id}}", "triggered_event": "{{triggered_event}}"}}`
or a flat `{"ticket_id": …}`. `{{triggered_event}}` renders as text that is not JSON
(`{ticket_action:created}`), so it is kept as text. There is no delivery id: duplicates are
handled by coalescing ticket scans and by one job per (ticket, attachment).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import json
from collections.abc import Callable
from typing import Any

from integrations.events import Malformed, RawRequest, TicketEvent, load_json, valid_id

__all__ = ["authorized", "parse", "verifier", "SECRET_HEADER"]

SECRET_HEADER = "x-deskmark-secret"


def _basic_password(header: str | None) -> str | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2]


def authorized(request: RawRequest, secret: str) -> bool:
    given = request.header(SECRET_HEADER)
    if given is None:
        given = _basic_password(request.header("authorization"))
    if not given or not secret:
        return False
    return hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8"))


def verifier(secret: str) -> Callable[[RawRequest], bool]:
    return functools.partial(authorized, secret=secret)


def parse(request: RawRequest) -> TicketEvent:
    body: Any = load_json(request.body)
    if isinstance(body, dict) and isinstance(body.get("freshdesk_webhook"), dict):
        body = body["freshdesk_webhook"]
    if not isinstance(body, dict) or "ticket_id" not in body:
        raise Malformed('expected {"freshdesk_webhook": {"ticket_id": "{{ticket.id}}", …}} '
                        'or {"ticket_id": …}')
    ticket_id = valid_id(body["ticket_id"], "ticket_id (is the placeholder {{ticket.id}}?)")
    triggered = body.get("triggered_event")
    if triggered is not None and not isinstance(triggered, str):
        triggered = json.dumps(triggered)
    return TicketEvent(
        vendor="freshdesk",
        ticket_id=ticket_id,
        kind="automation",
        delivery_key="",  # Freshdesk sends none
        extra={"triggered_event": triggered} if triggered else {},
    )
