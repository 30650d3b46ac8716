"""Warranty review in Slack, on the official `slack_sdk`: the marked photo goes to the channel
(files.getUploadURLExternal → upload → files.completeUploadExternal, the three steps of
`files_upload_v2`, taken one by one so that each can be recorded), then a message with
Approve / Reject buttons, its own message because a just-uploaded file is not yet usable in an
image block. A decision replaces the buttons with the outcome (`chat.update`).

Never posted twice: a share or a message whose answer was lost may still have been posted. So
the caller records each attempt first, and on the next attempt looks in the channel's history
(`conversations.history`, scope `channels:history` / `groups:history`) for the file share, or
for the review message by the job id in its message metadata, before posting again. For the
same reason the SDK's own connection-error retries are off: they would post again blindly.

Slack errors become `integrations.errors`. A short `Retry-After` (≤ 10 s) is waited out in
place (a 429 was not acted on, so resending is safe). A longer one becomes `RateLimited`, so that
the task retries later instead of holding a worker thread.
"""

from __future__ import annotations

import json
import urllib.error
from dataclasses import dataclass
from typing import Any

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from integrations.config import SlackSettings
from integrations.errors import PermanentError, RateLimited, RetryableError, VendorError
from integrations.i18n import ENGLISH, Words

__all__ = ["NOTIFICATION_ONLY", "SlackNotifier", "Review", "Posted", "APPROVE", "REJECT", "review_value",
           "review_message", "share_message",
           "read_review_value", "mrkdwn_escape", "link_target", "METADATA_EVENT"]

# What a review is without SLACK_APPROVER_IDS (worker.pipeline posts it so; `deskmark check` and
# integrations/slack/SETUP.md say it in these words, and tests/test_docs.py holds them to it).
NOTIFICATION_ONLY = ("notification only: the photo and the ticket link are posted without buttons, "
                     "and no click decides anything")

APPROVE = "warranty_approve"
REJECT = "warranty_reject"
SHORT_WAIT = 10.0
METADATA_EVENT = "deskmark_review"  # the review message's metadata: {"job_id": …}
HISTORY_PAGES = 5  # at most this many pages of 200 messages are searched for an earlier post

# What a deployer should do about Slack's error codes.
HINTS = {
    "not_in_channel": "invite the bot to the channel (/invite @deskmark)",
    "channel_not_found": "SLACK_CHANNEL_ID must be a channel ID (C…), and the bot must see it",
    "invalid_auth": "check SLACK_BOT_TOKEN",
    "not_authed": "check SLACK_BOT_TOKEN",
    "missing_scope": "add the scopes in integrations/slack/manifest.yml and reinstall the app",
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
    """Text for Slack's mrkdwn, never markup: no `<!channel>`, no `<@user>`, no `<url|link>`.
    Every customer- or vendor-supplied string goes through this (file names, subjects, labels,
    reasons)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link_target(url: str) -> str:
    """A URL for the target part of `<url|text>`: what would end it (`|`, `>`) is encoded."""
    return (str(url).replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E")
            .replace("|", "%7C").replace(" ", "%20"))


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
    vendor: str  # the helpdesk's key ("helpscout"), carried in the buttons' value
    ticket_id: str
    ticket_url: str
    filename: str
    image: bytes
    customer_words: str
    what: str
    cost: str
    checks: str = ""  # the claim signals' line (worker.signals), shown above the buttons
    vendor_title: str = ""  # the helpdesk's name for people ("Help Scout")
    words: Words = ENGLISH  # the ticket's language (integrations.i18n)

    @property
    def helpdesk(self) -> str:
        return self.vendor_title or self.vendor.capitalize()


SECTION_LIMIT = 3000  # characters of a section block's text (Slack refuses more: invalid_blocks)
TITLE_LIMIT = 250


def fit(text: str, limit: int = SECTION_LIMIT) -> str:
    """`text` cut to Slack's limit (a review is truncated, never refused)."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def share_message(review: Review) -> tuple[str, str]:
    """The marked photo's share in the channel: (the file's title, the comment under it)."""
    w = review.words
    lines = [w._("*{helpdesk} ticket #{ticket}* — <{url}|open the ticket>", helpdesk=mrkdwn_escape(review.helpdesk),
                 ticket=mrkdwn_escape(review.ticket_id), url=link_target(review.ticket_url)),
             w._("Marked: {what} · {cost}", what=mrkdwn_escape(review.what), cost=mrkdwn_escape(review.cost))]
    if review.customer_words:
        lines.append(f"> {mrkdwn_escape(review.customer_words)}")
    title = w._("Ticket #{ticket}: {filename}", ticket=review.ticket_id, filename=review.filename)
    return fit(mrkdwn_escape(title), TITLE_LIMIT), fit("\n".join(lines))


def review_message(review: Review, buttons: bool) -> tuple[str, list[dict[str, Any]]]:
    """The review message: (its fallback text, its blocks); with `buttons`, Approve and Reject."""
    value = review_value(review.job_id, review.vendor, review.ticket_id)
    w = review.words
    heading = w._("Warranty review") if buttons else w._("For warranty review (decide on the ticket)")
    text = w._("{heading} for {helpdesk} ticket #{ticket}", heading=heading, helpdesk=review.helpdesk,
               ticket=review.ticket_id)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": fit(w._(
            "*{heading}* — {helpdesk} ticket <{url}|#{ticket}>, photo `{filename}` (job `{job}`)",
            heading=heading, helpdesk=mrkdwn_escape(review.helpdesk), url=link_target(review.ticket_url),
            ticket=mrkdwn_escape(review.ticket_id), filename=mrkdwn_escape(review.filename[:200]),
            job=review.job_id))}},
    ]
    if review.checks:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": fit(mrkdwn_escape(review.checks))}})
    if buttons:
        blocks.append({"type": "actions", "block_id": "warranty_review", "elements": [
            {"type": "button", "action_id": APPROVE, "style": "primary", "value": value,
             "text": {"type": "plain_text", "text": w._("Approve")}},
            {"type": "button", "action_id": REJECT, "style": "danger", "value": value,
             "text": {"type": "plain_text", "text": w._("Reject")}},
        ]})
    return text, blocks


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


@dataclass(frozen=True)
class Posted:
    """What an earlier attempt left in the channel."""

    file_shared: bool
    review_ts: str | None


class SlackNotifier:
    def __init__(self, settings: SlackSettings) -> None:
        self.settings = settings
        self.client = WebClient(
            token=settings.bot_token, base_url=settings.api_url, timeout=30,
            retry_handlers=[ShortRateLimitRetry(max_retry_count=3)],
        )

    def _call(self, method: str, **kw: Any) -> Any:
        try:
            return getattr(self.client, method)(**kw)
        except (SlackApiError, SlackClientError, urllib.error.URLError, OSError) as exc:
            raise translate(exc) from exc

    def start_upload(self, review: Review) -> tuple[str, str]:
        """Step 1 of a share: (file id, upload URL). Nothing shows in the channel yet."""
        response = self._call("files_getUploadURLExternal", filename=review.filename,
                              length=len(review.image))
        return str(response["file_id"]), str(response["upload_url"])

    def finish_upload(self, file_id: str, upload_url: str, review: Review) -> None:
        """Steps 2 and 3: the bytes to the upload URL (no token: it is pre-signed), then the
        share in the channel with the ticket link, what was marked and the cost."""
        try:
            answer = httpx.post(upload_url, content=review.image, timeout=60,
                                headers={"Content-Type": "application/octet-stream"})
        except httpx.HTTPError as exc:
            raise RetryableError(f"Slack upload unreachable: {exc}", vendor="slack") from exc
        if answer.status_code != 200:
            kind = RetryableError if answer.status_code >= 500 else PermanentError
            raise kind(f"Slack upload answered {answer.status_code}", vendor="slack",
                       status=answer.status_code)
        title, comment = share_message(review)
        self._call("files_completeUploadExternal", channel_id=self.settings.channel_id,
                   files=[{"id": file_id, "title": title}], initial_comment=comment)

    def posted_since(self, since: float, job_id: str, file_id: str | None) -> Posted:
        """Whether the channel shows, since `since`, the share of `file_id` and the review
        message of `job_id` (found by its metadata)."""
        shared, review_ts, cursor = False, None, None
        for _ in range(HISTORY_PAGES):
            response = self._call("conversations_history", channel=self.settings.channel_id,
                                  oldest=f"{since:.6f}", limit=200, include_all_metadata=True,
                                  **({"cursor": cursor} if cursor else {}))
            for message in response.get("messages") or []:
                if file_id and any(f.get("id") == file_id for f in message.get("files") or []):
                    shared = True
                metadata = message.get("metadata") or {}
                if (metadata.get("event_type") == METADATA_EVENT
                        and (metadata.get("event_payload") or {}).get("job_id") == job_id):
                    review_ts = str(message["ts"])
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not response.get("has_more") or not cursor:
                break
        return Posted(shared, review_ts)

    def ask(self, review: Review, buttons: bool = True) -> tuple[str, str]:
        """Post the Approve / Reject message (without `buttons`: a notification only, for
        deployments with no list of reviewers); return (channel, ts)."""
        text, blocks = review_message(review, buttons)
        response = self._call("chat_postMessage", channel=self.settings.channel_id, text=text,
                              blocks=blocks, metadata={"event_type": METADATA_EVENT,
                                                       "event_payload": {"job_id": review.job_id}})
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

    def check(self) -> tuple[str, list[str]]:
        """Who the bot is, and the scopes from the manifest it was not granted."""
        response = self._call("auth_test")
        granted = {s.strip() for s in str(_header(response.headers, "x-oauth-scopes") or "").split(",")}
        missing = [scope for scope in SCOPES if scope not in granted] if granted != {""} else []
        return f"{response.get('team')} as {response.get('user')} ({response.get('user_id')})", missing


# The bot scopes of manifest.yml: posting (chat:write, files:write), and reading the channel's
# recent history, so that a post whose answer was lost is found instead of posted twice.
SCOPES = ("chat:write", "files:write", "channels:history", "groups:history")


def _header(headers: Any, name: str) -> str | None:
    for key, value in dict(headers or {}).items():
        if key.lower() == name:
            return str(value[0] if isinstance(value, list) else value)
    return None
