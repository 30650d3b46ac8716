"""Gorgias: HTTP-integration webhooks (`webhook`), REST API client (`client`), settings, SETUP.md."""

from integrations.gorgias import settings
from integrations.gorgias.client import GorgiasClient
from integrations.gorgias.webhook import parse, verifier
from integrations.helpdesk import HelpdeskSpec

SPEC = HelpdeskSpec(
    key="gorgias",
    title="Gorgias",
    variables=settings.VARIABLES,
    read=settings.read,
    verifier=lambda s: verifier(s.webhook_secret),
    rejected="missing or wrong X-Deskmark-Secret header",
    parse=parse,
    client=GorgiasClient,
    auth_hint="GORGIAS_EMAIL / GORGIAS_API_KEY (Settings > REST API)",
    where_hint="GORGIAS_DOMAIN / GORGIAS_BASE_URL and the network",
    sandbox="deskmark.sandbox.gorgias:SandboxGorgias",
    setup="integrations/gorgias/SETUP.md",
)
