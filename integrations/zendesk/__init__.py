"""Zendesk: webhook verification and parsing (`webhook`), API client (`client`), SETUP.md."""
