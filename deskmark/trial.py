"""`deskmark try HELPDESK TICKET_ID [--out DIR] [--yes]`: the whole pipeline on one real
ticket, writing nothing to it.

It reads the ticket and its photos with deskmark's credentials, prints the estimated cost and
asks before paying for an edit (unless `--yes`), marks each customer photo through the same
steps as the worker (locate, edit, the stroke check, content credentials, claim signals), and
writes to DIR what the worker would post: each marked photo, the note (HTML and plain text),
the tags and the warranty group, team or user, and the Slack messages. The spend counts against
the daily budget (DESKMARK_DAILY_BUDGET_USD), as the worker's does. The re-used-photo check
looks, but the photo does not go into the index, and no job record is made.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import redis

from deskmark.annotate import write_new
from integrations.config import DEFAULT_QUALITY, Settings, masked_url
from integrations.errors import Throttled, UnsafeURL, UnusablePhoto, VendorError
from integrations.i18n import language_of, words
from integrations.models import TYPICAL_SIZE, estimate_usd
from integrations.registry import HELPDESKS
from integrations.slack.notifier import review_message, share_message
from integrations.tokens import RedisTokenCache
from worker import pipeline, signals
from worker.jobs import Job
from worker.limits import EditGate
from worker.marking import make_marker
from worker.notes import agent_reason, delivered_name, note_html, plain_text, what_was_marked
from worker.records import Mark
from worker.store import Store

__all__ = ["run_try"]

THROTTLE_WAIT_CAP = 60.0


def run_try(helpdesk: str, ticket_id: str, out_dir: str, yes: bool, settings: Settings,
            out: TextIO = sys.stdout, ask: Callable[[str], str] = input,
            interactive: bool | None = None) -> int:
    def say(text: str) -> None:
        out.write(f"deskmark try: {text}\n")
        out.flush()

    spec = HELPDESKS[helpdesk]
    own_settings = settings.helpdesk(helpdesk)
    w = words(language_of(settings.language, None))  # until the ticket says its own (auto)
    if own_settings is None:
        say(w._("{helpdesk} is not configured: set its variables ({variables}, …; {setup})", helpdesk=spec.title,
                variables=", ".join(spec.variables[:3]), setup=spec.setup))
        return 2
    if not re.fullmatch(r"[0-9]{1,20}", ticket_id):
        say(w._("{ticket} is not a ticket number", ticket=repr(ticket_id[:40])))
        return 2
    store = Store.from_url(settings.redis_url, timeout=3)
    try:
        store.r.ping()
    except redis.RedisError as exc:
        say(w._("Redis at {url} is unreachable ({error}): the daily budget and the shared access tokens live "
                "there; start Redis or fix REDIS_URL", url=masked_url(settings.redis_url), error=exc))
        return 1
    client = spec.client(own_settings, settings.attachment_hosts, RedisTokenCache(store.r))
    marker = make_marker(settings, EditGate(store, settings))
    rt = pipeline.Runtime(settings=settings, store=store, helpdesks={helpdesk: client}, marker=marker)
    try:
        return _run(spec.key, spec.title, ticket_id, Path(out_dir), yes, rt, say, ask,
                    sys.stdin.isatty() if interactive is None else interactive)
    except VendorError as exc:
        say(w._("{helpdesk} answered: {error}", helpdesk=spec.title, error=exc))
        return 1
    finally:
        client.close()


def _run(key: str, title: str, ticket_id: str, out_dir: Path, yes: bool, rt: pipeline.Runtime,
         say: Callable[[str], None], ask: Callable[[str], str], interactive: bool) -> int:
    settings, client = rt.settings, rt.helpdesk(key)
    ticket = client.ticket(ticket_id)
    language = language_of(settings.language, ticket.language)
    w = words(language)
    own = client.own_user_id()
    say(w._("{helpdesk} ticket #{ticket}: {subject}", helpdesk=title, ticket=ticket_id,
            subject=repr(ticket.subject[:80])))
    if settings.language == "auto":
        say(w._("language: {language} (the ticket's, as {helpdesk} reports it: {reported})", language=w.name,
                helpdesk=title, reported=ticket.language or w._("none")))
    if settings.trigger_tags and not set(ticket.tags) & set(settings.trigger_tags):
        say(w._("the ticket has none of DESKMARK_TRIGGER_TAGS ({tags}): deskmark would ignore it. Nothing "
                "marked.", tags=", ".join(settings.trigger_tags)))
        return 0
    found = [p for p in client.photos(ticket_id) if not (p.author_id and p.author_id == own)]
    photos = [p for p in found if p.looks_like_image()]
    for photo in found:
        if not photo.looks_like_image():
            say(w._("skipped {filename}: not an image ({type})", filename=repr(photo.filename[:60]),
                    type=photo.content_type or w._("unknown type")))
    if not photos:
        say(w._("no customer photos on this ticket: deskmark would post nothing"))
        return 0
    if marker_paid(rt):
        editor, locator = rt.marker.editor, rt.marker.locator
        assert editor is not None
        each = estimate_usd(editor.model, TYPICAL_SIZE, getattr(editor, "quality", DEFAULT_QUALITY),
                            locator.model if locator else None)
        spent = EditGate(rt.store, settings).spent()
        models = f"{editor.model} ({getattr(editor, 'quality', '')})" + (f", {locator.model}" if locator else "")
        say(w.n_("{count} photo: estimated {cost} with {models}; it counts against the daily budget ({spent} of "
                 "{budget} spent today)",
                 "{count} photos: estimated {cost} with {models}; it counts against the daily budget ({spent} of "
                 "{budget} spent today)", len(photos), cost=w.money(each * len(photos)), models=models,
                 spent=w.money(spent, 2), budget=w.money(settings.daily_budget_usd, 2)))
        if not yes:
            if not interactive:
                say(w._("not a terminal: pass --yes to pay for the edits without being asked"))
                return 1
            if ask(w._("Mark them? [y/N] ")).strip().lower() not in ("y", "yes"):
                say(w._("nothing marked, nothing spent"))
                return 0
    else:
        say(w.n_("{count} photo: no AI model is configured (OPENAI_API_KEY unset), so on a real ticket it goes "
                 "out unmarked, with a note saying why",
                 "{count} photos: no AI model is configured (OPENAI_API_KEY unset), so on a real ticket they go "
                 "out unmarked, with a note saying why", len(photos)))
    folder = out_dir / f"{key}-ticket-{ticket_id}"
    folder.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"helpdesk": key, "ticket_id": ticket_id, "ticket_url": ticket.url,
                               "photos": []}
    tags: list[str] = list(pipeline.ESCALATION_TAGS)
    failed = 0
    for photo in photos:
        job = Job.for_photo(key, ticket_id, photo)
        stem = "photo-" + re.sub(r"[^A-Za-z0-9_-]", "_", photo.attachment_id)[:40]
        try:
            marked, mark = _mark(job, ticket.subject, ticket.description, rt, say, language)
        except (UnusablePhoto, UnsafeURL) as exc:
            say(w._("{filename} would be skipped: {reason}", filename=repr(photo.filename[:60]), reason=exc))
            summary["photos"].append({"attachment_id": photo.attachment_id, "skipped": str(exc)})
            failed += 1
            continue
        except VendorError as exc:
            say(w._("{filename} could not be marked: {reason} ({error})", filename=repr(photo.filename[:60]),
                    reason=agent_reason(exc, w), error=exc))
            summary["photos"].append({"attachment_id": photo.attachment_id, "failed": str(exc)})
            failed += 1
            continue
        note = note_html(photo.filename, mark, job.job_id, w)
        written = {"photo": folder / f"{stem}-{delivered_name('x', mark)[2:]}",
                   "note_html": folder / f"{stem}-note.html", "note_text": folder / f"{stem}-note.txt"}
        write_new(written["photo"], marked, force=True)
        write_new(written["note_html"], (note + "\n").encode(), force=True)
        write_new(written["note_text"], (plain_text(note) + "\n").encode(), force=True)
        tags += [t for t in signals.signal_tags(mark.get("signals") or {}) if t not in tags]
        if settings.slack is not None:
            review = pipeline.review_for(job.job_id, photo, key, ticket, marked, mark, w)
            file_title, comment = share_message(review)
            text, blocks = review_message(review, buttons=bool(settings.slack.approver_ids))
            written["slack"] = folder / f"{stem}-slack.json"
            write_new(written["slack"], (json.dumps({
                "channel": settings.slack.channel_id,
                "upload": {"filename": review.filename, "title": file_title, "initial_comment": comment},
                "message": {"text": text, "blocks": blocks}}, indent=2, ensure_ascii=False) + "\n").encode(),
                force=True)
        summary["photos"].append({"attachment_id": photo.attachment_id, "job_id": job.job_id,
                                  "filename": photo.filename, "marked": what_was_marked(mark, w),
                                  "cost_usd": mark.get("cost_usd"), "model": mark.get("model"),
                                  **{k: str(v) for k, v in written.items()}})
        say(w._("{filename}: {what}; {cost} -> {path}", filename=repr(photo.filename[:60]),
                what=what_was_marked(mark, w), cost=w.money(mark.get("cost_usd") or 0), path=written["photo"]))
    target = settings.helpdesk(key).warranty_target  # type: ignore[union-attr]
    summary["escalation"] = {"tags": tags, "warranty_target": target}
    write_new(folder / "escalation.json", (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode(),
              force=True)
    say(w._("would add the tags {tags} and assign {target}; written to {folder}", tags=", ".join(tags),
            target=target, folder=folder) if target is not None else
        w._("would add the tags {tags}; written to {folder}", tags=", ".join(tags), folder=folder))
    say(w._("nothing was written to {helpdesk} ticket #{ticket}", helpdesk=title, ticket=ticket_id))
    return 1 if failed else 0


def marker_paid(rt: pipeline.Runtime) -> bool:
    return rt.marker.editor is not None


def _mark(job: Job, subject: str, description: str, rt: pipeline.Runtime,
          say: Callable[[str], None], language: str) -> tuple[bytes, Mark]:
    source, _ = rt.helpdesk(job.vendor).download(job.ticket_id, job.photo)
    with source:
        result = None
        while result is None:
            try:
                result = rt.marker.mark(source, subject, description, language=language)
            except Throttled as exc:  # the shared edit rate: wait for the next slot
                wait = min(exc.wait, THROTTLE_WAIT_CAP)
                w = words(language)
                say(w._("{reason}; waiting {seconds} s", reason=exc, seconds=w.number(wait)))
                time.sleep(wait)
        marked, mark = pipeline.deliverable(result, source, job, {"created": time.time()}, rt,
                                            index=False)
    return marked, mark
