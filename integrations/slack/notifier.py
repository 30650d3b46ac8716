"""Warranty review in Slack, on the official `slack_sdk`: the marked photo goes to the channel
(`files_upload_v2`: getUploadURLExternal → upload → completeUploadExternal), then a message with
Approve / Reject buttons, its own message because a just-uploaded file is not yet usable in an
image block. A decision replaces the buttons with the outcome (`chat.update`).

Slack errors become `integrations.errors`. A short `Retry-After` (≤ 10 s) is waited out in
place. A longer one becomes `RateLimited`, so that the task retries later instead of holding a
worker thread.
"""

from __future__ import annotations

import json
import urllib.error
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from integrations.config import SlackSettings
from integrations.errors import PermanentError, RateLimited, RetryableError, VendorError

__all__ = ["SlackNotifier", "Review", "APPROVE", "REJECT", "review_value", "read_review_value",
           "mrkdwn_escape"]

APPROVE = "warranty_approve"
REJECT = "warranty_reject"
SHORT_WAIT = 10.0

# What a deployer should do about Slack's error codes.
HINTS = {
    "not_in_channel": "invite the bot to the channel (/invite @deskmark)",
    "channel_not_found": "SLACK_CHANNEL_ID must be a channel ID (C…), and the bot must see it",
    "invalid_auth": "check SLACK_BOT_TOKEN",
    "not_authed": "check SLACK_BOT_TOKEN",
    "missing_scope": "add the files:write and chat:write scopes and reinstall the app",
}


class ShortRateLimitRetry(RetryHandler):
    """Waits out a 429 in place when Slack asks for at most SHORT_WAIT seconds."""

    def _can_retry(self, *, state: RetryState, request: HttpRequest,
                   response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        return response is not None and response.status_code == 429 and (
            _retry_after(response.headers) <= SHORT_WAIT)

    def prepare_for_next_attempt(self, *, state: RetryState, request: HttpRequest,
                                 response: HttpResponse | None = None,
                                 error: Exception | None = None) -> None:
        import time

        assert response is not None
        state.next_attempt_requested = True
        time.sleep(_retry_after(response.headers) + 0.2)
        state.increment_current_attempt()


def _retry_after(headers: dict[str, Any]) -> float:
    for key, value in headers.items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            try:
                return float(raw)
            except (TypeError, ValueError):
                return 1.0
    return 1.0


def mrkdwn_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def review_value(job_id: str, vendor: str, ticket_id: str) -> str:
    return json.dumps({"j": job_id, "v": vendor, "t": ticket_id}, separators=(",", ":"))


def read_review_value(value: str) -> tuple[str, str, str] | None:
    try:
        data = json.loads(value)
        return str(data["j"]), str(data["v"]), str(data["t"])
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Review:
    job_id: str
    vendor: str
    ticket_id: str
    ticket_url: str
    filename: str
    image: bytes
    customer_words: str
    what: str
    cost: str


def translate(exc: Exception) -> VendorError:
    if isinstance(exc, SlackApiError):
        response = exc.response
        code = str(response.get("error") or "")
        status = response.status_code
        if status == 429 or code == "ratelimited":
            return RateLimited(f"Slack rate limit ({code})", retry_after=_retry_after(
                dict(response.headers)), vendor="slack", status=429, code=code)
        message = f"Slack answered {code or status}"
        if code in HINTS:
            message += f": {HINTS[code]}"
        if status >= 500 or code in ("internal_error", "fatal_error", "service_unavailable",
                                     "request_timeout"):
            return RetryableError(message, vendor="slack", status=status, code=code)
        return PermanentError(message, vendor="slack", status=status, code=code)
    return RetryableError(f"Slack unreachable: {exc}", vendor="slack")


class SlackNotifier:
    def __init__(self, settings: SlackSettings) -> None:
        self.settings = settings
        self.client = WebClient(
            token=settings.bot_token, base_url=settings.api_url, timeout=30,
            retry_handlers=[ConnectionErrorRetryHandler(), ShortRateLimitRetry(max_retry_count=3)],
        )

    def _call(self, method: str, **kw: Any) -> Any:
        try:
            return getattr(self.client, method)(**kw)
        except (SlackApiError, SlackClientError, urllib.error.URLError, OSError) as exc:
            raise translate(exc) from exc

    def upload(self, review: Review) -> str:
        """Share the marked photo in the channel; return Slack's file id."""
        lines = [f"*{review.vendor.capitalize()} ticket #{review.ticket_id}* — "
                 f"<{review.ticket_url}|open the ticket>",
                 f"Marked: {mrkdwn_escape(review.what)} · {review.cost}"]
        if review.customer_words:
            lines.append(f"> {mrkdwn_escape(review.customer_words)}")
        comment = "\n".join(lines)
        response = self._call("files_upload_v2", channel=self.settings.channel_id,
                              filename=review.filename, content=review.image,
                              title=f"Ticket #{review.ticket_id}: {review.filename}",
                              initial_comment=comment)
        return str((response.get("file") or {}).get("id", ""))

    def ask(self, review: Review) -> tuple[str, str]:
        """Post the Approve / Reject message; return (channel, ts)."""
        value = review_value(review.job_id, review.vendor, review.ticket_id)
        text = f"Warranty review for {review.vendor.capitalize()} ticket #{review.ticket_id}"
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn", "text": (
                f"*Warranty review* — {review.vendor.capitalize()} ticket "
                f"<{review.ticket_url}|#{review.ticket_id}>, photo `{mrkdwn_escape(review.filename)}`"
                f" (job `{review.job_id}`)")}},
            {"type": "actions", "block_id": "warranty_review", "elements": [
                {"type": "button", "action_id": APPROVE, "style": "primary", "value": value,
                 "text": {"type": "plain_text", "text": "Approve"}},
                {"type": "button", "action_id": REJECT, "style": "danger", "value": value,
                 "text": {"type": "plain_text", "text": "Reject"}},
            ]},
        ]
        response = self._call("chat_postMessage", channel=self.settings.channel_id, text=text,
                              blocks=blocks)
        return str(response["channel"]), str(response["ts"])

    def show_outcome(self, channel: str, ts: str, text: str) -> None:
        """Replace the buttons with the outcome."""
        self._call("chat_update", channel=channel, ts=ts, text=text,
                   blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}])

    def tell(self, response_url: str, text: str) -> None:
        """An ephemeral answer to the clicking user only (via the click's response_url)."""
        from slack_sdk.webhook import WebhookClient

        try:
            result = WebhookClient(response_url, timeout=10).send(
                text=text, response_type="ephemeral", replace_original=False)
        except (urllib.error.URLError, OSError) as exc:
            raise RetryableError(f"Slack response_url unreachable: {exc}", vendor="slack") from exc
        if result.status_code >= 500:
            raise RetryableError(f"Slack response_url answered {result.status_code}",
                                 vendor="slack", status=result.status_code)

    def check(self) -> str:
        response = self._call("auth_test")
        return f"{response.get('team')} as {response.get('user')} ({response.get('user_id')})"
