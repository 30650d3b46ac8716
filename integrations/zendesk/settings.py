"""Zendesk's settings, read from ZENDESK_* variables."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from integrations.env import Reader

__all__ = ["ZendeskSettings", "read", "VARIABLES"]

VARIABLES = ("ZENDESK_SUBDOMAIN", "ZENDESK_OAUTH_TOKEN", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN",
             "ZENDESK_WEBHOOK_SECRET", "ZENDESK_BASE_URL", "ZENDESK_WARRANTY_GROUP_ID")


@dataclass(frozen=True)
class ZendeskSettings:
    base_url: str
    email: str | None
    api_token: str | None = field(repr=False)
    oauth_token: str | None = field(repr=False)
    webhook_secret: str = field(repr=False)
    warranty_group_id: int | None

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

    @property
    def warranty_target(self) -> int | None:
        return self.warranty_group_id

    def secrets(self) -> list[str]:
        return [s for s in (self.api_token, self.oauth_token, self.webhook_secret) if s]


def read(r: Reader) -> ZendeskSettings | None:
    if not r.any(*(v for v in VARIABLES if v != "ZENDESK_WARRANTY_GROUP_ID")):
        return None
    base = r.base_url("Zendesk", "ZENDESK_BASE_URL", "ZENDESK_SUBDOMAIN", "https://{}.zendesk.com")
    email, token, oauth = r.get("ZENDESK_EMAIL"), r.get("ZENDESK_API_TOKEN"), r.get("ZENDESK_OAUTH_TOKEN")
    if not oauth and not (email and token):
        r.problems.append(
            "Zendesk: set ZENDESK_OAUTH_TOKEN, or ZENDESK_EMAIL with ZENDESK_API_TOKEN "
            "(API tokens are being retired by Zendesk on 2027-04-30: prefer OAuth)"
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
    )
