"""The pipeline as plain functions: event → photos → (download, prepare, edit) → note → escalate.

Every side effect is a step recorded on the job, keyed by the photo's job id, so a retry or a
duplicate delivery redoes only what did not happen: the edit is paid for once (its result is
kept in Redis), the note is posted once (before posting again after an unclear failure we look
for our own note on the ticket), and tagging is additive.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import redis

from integrations.config import Settings
from integrations.errors import PermanentError, Throttled, UnsafeURL, UnusablePhoto, VendorError
from integrations.events import Credential, Helpdesk, NoteFile, SourcePhoto, Ticket, TicketEvent
from integrations.i18n import ENGLISH, Words, language_of, words
from integrations.registry import HELPDESKS
from integrations.slack.interactions import ReviewClick
from integrations.slack.notifier import (
    Posted,
    Review,
    SlackNotifier,
    link_target,
    mrkdwn_escape,
    review_message,
    share_message,
)
from worker import credentials, dupes, signals
from worker.batches import BatchQueue
from worker.jobs import Job
from worker.marking import EditPlan, Facts, Marked, Marker, Reused, deliver
from worker.notes import (
    agent_reason,
    delivered_name,
    failure_html,
    money,
    note_html,
    note_marker,
    review_html,
    what_was_marked,
)
from worker.records import JobRecord, Mark, SeenBefore
from worker.recovery import ALONE_AFTER, SUSPECT, Leases
from worker.store import Store

__all__ = ["Runtime", "JobResults", "expand_event", "run_job", "fail_job", "decide", "ESCALATION_TAGS",
           "record_credentials", "deliverable", "review_for"]

log = logging.getLogger("deskmark.pipeline")

ESCALATION_TAGS = ["deskmark_annotated", "warranty_review"]
# How long a job that is making a paid result holds it for others to wait on (it refreshes the
# claim on every attempt; a failed maker's claim is taken over at once).
CLAIM_SECONDS = 600


@dataclass
class JobResults:
    """Paid results in Redis, as one job sees them: the same prepared photo (with the same
    models, quality and prompt) is edited once, and later jobs reuse what it paid for."""

    store: Store
    job_id: str

    def reuse(self, key: str) -> Reused | None:
        for _ in range(3):  # a take-over can race another job's; then look again
            holder = self.store.claim_result(key, self.job_id, CLAIM_SECONDS)
            state, _, other = holder.partition(":")
            if other == self.job_id:
                return None  # ours to make (again, after a failed attempt of ours)
            record = self.store.job(other)
            image = self.store.marked(other) if state == "done" else None
            if image is not None and record.get("mark"):
                return Reused(other, image, record["mark"], self.store.image(other, "after") or b"",
                              self.store.image(other, "model") or b"")
            if state == "pending" and record.get("state") not in ("failed", "skipped", "done"):
                raise Throttled(f"the same photo is being marked by job {other}", 10.0)
            # The holder gave up, or what it made has expired: make it here.
            if self.store.take_over_result(key, holder, self.job_id, CLAIM_SECONDS):
                return None
        raise Throttled("the same photo's result is changing hands", 5.0)


@dataclass
class Runtime:
    """What the pipeline runs with: built once per worker process, passed down."""

    settings: Settings
    store: Store
    helpdesks: Mapping[str, Helpdesk]
    marker: Marker
    notifier: SlackNotifier | None = None
    batches: BatchQueue | None = None  # DESKMARK_EDIT_MODE=batch
    leases: Leases = field(init=False)
    duplicates: dupes.DupeIndex | None = field(init=False)  # None: DESKMARK_DUPLICATE_DAYS=0
    _keys: credentials.Keys | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.leases = Leases(self.store, self.settings.lease_seconds)
        days = self.settings.duplicate_days
        self.duplicates = dupes.DupeIndex(self.store.r, days=days) if days else None

    def signing_keys(self) -> credentials.Keys:
        """DESKMARK_C2PA_CERT / DESKMARK_C2PA_KEY, or the deployment's throwaway signer."""
        if self._keys is None:
            cert, key = self.settings.c2pa_cert, self.settings.c2pa_key
            self._keys = (credentials.keys_from_pem(cert, key) if cert and key else
                          credentials.Keys.from_json(self.store.shared_signer(
                              lambda: credentials.throwaway_keys().to_json())))
        return self._keys

    def helpdesk(self, vendor: str) -> Helpdesk:
        try:
            return self.helpdesks[vendor]
        except KeyError:
            raise UnusablePhoto(f"{vendor} is not configured on this worker") from None

    def own_user_id(self, vendor: str) -> str:
        cached = self.store.own_user_id(vendor)
        if cached:
            return cached
        user_id = self.helpdesk(vendor).own_user_id()
        self.store.set_own_user_id(vendor, user_id)
        return user_id


def record_credentials(rt: Runtime) -> None:
    """What each helpdesk's credential is and when it ends, for the dashboard and /readyz
    (a static token that expires, an API token Zendesk turns off, a refused OAuth client)."""
    for vendor, helpdesk in rt.helpdesks.items():
        try:
            credential = helpdesk.credential().to_dict()
        except VendorError as exc:
            credential = Credential(kind="refused", lives="not accepted", warning=str(exc)).to_dict()
        rt.store.set_credential(vendor, credential)


def expand_event(event: TicketEvent, rt: Runtime) -> list[Job]:
    """The photo jobs an event asks for; records skipped attachments with their reasons."""
    helpdesk = rt.helpdesk(event.vendor)
    own = rt.own_user_id(event.vendor)
    if event.actor_id and event.actor_id == own:
        log.info("ignored: deskmark's own action on %s ticket %s", event.vendor, event.ticket_id)
        return []
    if rt.settings.trigger_tags:
        tags = event.tags if event.tags is not None else helpdesk.ticket(event.ticket_id).tags
        if not set(tags) & set(rt.settings.trigger_tags):
            log.info("ignored: ticket %s has none of the trigger tags", event.ticket_id)
            return []
    photos = [event.photo] if event.photo else helpdesk.photos(event.ticket_id)
    jobs: list[Job] = []
    for photo in photos:
        if photo.author_id and photo.author_id == own:
            continue  # deskmark's own notes
        job = Job.for_photo(event.vendor, event.ticket_id, photo)
        job_id = job.job_id
        fields: JobRecord = {"vendor": event.vendor, "ticket_id": event.ticket_id,
                             "attachment_id": photo.attachment_id, "filename": photo.filename,
                             "photo": photo.to_dict(), "ticket_url": helpdesk.ticket_url(event.ticket_id)}
        if not photo.looks_like_image():
            if rt.store.create_job(job_id, fields):
                rt.store.update(job_id, {"state": "skipped",
                                         "reason": f"not an image ({photo.content_type or 'unknown type'})"})
            continue
        rt.store.create_job(job_id, fields)
        if rt.store.job(job_id).get("state") in ("done", "skipped", "failed"):
            continue  # failed jobs come back through `deskmark replay`, not redeliveries
        jobs.append(job)
    return jobs


def run_job(job: Job, rt: Runtime) -> str:
    """Run one photo job to the end; return its final state. Raises VendorError to retry."""
    job_id = job.job_id
    if rt.leases.acquire(job_id) is None:
        # Another worker is running it and renewing its lease. Should that worker die, the
        # reaper queues the job again (worker.recovery): this message has nothing to do.
        log.info("job %s is running on another worker; this message is a duplicate", job_id)
        return "duplicate"
    try:
        record = rt.store.job(job_id)
        if record.get("state") in ("done", "skipped", "failed"):
            # A message back after its job finished, or was dead-lettered, does nothing: a dead
            # letter comes back through `deskmark replay`, which queues it as "queued" first.
            return str(record["state"])
        # A job whose worker died under it before runs alone (worker.recovery): its next death,
        # if it comes, is its own, and no job beside it dies with it.
        alone = int(record.get("worker_deaths") or 0) >= ALONE_AFTER
        if alone and rt.leases.acquire(SUSPECT) is None:
            raise Throttled("its worker died while running it, so it runs alone, after the "
                            "photo that is running alone now", 15.0)
        try:
            return _run(job, record, rt)
        finally:
            if alone:
                rt.leases.release(SUSPECT)
    finally:
        rt.leases.release(job_id)


def _run(job: Job, record: JobRecord, rt: Runtime) -> str:
    job_id = job.job_id
    attempt = rt.store.count_attempt(job_id)
    rt.store.update(job_id, {"state": "running", "started": record.get("started") or time.time()})
    rt.store.watch(job_id, time.time())  # alive for as long as its lease is
    try:
        return _steps(job, record, rt, attempt)
    except (UnusablePhoto, UnsafeURL) as exc:
        # It claimed to be an image and cannot be used: the agents should know.
        fail_job(job, rt, str(exc), None)
        return "failed"


def job_language(record: JobRecord, rt: Runtime, ticket: Ticket | None) -> str:
    """The job's language: its record's, once decided; else DESKMARK_LANGUAGE, or with `auto`
    the ticket's own as its helpdesk reports it (`ticket`, fetched for it). Recorded, so that a
    retry writes in the same language and finds its own note by the same words."""
    language = record.get("language")
    if not language:
        language = language_of(rt.settings.language, ticket.language if ticket else None)
        rt.store.update(record["job_id"], {"language": language})
    return language


def _steps(job: Job, record: JobRecord, rt: Runtime, attempt: int) -> str:
    job_id, vendor, ticket_id, photo = job.job_id, job.vendor, job.ticket_id, job.photo
    helpdesk = rt.helpdesk(vendor)
    ticket: Ticket | None = None  # fetched once, for the prompt, the language and the Slack review
    if not record.get("language") and rt.settings.language == "auto":
        ticket = helpdesk.ticket(ticket_id)
    language = job_language({**record, "job_id": job_id}, rt, ticket)
    w = words(language)

    marked = rt.store.marked(job_id)
    mark: Mark = record.get("mark") or {}
    if marked is None:
        lost = int(record.get("edits_in_flight") or 0)
        if lost:
            # An earlier attempt's worker died during its edit call: that edit may be billed.
            lost += int(record.get("lost_edits") or 0)
            rt.store.update(job_id, {"edits_in_flight": 0, "lost_edits": lost})
        answered = rt.batches.answer_for(job_id) if rt.batches is not None else None
        if answered is not None:
            # Batch mode: the batch answered this job's edit. The second half, from the photo
            # as it was downloaded when the job was parked.
            plan, original, answer, reserved = answered
            source: BinaryIO = io.BytesIO(original)
            result = rt.marker.answer(plan, source, answer, 0.0)
            if reserved is not None and rt.marker.gate is not None:
                rt.marker.gate.settle(reserved, plan.located_cost + (answer.cost_usd or 0.0))
            marked, mark = deliverable(result, source, job, record, rt)
            mark["batch"] = str(record.get("batch") or "")
        else:
            source, _ = helpdesk.download(ticket_id, photo)
            with source:  # a temporary file: on disk while the edit call waits, deleted after
                subject = description = ""
                if rt.marker.editor is not None:
                    ticket = ticket or helpdesk.ticket(ticket_id)
                    subject, description = ticket.subject, ticket.description

                def remember(located: dict[str, Any]) -> None:
                    rt.store.update(job_id, {"located": located})
                    labels = [str(b.get("label")) for b in located.get("boxes") or []]
                    rt.store.step(job_id, f"located by {located.get('model')}: " + (
                        ", ".join(labels) if labels else located.get("problem") or "no damage found"))

                if rt.batches is not None:
                    asked = rt.marker.ask(source, subject, description, located=record.get("located"),
                                          remember=remember, results=JobResults(rt.store, job_id),
                                          batched=True, language=language)
                    if isinstance(asked, EditPlan):
                        source.seek(0)
                        rt.batches.park(job_id, asked, source.read())
                        return "batched"
                    result = asked  # reused, the local annotator, or the budget reached
                else:
                    result = rt.marker.mark(
                        source, subject, description, located=record.get("located"), remember=remember,
                        results=JobResults(rt.store, job_id),
                        on_edit=lambda started: rt.store.count_edit(job_id, started), language=language,
                    )
                marked, mark = deliverable(result, source, job, record, rt)
        lost = lost or int(record.get("lost_edits") or 0)
        if lost and not mark.get("reused_from"):
            mark["lost_edits"] = lost
        rt.store.save_marked(job_id, marked, mark)
        # Downloaded for good: the attachment URL (it may carry an access token) leaves the
        # record; a re-run from here on starts from the marked image.
        rt.store.update(job_id, {"photo": {**photo.to_dict(), "url": ""}})
        rt.store.save_thumbnails(job_id, result.before, result.after, result.model)
        if mark.get("provider") == "openai" and mark.get("result_key") and not mark.get("reused_from"):
            rt.store.publish_result(mark["result_key"], job_id)
        if mark.get("provider") == "openai":
            rt.store.observe_edit(float(mark.get("edit_seconds") or 0.0))
        rt.store.update(job_id, {"model": mark["model"], "cost_usd": mark["cost_usd"],
                                 "request_id": mark["request_id"]})
        rt.store.step(job_id, f"marked: {what_was_marked(mark)} ("
                      + "; ".join(f"{m['label']} circled by {m['drawn_by']}" for m in mark.get("marks") or [])
                      + f"{'; ' if mark.get('marks') else ''}{money(mark.get('cost_usd'), mark.get('model'))})")

    if not record.get("note_id"):
        rt.leases.check(job_id)  # never a second note from a worker that lost the job
        note_id = (helpdesk.find_note(ticket_id, note_marker(job_id, w))
                   if record.get("note_attempted") else None)
        body = note_html(photo.filename, mark, job_id, w)
        if note_id is None:
            rt.store.update(job_id, {"note_attempted": True})
            note_id = helpdesk.post_note(
                ticket_id, body, [NoteFile(delivered_name(photo.filename, mark), marked, "image/jpeg")])
        rt.store.update(job_id, {"note_id": note_id or "posted", "note_html": body})
        rt.store.step(job_id, f"private note posted on the ticket{f' (note {note_id})' if note_id else ''}")

    if not record.get("escalated"):
        rt.leases.check(job_id)
        own = rt.settings.helpdesk(vendor)
        tags = ESCALATION_TAGS + signals.signal_tags(mark.get("signals") or {})
        target = own.warranty_target if own else None
        helpdesk.escalate(ticket_id, tags, target)
        rt.store.update(job_id, {"escalated": True, "tags_added": tags, "warranty_target": target})
        rt.store.step(job_id, f"escalated: tags {', '.join(tags)}"
                      + (f"; assigned to {target}" if target is not None else "; assignment unchanged"))

    if rt.notifier is not None and not record.get("slack_ts"):
        rt.leases.check(job_id)
        try:
            _ask_for_review(job_id, photo, record, rt, ticket or helpdesk.ticket(ticket_id),
                            marked, mark, w)
        except PermanentError as exc:
            # The ticket has its note; a Slack misconfiguration is the operator's to fix.
            log.warning("Slack review for %s not posted: %s", job_id, exc)
            rt.store.update(job_id, {"notify_error": str(exc)})

    if rt.batches is not None:
        rt.batches.finish(job_id)  # its photo and mask leave OpenAI's file store
    rt.store.update(job_id, {"state": "done", "finished": time.time(), "reason": ""})
    log.info("done %s on %s ticket %s (attempt %d)", job_id, vendor, ticket_id, attempt)
    return "done"


def deliverable(result: Marked, source: BinaryIO, job: Job, record: JobRecord, rt: Runtime,
                index: bool = True) -> tuple[bytes, Mark]:
    """The second half's second part (worker.marking.deliver) with this deployment's signer
    and re-used-photo index (`index`: the photo also goes into the index; `deskmark try`
    looks only)."""
    sent = record.get("created") or time.time()

    def seen(preview: bytes) -> SeenBefore | None:
        if rt.duplicates is None:
            return None
        try:
            return signals.seen_before(rt.duplicates, preview, job.job_id, job.vendor, job.ticket_id,
                                       job.photo.author_id or "", sent, index=index)
        except redis.exceptions.ResponseError as exc:  # a signal never blocks the marking
            log.warning("re-used-photo check of %s skipped: %s", job.job_id, exc)
            return None

    facts = Facts(job.job_id, job.vendor, job.ticket_id, job.photo.filename, sent)
    return deliver(result, source, facts, rt.signing_keys, rt.marker.memory, seen)


def _ask_for_review(job_id: str, photo: SourcePhoto, record: JobRecord, rt: Runtime,
                   ticket: Ticket, marked: bytes, mark: Mark, w: Words) -> None:
    assert rt.notifier is not None
    review = review_for(job_id, photo, record.get("vendor") or "", ticket, marked, mark, w)
    # Each post is recorded before it is made. An attempt that finds an earlier one recorded
    # looks in the channel first: that post may have gone through with its answer lost.
    earlier = None
    pending = record.get("slack_upload") or {}
    if (pending and not record.get("slack_file")) or record.get("slack_ask_at"):
        since = min(float(pending.get("at") or time.time()),
                    float(record.get("slack_ask_at") or time.time())) - 60
        earlier = _posted_since(rt.notifier, since, job_id, pending.get("file"))
    if not record.get("slack_file"):
        if earlier is not None and earlier.file_shared:
            rt.store.update(job_id, {"slack_file": pending["file"]})
        else:
            file_id, upload_url = rt.notifier.start_upload(review)
            rt.store.update(job_id, {"slack_upload": {"file": file_id, "at": time.time()}})
            rt.notifier.finish_upload(file_id, upload_url, review)
            rt.store.update(job_id, {"slack_file": file_id})
    # Buttons only for a list of reviewers: without one, anyone who can click in the channel
    # (Slack Connect guests too) would decide a warranty claim.
    decides = bool(rt.settings.slack and rt.settings.slack.approver_ids)
    if earlier is not None and earlier.review_ts:
        channel, ts = rt.settings.slack.channel_id if rt.settings.slack else "", earlier.review_ts
    else:
        rt.store.update(job_id, {"slack_ask_at": time.time()})
        channel, ts = rt.notifier.ask(review, buttons=decides)
        rt.store.step(job_id, f"posted to Slack ({channel}): "
                      + ("Approve and Reject buttons" if decides else "a notification, no buttons"))
    rt.store.update(job_id, {"slack_channel": channel, "slack_ts": ts, "ticket_url": ticket.url,
                             "slack_message": {"share": share_message(review)[1],
                                               "review": review_message(review, decides)[0],
                                               "buttons": decides}})


def review_for(job_id: str, photo: SourcePhoto, vendor: str, ticket: Ticket, marked: bytes,
               mark: Mark, w: Words = ENGLISH) -> Review:
    """What the Slack review of a marked photo says (integrations.slack.notifier), in `w`'s
    language."""
    said = " ".join(f"{ticket.subject} — {ticket.description}".split())
    spec = HELPDESKS.get(vendor)
    return Review(
        job_id=job_id, vendor=vendor, ticket_id=ticket.id, ticket_url=ticket.url,
        filename=delivered_name(photo.filename, mark), image=marked,
        customer_words=said if len(said) <= 280 else said[:279] + "…",
        what=what_was_marked(mark, w),
        cost=money(mark.get("cost_usd"), mark.get("model") if mark.get("provider") == "openai" else None, w),
        checks=signals.checks_line(mark["signals"], shared=True, w=w) if "signals" in mark else "",
        vendor_title=spec.title if spec else "", words=w,
    )


def _posted_since(notifier: SlackNotifier, since: float, job_id: str, file_id: str | None,
                  ) -> Posted | None:
    try:
        return notifier.posted_since(since, job_id, file_id)
    except PermanentError as exc:
        # No history scope (an app installed before it was asked for): post again, and say why.
        log.warning("cannot look for an earlier Slack post of %s (%s); posting again, which may "
                    "double it", job_id, exc)
        return None


def decide(click: ReviewClick, rt: Runtime) -> str:
    """Apply a reviewer's click: once, only from an allowed user, only for a job we posted."""
    notifier = rt.notifier
    if notifier is None or rt.settings.slack is None:
        return "slack off"
    record = rt.store.job(click.job_id)
    w = words(record.get("language") or language_of(rt.settings.language, None))
    if (record.get("vendor") != click.vendor or str(record.get("ticket_id")) != click.ticket_id
            or record.get("slack_ts") != click.message_ts):
        notifier.tell(click.response_url, w._("This review is not one deskmark posted; nothing was changed."))
        return "unknown"
    approvers = rt.settings.slack.approver_ids
    if not approvers:
        notifier.tell(click.response_url, w._(
            "Warranty decisions in Slack are off: deskmark's SLACK_APPROVER_IDS is not set, so this post is "
            "a notification only. Decide on the ticket itself; nothing was changed."))
        return "decisions off"
    if click.user_id not in approvers:
        notifier.tell(click.response_url, w._("You are not on the list of warranty reviewers "
                                              "(SLACK_APPROVER_IDS); nothing was changed."))
        return "not allowed"
    now = time.time()
    decision = {"decision": click.decision, "user_id": click.user_id, "user_name": click.user_name,
                "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now)), "at_ts": now,
                "click": click.click_id}
    current = rt.store.claim_review(click.job_id, decision)
    if current["click"] != click.click_id:
        when = w.datetime(float(current["at_ts"])) if current.get("at_ts") else current["at"]
        notifier.tell(click.response_url, (
            w._("Already approved by {who} on {when}; nothing was changed.", who=f"<@{current['user_id']}>",
                when=when) if current["decision"] == "approved" else
            w._("Already rejected by {who} on {when}; nothing was changed.", who=f"<@{current['user_id']}>",
                when=when)))
        return "already decided"
    rt.store.step(click.job_id, f"warranty {click.decision} in Slack by "
                  f"{click.user_name or click.user_id} ({click.user_id})")
    _apply_decision(click.job_id, current, rt)
    return click.decision


def _apply_decision(job_id: str, decision: dict[str, Any], rt: Runtime) -> None:
    """Each effect of a decision is its own recorded step, so a retry redoes only the rest."""
    assert rt.notifier is not None
    record = rt.store.job(job_id)
    vendor, ticket_id = record["vendor"], str(record["ticket_id"])
    helpdesk = rt.helpdesk(vendor)
    w = words(record.get("language") or language_of(rt.settings.language, None))
    tag = f"warranty_{decision['decision']}"
    if not record.get("review_tagged"):
        helpdesk.escalate(ticket_id, [tag], None)
        rt.store.update(job_id, {"review_tagged": True})
    if not record.get("review_note_id"):
        marker = w._("warranty review · job {job}", job=job_id)
        note_id = helpdesk.find_note(ticket_id, marker) if record.get("review_note_attempted") else None
        if note_id is None:
            rt.store.update(job_id, {"review_note_attempted": True})
            note_id = helpdesk.post_note(ticket_id, review_html(decision, record.get("filename") or "",
                                                                marker, w), [])
        rt.store.update(job_id, {"review_note_id": note_id or "posted"})
    if not record.get("review_shown"):
        title = HELPDESKS[vendor].title if vendor in HELPDESKS else vendor
        fields = {"who": f"<@{mrkdwn_escape(decision['user_id'])}>",
                  "when": w.datetime(float(decision["at_ts"])) if decision.get("at_ts") else decision["at"],
                  "helpdesk": title, "url": link_target(record.get("ticket_url") or ""),
                  "ticket": mrkdwn_escape(ticket_id), "filename": mrkdwn_escape(record.get("filename") or "")}
        rt.notifier.show_outcome(record["slack_channel"], record["slack_ts"], (
            w._("✅ Approved by {who} on {when} — {helpdesk} ticket <{url}|#{ticket}>, photo `{filename}`", **fields)
            if decision["decision"] == "approved" else
            w._("❌ Rejected by {who} on {when} — {helpdesk} ticket <{url}|#{ticket}>, photo `{filename}`",
                **fields)))
        rt.store.update(job_id, {"review_shown": True})


def failure_kind(reason: str, error: VendorError | None) -> str:
    """A short, stable name for a failure, for the dashboard's "failures by reason"."""
    if error is not None:
        detail = error.code or (f"HTTP {error.status}" if error.status else "unreachable")
        return f"{error.vendor}: {detail}"
    head = reason.split(":", 1)[0].strip()
    return head if len(head) <= 60 else head[:59] + "…"


def fail_job(job: Job, rt: Runtime, reason: str, error: VendorError | None) -> None:
    """Record a job that cannot finish, and tell the agents on the ticket where possible."""
    job_id = job.job_id
    rt.store.bury(job_id)  # first: a job seen as "failed" is always in the dead letters
    rt.store.update(job_id, {"state": "failed", "reason": reason,
                             "last_error": error.record() if error else None})
    rt.store.count_failure(failure_kind(reason, error))
    log.warning("failed %s (dead letter; `deskmark replay %s` re-runs it): %s", job_id, job_id, reason)
    if rt.batches is not None:
        try:  # a dead letter keeps nothing at OpenAI (a replay edits again)
            rt.batches.finish(job_id)
        except VendorError as exc:  # the hourly sweep deletes it later
            log.warning("could not delete %s's files at OpenAI yet: %s", job_id, exc)
    record = rt.store.job(job_id)
    if record.get("failure_noted") or record.get("note_id"):
        return
    w = words(record.get("language") or language_of(rt.settings.language, None))
    try:
        rt.helpdesk(job.vendor).post_note(
            job.ticket_id,
            failure_html(job.photo.filename or "photo",
                         agent_reason(error, w) if error else reason, job_id, w),
            [],
        )
        rt.store.update(job_id, {"failure_noted": True})
    except (VendorError, UnusablePhoto) as exc:
        log.warning("could not leave a failure note for %s: %s", job_id, exc)
