"""Gorgias's settings, read from GORGIAS_* variables."""

from __future__ import annotations

from dataclasses import dataclass, field

from integrations.env import Reader

__all__ = ["GorgiasSettings", "read", "VARIABLES"]

VARIABLES = ("GORGIAS_DOMAIN", "GORGIAS_EMAIL", "GORGIAS_API_KEY", "GORGIAS_WEBHOOK_SECRET",
             "GORGIAS_BASE_URL", "GORGIAS_WARRANTY_TEAM_ID")


@dataclass(frozen=True)
class GorgiasSettings:
    base_url: str
    email: str
    api_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    warranty_team_id: int | None

    @property
    def warranty_target(self) -> int | None:
        return self.warranty_team_id

    def secrets(self) -> list[str]:
        return [s for s in (self.api_key, self.webhook_secret) if s]

    def warnings(self) -> list[str]:
        return []


def read(r: Reader) -> GorgiasSettings | None:
    if not r.any(*(v for v in VARIABLES if v != "GORGIAS_WARRANTY_TEAM_ID")):
        return None
    base = r.base_url("Gorgias", "GORGIAS_BASE_URL", "GORGIAS_DOMAIN", "https://{}.gorgias.com")
    r.require("Gorgias", "GORGIAS_EMAIL", "GORGIAS_API_KEY")
    if not r.get("GORGIAS_WEBHOOK_SECRET"):
        r.problems.append(
            "Gorgias: set GORGIAS_WEBHOOK_SECRET, and send it as the X-Deskmark-Secret header of "
            "the HTTP integration (integrations/gorgias/SETUP.md)")
    return GorgiasSettings(
        base_url=base,
        email=r.get("GORGIAS_EMAIL") or "",
        api_key=r.get("GORGIAS_API_KEY") or "",
        webhook_secret=r.get("GORGIAS_WEBHOOK_SECRET") or "",
        warranty_team_id=r.group("GORGIAS_WARRANTY_TEAM_ID"),
    )
