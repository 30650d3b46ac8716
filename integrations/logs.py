"""Structured logs: one JSON object per line, with the job, vendor and ticket bound, and every
secret deskmark knows of (API keys, tokens, signing secrets, the Redis password, signed-URL
signatures, passwords in URLs, the OAuth access tokens it was granted) redacted.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

from integrations.config import Settings
from integrations.tokens import LEARNED

__all__ = ["configure_logging", "log_context", "Redactor", "JsonFormatter"]

# Immutable default (a tuple of pairs): every log_context sets a new value, never mutates one.
_context: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "deskmark_log", default=())

# Credentials that may appear in messages, URLs or exception texts: (pattern, keeps group 1).
_PATTERNS = [
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\n,}]+"), True),
    (re.compile(r"(?i)\b(?:bearer|basic)\s+[a-z0-9._~+/=-]{8,}"), False),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{6,}"), False),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{6,}"), False),
    (re.compile(r"(?i)([?&](?:x-amz-signature|x-amz-credential|x-amz-security-token|sig|signature|"
                r"token|api_key|key)=)[^&\s'\"]+"), True),
    (re.compile(r"(/attachments/token/)[^/\s?'\"]+"), True),
    # A password in any URL (redis://:password@host, https://user:password@host).
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s'\"]*:)[^@\s'\"/]+(?=@)"), True),
]


class Redactor(logging.Filter):
    """Replaces secrets in every record's message (and its args) with [redacted]."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        for token in tuple(LEARNED):  # access tokens this process was granted (integrations.tokens)
            text = text.replace(token, "[redacted]")
        for pattern, keeps_prefix in _PATTERNS:
            text = pattern.sub(r"\1[redacted]" if keeps_prefix else "[redacted]", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.clean(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.clean(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **dict(_context.get()),
        }
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(settings: Settings, level: str | int = "INFO") -> None:
    """JSON lines on stderr for every logger, secrets redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(Redactor(settings.secrets()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # httpx logs every request at INFO, URL included; keep it (redacted) for troubleshooting.
    logging.getLogger("httpcore").setLevel(logging.WARNING)


@contextlib.contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Bind fields (job_id, vendor, ticket_id) to every log line inside the block."""
    merged = {**dict(_context.get()), **{k: str(v) for k, v in fields.items() if v}}
    token = _context.set(tuple(merged.items()))
    try:
        yield
    finally:
        _context.reset(token)
