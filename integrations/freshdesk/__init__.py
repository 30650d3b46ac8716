"""Freshdesk: automation-rule webhooks (`webhook`), API v2 client (`client`), SETUP.md."""
