"""Zendesk's settings, read from ZENDESK_* variables.

Credentials, in order of precedence: an OAuth client (ZENDESK_CLIENT_ID and
ZENDESK_CLIENT_SECRET: tokens by the client-credentials grant, renewed before they expire), a
static OAuth access token (ZENDESK_OAUTH_TOKEN: works until it expires), an API token
(ZENDESK_EMAIL and ZENDESK_API_TOKEN: Zendesk turns these off on 2027-04-30).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from urllib.parse import urlsplit

from integrations.env import Reader

__all__ = ["ZendeskSettings", "read", "VARIABLES", "API_TOKENS_END", "SCOPE", "api_token_end", "api_token_warning"]

VARIABLES = ("ZENDESK_SUBDOMAIN", "ZENDESK_CLIENT_ID", "ZENDESK_CLIENT_SECRET",
             "ZENDESK_OAUTH_TOKEN", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN", "ZENDESK_WEBHOOK_SECRET",
             "ZENDESK_BASE_URL", "ZENDESK_WARRANTY_GROUP_ID")
# Zendesk issues no API tokens since 2026-10-27 and turns every one off on this day
# (developer.zendesk.com, "Migrating from API tokens to OAuth access tokens", read 2026-12-02).
API_TOKENS_END = date(2027, 4, 30)
# The narrowest scopes covering what deskmark calls: tickets, their comments, uploads and tags
# (tickets), and its own user (users/me). Read 2026-12-02: Zendesk's resource scopes are
# tickets, users, auditlogs, organizations, hc, apps, triggers, automations, targets, webhooks
# and zis; uploads belong to tickets.
SCOPE = "tickets:read tickets:write users:read"


@dataclass(frozen=True)
class ZendeskSettings:
    base_url: str
    email: str | None
    api_token: str | None = field(repr=False)
    oauth_token: str | None = field(repr=False)
    webhook_secret: str = field(repr=False)
    warranty_group_id: int | None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

    @property
    def warranty_target(self) -> int | None:
        return self.warranty_group_id

    @property
    def credential(self) -> str:
        """Which credential deskmark uses: "oauth client", "oauth token" or "api token"."""
        if self.client_id and self.client_secret:
            return "oauth client"
        return "oauth token" if self.oauth_token else "api token"

    def secrets(self) -> list[str]:
        return [s for s in (self.api_token, self.oauth_token, self.webhook_secret,
                            self.client_secret) if s]

    def warnings(self) -> list[str]:
        return [api_token_warning()] if self.credential == "api token" else []


def api_token_end(today: date | None = None) -> str:
    """"Zendesk turns these off on 2027-04-30, in 149 days"."""
    left = (API_TOKENS_END - (today or datetime.now(UTC).date())).days
    when = f"in {left} days" if left > 1 else "tomorrow" if left == 1 else "today" if left == 0 else (
        f"{-left} days ago")
    return f"Zendesk turns these off on {API_TOKENS_END.isoformat()}, {when}"


def api_token_warning(today: date | None = None) -> str:
    return (f"ZENDESK_API_TOKEN: {api_token_end(today)}; create an OAuth client and set "
            "ZENDESK_CLIENT_ID and ZENDESK_CLIENT_SECRET instead (integrations/zendesk/SETUP.md)")


def read(r: Reader) -> ZendeskSettings | None:
    if not r.any(*(v for v in VARIABLES if v != "ZENDESK_WARRANTY_GROUP_ID")):
        return None
    base = r.base_url("Zendesk", "ZENDESK_BASE_URL", "ZENDESK_SUBDOMAIN", "https://{}.zendesk.com")
    email, token, oauth = r.get("ZENDESK_EMAIL"), r.get("ZENDESK_API_TOKEN"), r.get("ZENDESK_OAUTH_TOKEN")
    client_id, client_secret = r.get("ZENDESK_CLIENT_ID"), r.get("ZENDESK_CLIENT_SECRET")
    if bool(client_id) != bool(client_secret):
        r.problems.append("Zendesk: ZENDESK_CLIENT_ID and ZENDESK_CLIENT_SECRET go together (the "
                          "OAuth client's identifier and secret, from Admin Center > Apps and "
                          "integrations > APIs > OAuth clients)")
    elif not client_id and not oauth and not (email and token):
        r.problems.append(
            "Zendesk: set ZENDESK_CLIENT_ID and ZENDESK_CLIENT_SECRET (an OAuth client: "
            "integrations/zendesk/SETUP.md), or ZENDESK_OAUTH_TOKEN, or ZENDESK_EMAIL with "
            "ZENDESK_API_TOKEN (Zendesk turns API tokens off on 2027-04-30)"
        )
    secret = r.get("ZENDESK_WEBHOOK_SECRET")
    if not secret:
        r.problems.append(
            "Zendesk: set ZENDESK_WEBHOOK_SECRET to the webhook's signing secret "
            "(Admin Center > Apps and integrations > Webhooks > your webhook > Reveal secret)"
        )
    return ZendeskSettings(
        base_url=base,
        email=email,
        api_token=token,
        oauth_token=oauth,
        webhook_secret=secret or "",
        warranty_group_id=r.group("ZENDESK_WARRANTY_GROUP_ID"),
        client_id=client_id,
        client_secret=client_secret,
    )
