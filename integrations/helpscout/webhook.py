"""Help Scout webhooks: signature verification and parsing into `TicketEvent`.

Signature: `X-HelpScout-Signature` = base64(HMAC-SHA1(key = the webhook's secret, message =
the raw body)), compared in constant time. The event is named by `X-HelpScout-Event`; the body
is the conversation, its `id` at the top level. `convo.created` and
`convo.customer.reply.created` scan the conversation's customer threads for photos (coalesced
while a scan is queued, as for Gorgias); every other event (a note, deskmark's own included, an
agent's reply) is answered 200 and starts nothing. Help Scout sends no delivery id and signs no
timestamp, so the body's hash is the delivery key: a captured request replayed is a duplicate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from integrations.events import Ignored, Malformed, RawRequest, TicketEvent, load_json, valid_id

__all__ = ["SIGNATURE_HEADER", "EVENT_HEADER", "EVENTS", "parse", "sign", "verifier"]

SIGNATURE_HEADER = "x-helpscout-signature"
EVENT_HEADER = "x-helpscout-event"
# The events that can bring a customer's photo; SETUP.md subscribes the webhook to these.
EVENTS = ("convo.created", "convo.customer.reply.created")


def sign(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha1).digest()).decode()


def verifier(secret: str) -> Callable[[RawRequest], bool]:
    def authentic(request: RawRequest) -> bool:
        given = request.header(SIGNATURE_HEADER)
        if not given or not secret:
            return False
        return hmac.compare_digest(given.strip().encode(), sign(secret, request.body).encode())

    return authentic


def parse(request: RawRequest) -> TicketEvent:
    body: Any = load_json(request.body)
    if not isinstance(body, dict) or "id" not in body:
        raise Malformed("expected a Help Scout conversation (a JSON object with its id)")
    conversation = valid_id(body["id"], "conversation id")
    event = (request.header(EVENT_HEADER) or "").strip()
    if not event:
        raise Malformed("no X-HelpScout-Event header: is this a Help Scout webhook?")
    if event not in EVENTS:
        raise Ignored(f"event {event[:60]} is not one deskmark acts on")
    return TicketEvent(vendor="helpscout", ticket_id=conversation, kind=event,
                       delivery_key="body:" + hashlib.sha256(request.body).hexdigest(),
                       subject=body.get("subject") if isinstance(body.get("subject"), str) else None)
