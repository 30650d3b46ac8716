"""Slack interactivity: signature check and the button click, framework-free.

Slack POSTs `payload=<JSON>` form-encoded, signed with `v0=` + HMAC-SHA256(signing secret,
`v0:{timestamp}:{raw body}`); requests older than five minutes are refused. The check is
`slack_sdk.signature.SignatureVerifier`'s, with an injectable clock for tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

from slack_sdk.signature import Clock, SignatureVerifier

from integrations.events import Ignored, Malformed, RawRequest, load_json
from integrations.slack.notifier import APPROVE, REJECT, read_review_value

__all__ = ["ReviewClick", "verify", "parse"]


@dataclass(frozen=True)
class ReviewClick:
    decision: str  # "approved" or "rejected"
    job_id: str
    vendor: str
    ticket_id: str
    user_id: str
    user_name: str
    channel: str
    message_ts: str
    response_url: str
    click_id: str  # Slack's action_ts: tells a retry of this click from another click

    def to_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


def verify(request: RawRequest, signing_secret: str, clock: Clock | None = None) -> bool:
    timestamp = (request.header("x-slack-request-timestamp") or "").strip()
    signature = request.header("x-slack-signature") or ""
    if not timestamp.isdigit() or not signature:
        return False  # SignatureVerifier would raise on a missing or non-numeric timestamp
    verifier = SignatureVerifier(signing_secret, clock or Clock())
    return verifier.is_valid(body=request.body, timestamp=timestamp, signature=signature)


def parse(request: RawRequest) -> ReviewClick:
    try:
        form = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
        raw = form["payload"][0]
    except (UnicodeDecodeError, KeyError, IndexError, ValueError) as exc:
        raise Malformed(f"expected a form with a JSON payload field: {exc}") from exc
    payload = load_json(raw, "the payload field")
    if not isinstance(payload, dict):
        raise Malformed("payload must be a JSON object")
    if payload.get("type") != "block_actions":
        raise Ignored(f"interaction type {payload.get('type')!r} is not one deskmark acts on")
    actions = payload.get("actions") or []
    action = actions[0] if actions and isinstance(actions[0], dict) else {}
    decision = {APPROVE: "approved", REJECT: "rejected"}.get(str(action.get("action_id")))
    if decision is None:
        raise Ignored(f"action {action.get('action_id')!r} is not deskmark's")
    target = read_review_value(str(action.get("value") or ""))
    if target is None:
        raise Malformed("the button value does not name a deskmark job")
    user = payload.get("user") or {}
    container = payload.get("container") or {}
    channel = (payload.get("channel") or {}).get("id") or container.get("channel_id") or ""
    message_ts = container.get("message_ts") or (payload.get("message") or {}).get("ts") or ""
    if not user.get("id"):
        raise Malformed("block_actions without user.id")
    return ReviewClick(
        decision=decision, job_id=target[0], vendor=target[1], ticket_id=target[2],
        user_id=str(user["id"]), user_name=str(user.get("username") or user.get("name") or ""),
        channel=str(channel), message_ts=str(message_ts),
        response_url=str(payload.get("response_url") or ""),
        click_id=f"{user['id']}:{action.get('action_ts') or ''}",
    )
