"""Help Scout: signed webhooks (`webhook`), Mailbox API 2.0 client (`client`), settings, SETUP.md."""

from integrations.helpdesk import HelpdeskSpec
from integrations.helpscout import settings
from integrations.helpscout.client import HelpScoutClient
from integrations.helpscout.webhook import parse, verifier

SPEC = HelpdeskSpec(
    key="helpscout",
    title="Help Scout",
    variables=settings.VARIABLES,
    read=settings.read,
    verifier=lambda s: verifier(s.webhook_secret),
    rejected="missing or wrong X-HelpScout-Signature",
    parse=parse,
    client=HelpScoutClient,
    auth_hint="HELPSCOUT_APP_ID / HELPSCOUT_APP_SECRET (Your Profile > My Apps)",
    where_hint="HELPSCOUT_BASE_URL and the network",
    sandbox="deskmark.sandbox.helpscout:SandboxHelpScout",
    setup="integrations/helpscout/SETUP.md",
)
