"""Freshdesk's settings, read from FRESHDESK_* variables."""

from __future__ import annotations

from dataclasses import dataclass, field

from integrations.env import Reader

__all__ = ["FreshdeskSettings", "read", "VARIABLES"]

VARIABLES = ("FRESHDESK_DOMAIN", "FRESHDESK_API_KEY", "FRESHDESK_WEBHOOK_SECRET", "FRESHDESK_BASE_URL",
             "FRESHDESK_WARRANTY_GROUP_ID")


@dataclass(frozen=True)
class FreshdeskSettings:
    base_url: str
    api_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    warranty_group_id: int | None

    @property
    def warranty_target(self) -> int | None:
        return self.warranty_group_id

    def secrets(self) -> list[str]:
        return [s for s in (self.api_key, self.webhook_secret) if s]

    def warnings(self) -> list[str]:
        return []


def read(r: Reader) -> FreshdeskSettings | None:
    if not r.any("FRESHDESK_DOMAIN", "FRESHDESK_BASE_URL", "FRESHDESK_API_KEY", "FRESHDESK_WEBHOOK_SECRET"):
        return None
    base = r.base_url("Freshdesk", "FRESHDESK_BASE_URL", "FRESHDESK_DOMAIN", "https://{}.freshdesk.com")
    r.require("Freshdesk", "FRESHDESK_API_KEY", "FRESHDESK_WEBHOOK_SECRET")
    return FreshdeskSettings(
        base_url=base,
        api_key=r.get("FRESHDESK_API_KEY") or "",
        webhook_secret=r.get("FRESHDESK_WEBHOOK_SECRET") or "",
        warranty_group_id=r.group("FRESHDESK_WARRANTY_GROUP_ID"),
    )
