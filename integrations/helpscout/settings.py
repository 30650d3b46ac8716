"""Help Scout's settings, read from HELPSCOUT_* variables."""

from __future__ import annotations

from dataclasses import dataclass, field

from integrations.env import Reader

__all__ = ["HelpScoutSettings", "read", "VARIABLES", "DEFAULT_BASE_URL"]

VARIABLES = ("HELPSCOUT_APP_ID", "HELPSCOUT_APP_SECRET", "HELPSCOUT_WEBHOOK_SECRET",
             "HELPSCOUT_BASE_URL", "HELPSCOUT_WARRANTY_USER_ID")
DEFAULT_BASE_URL = "https://api.helpscout.net"


@dataclass(frozen=True)
class HelpScoutSettings:
    base_url: str
    app_id: str
    app_secret: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    warranty_user_id: int | None

    @property
    def warranty_target(self) -> int | None:
        return self.warranty_user_id

    def secrets(self) -> list[str]:
        return [s for s in (self.app_secret, self.webhook_secret) if s]

    def warnings(self) -> list[str]:
        return []


def read(r: Reader) -> HelpScoutSettings | None:
    if not r.any("HELPSCOUT_APP_ID", "HELPSCOUT_APP_SECRET", "HELPSCOUT_WEBHOOK_SECRET"):
        return None
    if not (r.get("HELPSCOUT_APP_ID") and r.get("HELPSCOUT_APP_SECRET")):
        r.problems.append("Help Scout: set HELPSCOUT_APP_ID and HELPSCOUT_APP_SECRET (an OAuth2 "
                          "app: Your Profile > My Apps > Create My App; integrations/helpscout/SETUP.md)")
    if not r.get("HELPSCOUT_WEBHOOK_SECRET"):
        r.problems.append("Help Scout: set HELPSCOUT_WEBHOOK_SECRET to the secret of the webhook "
                          "(Manage > Apps > Webhooks), which signs every delivery")
    base = r.get("HELPSCOUT_BASE_URL")
    return HelpScoutSettings(
        base_url=r.url("HELPSCOUT_BASE_URL", base) if base else DEFAULT_BASE_URL,
        app_id=r.get("HELPSCOUT_APP_ID") or "",
        app_secret=r.get("HELPSCOUT_APP_SECRET") or "",
        webhook_secret=r.get("HELPSCOUT_WEBHOOK_SECRET") or "",
        warranty_user_id=r.group("HELPSCOUT_WARRANTY_USER_ID"),
    )
