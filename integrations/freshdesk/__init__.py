"""Freshdesk: automation-rule webhooks (`webhook`), API v2 client (`client`), settings, SETUP.md."""

from integrations.freshdesk import settings
from integrations.freshdesk.client import FreshdeskClient
from integrations.freshdesk.webhook import parse, verifier
from integrations.helpdesk import HelpdeskSpec

SPEC = HelpdeskSpec(
    key="freshdesk",
    title="Freshdesk",
    variables=settings.VARIABLES,
    read=settings.read,
    verifier=lambda s: verifier(s.webhook_secret),
    rejected="missing or wrong X-Deskmark-Secret / Basic password",
    parse=parse,
    client=FreshdeskClient,
    auth_hint="FRESHDESK_API_KEY (Profile settings > View API key)",
    where_hint="FRESHDESK_DOMAIN / FRESHDESK_BASE_URL and the network",
    sandbox="deskmark.sandbox.freshdesk:SandboxFreshdesk",
    setup="integrations/freshdesk/SETUP.md",
)
