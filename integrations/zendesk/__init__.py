"""Zendesk: webhook verification and parsing (`webhook`), API client (`client`), settings, SETUP.md."""

from integrations.helpdesk import HelpdeskSpec
from integrations.zendesk import settings
from integrations.zendesk.client import ZendeskClient
from integrations.zendesk.webhook import ZendeskSignature, parse

SPEC = HelpdeskSpec(
    key="zendesk",
    title="Zendesk",
    variables=settings.VARIABLES,
    read=settings.read,
    verifier=lambda s: ZendeskSignature(s.webhook_secret).is_valid,
    rejected="missing, wrong or stale Zendesk signature",
    parse=parse,
    client=ZendeskClient,
    auth_hint="ZENDESK_CLIENT_ID / ZENDESK_CLIENT_SECRET (or ZENDESK_OAUTH_TOKEN, or "
              "ZENDESK_EMAIL / ZENDESK_API_TOKEN)",
    where_hint="ZENDESK_SUBDOMAIN / ZENDESK_BASE_URL and the network",
    sandbox="deskmark.sandbox.zendesk:SandboxZendesk",
    setup="integrations/zendesk/SETUP.md",
)
