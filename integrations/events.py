"""The domain objects that travel between the webhook, the queue and the pipeline.

Everything here is a small frozen dataclass with `to_dict`/`from_dict`, because Celery carries
JSON, and the webhook parsers build them from vendor payloads (validated at that boundary).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

__all__ = [
    "RawRequest",
    "Ignored",
    "Malformed",
    "load_json",
    "valid_id",
    "TicketEvent",
    "SourcePhoto",
    "Ticket",
    "NoteFile",
    "Credential",
    "Helpdesk",
    "IMAGE_TYPES",
    "job_id_for",
]

# Content types deskmark considers photos; the bytes are checked again after download.
IMAGE_TYPES = {
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/pjpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/heic": ".heic",
    "image/heif": ".heif",
}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".heic", ".heif"}


class Headers(Protocol):
    def get(self, name: str, /) -> str | None: ...


@dataclass(frozen=True)
class RawRequest:
    """A vendor request as bytes and headers, free of any web framework."""

    body: bytes
    # Looked up by lower-case name: a dict with lower-case keys, or a mapping that ignores
    # case (the web app passes werkzeug's request headers as they are).
    headers: Headers

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class Ignored(Exception):
    """A well-formed event deskmark deliberately does not act on (answered 200)."""


class Malformed(Exception):
    """A request that cannot be an event of this vendor (answered 400)."""


_ID = re.compile(r"[0-9]{1,20}")  # ASCII digits only: "²".isdigit() is True


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json reads NaN and Infinity; JSON has neither


def _text_everywhere(value: Any) -> None:
    """Raise UnicodeEncodeError where a string is not text: a lone UTF-16 surrogate, which
    JSON's escapes can spell (`"\\ud800"`) and nothing can encode."""
    if isinstance(value, str):
        value.encode("utf-8")
    elif isinstance(value, dict):
        for key, item in value.items():
            _text_everywhere(key)
            _text_everywhere(item)
    elif isinstance(value, list):
        for item in value:
            _text_everywhere(item)


def load_json(body: bytes | str, what: str = "body") -> Any:
    """Parse JSON from a webhook, or raise Malformed (answered 400): not only for bad syntax,
    but for nesting deep enough to exhaust the parser, integers too long to convert, and
    strings that are not text (a lone surrogate), which would otherwise escape as 500s."""
    try:
        found = json.loads(body, parse_constant=_not_json)
        raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
        if b"\\ud" in raw or b"\\uD" in raw:  # only a \\u escape can make a surrogate
            _text_everywhere(found)
        return found
    except (UnicodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise Malformed(f"{what} is not JSON deskmark accepts: {str(exc)[:120]}") from exc


def valid_id(value: Any, field: str) -> str:
    """A helpdesk id from a payload: a string or an integer of 1 to 20 ASCII digits."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Malformed(f"{field} must be a string or integer")
    text = str(value).strip()
    if not _ID.fullmatch(text):
        raise Malformed(f"{field} {text[:40]!r} is not a numeric id (1 to 20 digits)")
    return text


@dataclass(frozen=True)
class SourcePhoto:
    """One customer attachment that may be a photo of damage."""

    attachment_id: str
    filename: str
    content_type: str
    url: str
    author_id: str | None = None
    comment_id: str | None = None
    inline: bool = False
    size: int | None = None

    def looks_like_image(self) -> bool:
        ctype = self.content_type.split(";")[0].strip().lower()
        if ctype in IMAGE_TYPES:
            return True
        ext = "." + self.filename.rsplit(".", 1)[-1].lower() if "." in self.filename else ""
        # A generic type with an image extension is worth downloading; the bytes decide.
        return ctype in ("", "application/octet-stream", "binary/octet-stream") and (
            ext in IMAGE_EXTENSIONS
        )

    def to_dict(self) -> dict[str, Any]:
        # By hand, not dataclasses.asdict (deep copies): this runs on the webhook's hot path.
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourcePhoto:
        return cls(**data)


@dataclass(frozen=True)
class TicketEvent:
    """A verified, parsed helpdesk event, ready for the queue."""

    vendor: str
    ticket_id: str
    kind: str
    delivery_key: str
    actor_id: str | None = None
    photo: SourcePhoto | None = None  # set when the event names exactly one attachment
    # What was signed (Zendesk: timestamp + body), so that a captured request replayed with a
    # fresh delivery id is still a duplicate; "" where the vendor signs nothing.
    replay_key: str = ""
    subject: str | None = None
    tags: tuple[str, ...] | None = None  # None: unknown, the worker reads the ticket
    extra: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {f: getattr(self, f) for f in self.__dataclass_fields__}
        data["photo"] = self.photo.to_dict() if self.photo else None
        data["tags"] = list(self.tags) if self.tags is not None else None
        data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TicketEvent:
        data = dict(data)
        photo = data.pop("photo", None)
        tags = data.pop("tags", None)
        return cls(
            photo=SourcePhoto.from_dict(photo) if photo else None,
            tags=tuple(tags) if tags is not None else None,
            **data,
        )


@dataclass(frozen=True)
class Ticket:
    id: str
    subject: str
    description: str
    tags: tuple[str, ...]
    url: str  # where an agent opens it
    language: str | None = None  # the ticket's language as the helpdesk reports it ("ja", "de-AT")


@dataclass(frozen=True)
class NoteFile:
    filename: str
    data: bytes
    content_type: str


@dataclass(frozen=True)
class Credential:
    """What deskmark signs in to a vendor with, and how long it lives."""

    kind: str  # "OAuth client (ZENDESK_CLIENT_ID)", "API key (FRESHDESK_API_KEY)" …
    expires_at: float | None = None  # the current token's end (wall clock), when known
    renewed: bool = False  # deskmark renews it itself before it ends
    lives: str = "does not expire"  # said when there is no expires_at
    warning: str | None = None  # what the operator should change, if anything

    def describe(self, now: float | None = None) -> str:
        """"OAuth client: token valid for another 28 min, renewed automatically"."""
        if self.expires_at is None:
            return f"{self.kind}: {self.lives}"
        left = self.expires_at - (time.time() if now is None else now)
        if self.renewed:
            return f"{self.kind}: token valid for another {_duration(left)}, renewed automatically"
        if left <= 0:
            return f"{self.kind}: expired {_duration(-left)} ago"
        return f"{self.kind}: expires in {_duration(left)}, and cannot be renewed"

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Credential:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(0, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    if seconds < 2 * 86400:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} days"


class Helpdesk(Protocol):
    """What the pipeline needs from a helpdesk; every client in integrations/<key>/ implements it
    (tests/test_helpdesk_contract.py runs each against its sandbox)."""

    vendor: str

    def own_user_id(self) -> str:
        """deskmark's own user (agent) id: its notes are never photos to mark."""
        ...

    def close(self) -> None: ...

    def ticket_url(self, ticket_id: str) -> str:
        """Where an agent opens the ticket (no API call)."""
        ...

    def ticket(self, ticket_id: str) -> Ticket: ...

    def photos(self, ticket_id: str) -> list[SourcePhoto]:
        """Every attachment on the ticket (inline images included), images or not."""
        ...

    def download(self, ticket_id: str, photo: SourcePhoto) -> tuple[BinaryIO, str]:
        """The attachment (a temporary file: close it) and its content type, fetched safely
        (integrations.downloads)."""
        ...

    def post_note(self, ticket_id: str, html: str, files: list[NoteFile]) -> str:
        """Add a private note with files; return its id."""
        ...

    def find_note(self, ticket_id: str, marker: str) -> str | None:
        """The id of a note deskmark already posted containing `marker`, if any."""
        ...

    def escalate(self, ticket_id: str, tags: list[str], group_id: int | None) -> None:
        """Add tags (keeping the existing ones) and assign the warranty group (Gorgias: team;
        Help Scout: user), if any."""
        ...

    def credential(self) -> Credential:
        """What it signs in with and how long that lives (may make one call)."""
        ...


def job_id_for(vendor: str, ticket_id: str, attachment_id: str) -> str:
    """Deterministic: the same photo always maps to the same job, whoever delivers it."""
    digest = hashlib.sha256(f"{vendor}:{ticket_id}:{attachment_id}".encode()).hexdigest()
    return f"dm-{digest[:16]}"
