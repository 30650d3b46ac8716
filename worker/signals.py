"""Claim signals: facts about the customer's photo that a warranty reviewer should see before
approving, read from the file as downloaded (before any metadata is stripped). They never block
marking, and they are facts, not verdicts.

- The photo's own content credentials: a manifest whose actions declare a generated or
  AI-composited source means a generative tool says it made the photo (tag
  `deskmark_ai_generated`).
- Camera facts: make and model, and when it was taken. "No camera metadata" is normal for
  screenshots and messaging apps, which strip it.
- A re-used photo: the same picture (recompressed or resized, too) was sent on another ticket
  (worker.dupes; tag `deskmark_duplicate_photo`). `seen_before` looks it up and indexes this one.
"""

from __future__ import annotations

import datetime
import logging
from typing import IO, TYPE_CHECKING

from integrations.i18n import ENGLISH, Words
from worker.records import SeenBefore, Signals

__all__ = ["Signals", "read_signals", "seen_before", "signal_tags", "checks_line", "customer_text",
           "AI_TAG", "DUPLICATE_TAG"]

if TYPE_CHECKING:
    from worker.dupes import DupeIndex

log = logging.getLogger("deskmark.signals")

AI_TAG = "deskmark_ai_generated"
DUPLICATE_TAG = "deskmark_duplicate_photo"
_MAKE, _MODEL, _EXIF_IFD, _TAKEN, _TAKEN_FALLBACK = 0x010F, 0x0110, 0x8769, 0x9003, 0x0132


CUSTOMER_TEXT = 64  # characters of any customer-written string a Checks line carries


def customer_text(text: object, limit: int = CUSTOMER_TEXT) -> str:
    """A string the customer's file wrote (a camera's make, a tool's name), fit for a Checks
    line: control and formatting characters dropped, white space folded, at most `limit`."""
    kept = " ".join("".join(ch for ch in str(text) if ch.isprintable() or ch.isspace()).split())
    return kept if len(kept) <= limit else kept[:limit - 1] + "…"


def read_signals(original: IO[bytes], content_type: str, received: float) -> Signals:
    """The signals of the customer's file; `received` is when its job was created (epoch)."""
    # Here, not at the top: the web app shows `checks_line` without loading c2pa and Pillow.
    from PIL import Image, UnidentifiedImageError

    from worker import manifests

    found: Signals = {}
    try:
        # In a process of its own, under a memory ceiling and a time limit (worker.manifests).
        summary = manifests.read_untrusted(original, content_type)
    except Exception as exc:  # noqa: BLE001 - a signal, never a failure of the job
        log.info("content credentials of the customer's photo unreadable: %s", exc)
        summary = manifests.Unreadable("unreadable")
    if isinstance(summary, manifests.Unreadable) or (summary is not None and summary.unreadable):
        reason = summary.reason if isinstance(summary, manifests.Unreadable) else summary.unreadable
        log.info("content credentials of the customer's photo could not be read: %s", reason)
        found["credentials_unreadable"] = customer_text(reason)
    elif summary is not None and summary.ai_source:
        found["generated_by"] = customer_text(summary.agent or "an unnamed generative tool")
        found["source_type"] = customer_text(summary.ai_source.rsplit("/", 1)[-1])
    try:
        original.seek(0)
        with Image.open(original) as image:
            # A PNG without an eXIf chunk before its pixels: Pillow's getexif would decode the
            # whole image to look for one after them (a 64 MP scan: +270 MB). Cameras write it first.
            exif = Image.Exif() if image.format == "PNG" and "exif" not in image.info else image.getexif()
            camera = " ".join(str(exif.get(tag, "")).strip("\x00 ") for tag in (_MAKE, _MODEL)).strip()
            taken = str(exif.get_ifd(_EXIF_IFD).get(_TAKEN) or exif.get(_TAKEN_FALLBACK) or "")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        log.info("camera metadata of the customer's photo unreadable: %s", exc)
        camera, taken = "", ""
    finally:
        original.seek(0)
    if camera:
        found["camera"] = customer_text(camera)
    try:
        when = datetime.datetime.strptime(taken.strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        when = None
    if when is not None:
        found["taken"] = when.isoformat()
        # EXIF times carry no zone: treated as UTC, so a day is the finest that means anything.
        found["taken_days_before"] = round(
            (received - when.replace(tzinfo=datetime.UTC).timestamp()) / 86400, 1)
    return found


def seen_before(dupes: DupeIndex, preview: bytes, photo_id: str, vendor: str, ticket_id: str,
                requester: str, sent: float, index: bool = True) -> SeenBefore | None:
    """The earliest near-duplicate of the photo sent on another ticket, if any; and, with
    `index`, the photo goes into the index (once, however often its job runs). `preview` is the photo upright, as
    marking previewed it (worker.marking): hashing it decodes nothing large a second time."""
    import io

    from PIL import UnidentifiedImageError

    from worker.dupes import photo_hash, plain

    if not preview:
        return None
    try:
        value = photo_hash(io.BytesIO(preview))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        log.info("no perceptual hash of the customer's photo: %s", exc)
        return None
    if plain(value):
        log.info("the customer's photo is too plain to compare with others (a flat image)")
        return None
    earlier = [seen for seen in dupes.find(value, exclude=photo_id, when=sent)
               if (seen.vendor, seen.ticket_id) != (vendor, ticket_id)]  # a ticket is not its own
    if index:  # once per photo: the job's record says when it was indexed
        dupes.add(photo_id, value, vendor, ticket_id, requester, when=sent)
    if not earlier:
        return None
    first = min(earlier, key=lambda seen: (seen.at, seen.bits))
    return {"job_id": first.photo_id, "vendor": first.vendor, "ticket_id": first.ticket_id,
            "requester": first.requester, "date": first.at, "bits": first.bits,
            "same_requester": bool(requester) and first.requester == requester,
            "more": len({(seen.vendor, seen.ticket_id) for seen in earlier}) - 1}


def signal_tags(signals: Signals) -> list[str]:
    return ([AI_TAG] if signals.get("generated_by") else []) + (
        [DUPLICATE_TAG] if signals.get("seen_before") else [])


def checks_line(signals: Signals, shared: bool = False, w: Words = ENGLISH) -> str:
    """One plain-text line for the note, Slack and the dashboard. `shared`: for Slack, where
    guests may read it: another customer's requester id is left out (the note keeps it)."""
    parts: list[str] = []
    if signals.get("credentials_unreadable"):
        parts.append(w._("its content credentials could not be read ({why})",
                         why=customer_text(signals["credentials_unreadable"])))
    if signals.get("generated_by"):
        parts.append(w._("the photo's own content credentials say {tool} generated it ({source})",
                         tool=customer_text(signals["generated_by"]),
                         source=customer_text(signals.get("source_type") or "")))
    seen = signals.get("seen_before")
    if seen:
        who = (w._("the same customer") if seen["same_requester"] else
               w._("another customer (requester {id})", id=seen["requester"])
               if seen["requester"] and not shared else w._("another customer"))
        sent = w._("the same photo was sent on {helpdesk} ticket #{ticket} on {date} by {who}",
                   helpdesk=_title(seen["vendor"]), ticket=seen["ticket_id"], date=w.date(str(seen["date"])),
                   who=who)
        if seen["more"]:
            sent += w.n_(", and on {count} more ticket", ", and on {count} more tickets", int(seen["more"]))
        parts.append(sent)
    if signals.get("camera"):
        parts.append(w._("camera {camera}", camera=customer_text(signals["camera"])))
    if "taken_days_before" in signals:
        days = signals["taken_days_before"]
        parts.append(w._("taken {days} days before deskmark received it", days=w.number(days, 1)) if days >= 1
                     else w._("taken within a day of being sent") if days > -1 else
                     w._("camera clock {days} days ahead of its sending", days=w.number(-days, 1)))
    if not signals.get("camera") and "taken" not in signals:
        parts.append(w._("no camera metadata (normal for screenshots and messaging apps)"))
    return w._("Checks: {checks}.", checks=w._("; ").join(parts))


def _title(vendor: str) -> str:
    from integrations.registry import HELPDESKS

    return HELPDESKS[vendor].title if vendor in HELPDESKS else vendor.capitalize()
