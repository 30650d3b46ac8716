"""Vendor-facing code: configuration, helpdesk clients, the image edit providers.

Imports neither Flask nor Celery: `webhooks` and `worker` both build on it.
"""
