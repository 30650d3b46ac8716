"""Zendesk webhooks: signature verification and parsing into `TicketEvent`.

Signature: base64(HMAC-SHA256(key = the signing secret as UTF-8 text, message = the
`X-Zendesk-Webhook-Signature-Timestamp` header value + raw body)). Two body shapes are accepted:
event-subscribed envelopes (`{"type": "zen:event-type:…", …}`) and trigger bodies with a
`ticket_id`. The handled event types are the keys of `EVENT_HANDLERS`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from integrations.events import Ignored, Malformed, RawRequest, SourcePhoto, TicketEvent, load_json, valid_id

__all__ = ["ZendeskSignature", "parse", "EVENT_HANDLERS", "TOLERANCE_SECONDS"]

TOLERANCE_SECONDS = 300
SIGNATURE_HEADER = "x-zendesk-webhook-signature"
TIMESTAMP_HEADER = "x-zendesk-webhook-signature-timestamp"
INVOCATION_HEADER = "x-zendesk-webhook-invocation-id"


class ZendeskSignature:
    """Verifies (and, for tests and the sandbox, generates) Zendesk webhook signatures."""

    def __init__(self, secret: str, clock: Callable[[], float] = time.time) -> None:
        self._key = secret.encode("utf-8")  # used as text: never base64-decoded
        self._clock = clock

    def generate(self, timestamp: str, body: bytes) -> str:
        mac = hmac.new(self._key, timestamp.encode("utf-8") + body, hashlib.sha256)
        return base64.b64encode(mac.digest()).decode("ascii")

    def is_valid(self, request: RawRequest) -> bool:
        signature = request.header(SIGNATURE_HEADER)
        timestamp = request.header(TIMESTAMP_HEADER)
        if not signature or not timestamp:
            return False
        expected = self.generate(timestamp, request.body)
        if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
            return False
        sent_at = _parse_timestamp(timestamp)
        return sent_at is not None and abs(self._clock() - sent_at) <= TOLERANCE_SECONDS


def _parse_timestamp(value: str) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _text(value: Any, field: str, *, required: bool = True) -> str | None:
    """Zendesk sends ids as strings in events and as numbers in trigger bodies: accept both."""
    if value is None or value == "":
        if required:
            raise Malformed(f"missing {field}")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Malformed(f"{field} must be a string or integer")
    text = str(value).strip()
    if required and not text:
        raise Malformed(f"missing {field}")
    return text


def _optional_id(value: Any, field: str) -> str | None:
    """An id that only the loop guard reads (who acted): one that is not a plain id (Zendesk's
    `-1` for its own automations) is no user of deskmark's, so it is taken as unknown rather
    than refused; ids that go into URLs are checked strictly (`valid_id`)."""
    if value is None or value == "":
        return None
    try:
        return valid_id(value, field)
    except Malformed:
        return None


def _ticket_id(envelope: dict[str, Any]) -> str:
    detail = envelope.get("detail")
    if isinstance(detail, dict) and detail.get("id") is not None:
        ticket_id = _text(detail.get("id"), "detail.id")
    else:
        subject = envelope.get("subject")
        if not isinstance(subject, str) or not subject.startswith("zen:ticket:"):
            raise Malformed("ticket event without detail.id or a zen:ticket: subject")
        ticket_id = subject.removeprefix("zen:ticket:")
    return valid_id(ticket_id, "ticket id")


def _detail(envelope: dict[str, Any]) -> dict[str, Any]:
    detail = envelope.get("detail")
    return detail if isinstance(detail, dict) else {}


def _tags(detail: dict[str, Any]) -> tuple[str, ...] | None:
    tags = detail.get("tags")
    if isinstance(tags, list) and all(isinstance(t, str) for t in tags):
        return tuple(tags)
    return None


def _attachment_linked(envelope: dict[str, Any], key: str) -> TicketEvent:
    detail = _detail(envelope)
    event = envelope.get("event")
    comment = event.get("comment") if isinstance(event, dict) else None
    attachment = comment.get("attachment") if isinstance(comment, dict) else None
    if not isinstance(attachment, dict):
        raise Malformed("attachment_linked_to_comment without event.comment.attachment")
    assert isinstance(comment, dict)
    url = _text(attachment.get("content_url"), "attachment.content_url")
    actor = _optional_id(detail.get("actor_id"), "detail.actor_id")
    photo = SourcePhoto(
        attachment_id=valid_id(attachment.get("id"), "attachment.id"),
        filename=_text(attachment.get("filename"), "attachment.filename", required=False) or "photo",
        content_type=str(attachment.get("content_type") or ""),
        url=url or "",
        author_id=actor,
        comment_id=_optional_id(comment.get("id"), "comment.id"),
    )
    return TicketEvent(
        vendor="zendesk",
        ticket_id=_ticket_id(envelope),
        kind="attachment_linked_to_comment",
        delivery_key=key,
        actor_id=actor,
        photo=photo,
        subject=detail.get("subject") if isinstance(detail.get("subject"), str) else None,
        tags=_tags(detail),
    )


def _ticket_scan(kind: str) -> Callable[[dict[str, Any], str], TicketEvent]:
    def handler(envelope: dict[str, Any], key: str) -> TicketEvent:
        detail = _detail(envelope)
        actor = _optional_id(detail.get("actor_id"), "detail.actor_id")
        if kind == "comment_added":
            event = envelope.get("event")
            comment = event.get("comment") if isinstance(event, dict) else None
            author = comment.get("author") if isinstance(comment, dict) else None
            if isinstance(author, dict) and author.get("id") is not None:
                actor = _optional_id(author.get("id"), "comment.author.id") or actor
        return TicketEvent(
            vendor="zendesk",
            ticket_id=_ticket_id(envelope),
            kind=kind,
            delivery_key=key,
            actor_id=actor,
            subject=detail.get("subject") if isinstance(detail.get("subject"), str) else None,
            tags=_tags(detail),
        )

    return handler


# The supported event types are data: everything else is answered 200 and dropped.
EVENT_HANDLERS: dict[str, Callable[[dict[str, Any], str], TicketEvent]] = {
    "zen:event-type:ticket.attachment_linked_to_comment": _attachment_linked,
    "zen:event-type:ticket.comment_added": _ticket_scan("comment_added"),
    "zen:event-type:ticket.created": _ticket_scan("ticket_created"),
}


def delivery_key(request: RawRequest, body: dict[str, Any]) -> str:
    invocation = request.header(INVOCATION_HEADER)
    if invocation:
        return f"inv:{invocation}"
    if isinstance(body.get("id"), str) and body.get("type"):
        return f"evt:{body['id']}"
    return "body:" + hashlib.sha256(request.body).hexdigest()


def parse(request: RawRequest) -> TicketEvent:
    """A verified request → TicketEvent; raises Malformed (400) or Ignored (200)."""
    body = load_json(request.body)
    if not isinstance(body, dict):
        raise Malformed("body must be a JSON object")
    key = delivery_key(request, body)
    event = _event(request, body, key)
    # The signed content itself: a captured request replayed with a fresh invocation id is the
    # same timestamp and body, so it is still a duplicate (for as long as it could verify).
    signed = (request.header(TIMESTAMP_HEADER) or "").encode() + request.body
    return dataclasses.replace(event, replay_key="sig:" + hashlib.sha256(signed).hexdigest())


def _event(request: RawRequest, body: dict[str, Any], key: str) -> TicketEvent:
    event_type = body.get("type")
    if isinstance(event_type, str) and event_type.startswith("zen:event-type:"):
        handler = EVENT_HANDLERS.get(event_type)
        if handler is None:
            raise Ignored(f"event type {event_type} is not one deskmark acts on")
        return handler(body, key)
    if "ticket_id" in body:
        ticket_id = valid_id(body.get("ticket_id"), "ticket_id (is the placeholder {{ticket.id}}?)")
        return TicketEvent(
            vendor="zendesk",
            ticket_id=ticket_id,
            kind="trigger",
            delivery_key=key,
            actor_id=_optional_id(body.get("actor_id"), "actor_id"),
        )
    raise Malformed('neither a Zendesk event ("type": "zen:event-type:…") nor a body with "ticket_id"')
