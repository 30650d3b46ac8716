"""The shapes deskmark keeps as JSON: what a marking produced (`Mark`) and a job's record in Redis
(`JobRecord`). TypedDicts, so the stored dicts stay plain JSON and mypy checks every key that is
read or written. A photo job on the queue is `worker.jobs.Job`.
"""

from __future__ import annotations

from typing import Any, TypedDict

__all__ = ["DrawnMark", "Mark", "JobRecord", "SeenBefore", "Signals"]


class DrawnMark(TypedDict):
    """One circled place on the photo, and who drew its circle."""

    label: str
    region: list[int]  # x0, y0, x1, y1 on the delivered photo
    drawn_by: str  # the edit model's name, or "deskmark" when its mark was missing or wrong
    why: str | None  # why deskmark drew it (None: the model's own mark was kept)
    coverage: float | None  # how much of the ring around the region the model's red covered


class SeenBefore(TypedDict):
    """The earliest near-duplicate of the photo sent on another ticket (worker.dupes)."""

    job_id: str  # its job (the dashboard's page of it, while the job record is kept)
    vendor: str
    ticket_id: str
    requester: str  # the id of who sent it there ("" when the helpdesk did not say)
    date: str  # YYYY-MM-DD
    bits: int  # how many of the 64 hash bits differ
    same_requester: bool
    more: int  # other tickets with it besides this one


class Signals(TypedDict, total=False):
    """Claim signals of the customer's photo (worker.signals): facts, never verdicts."""

    generated_by: str  # the tool a generator's own content credentials name
    source_type: str  # the IPTC digital source type it declared
    camera: str  # "Apple iPhone 15 Pro"; absent: no camera make or model
    taken: str  # ISO time the camera recorded, as written (no zone)
    taken_days_before: float  # how long before deskmark received it
    seen_before: SeenBefore  # a near-duplicate was sent on another ticket
    credentials_unreadable: str  # why its content credentials could not be read ("too large")


class Mark(TypedDict, total=False):
    """What marking a photo produced: the note, the job record and `annotate`'s JSON say it."""

    provider: str  # "openai" or "local"
    model: str
    cost_usd: float | None  # locate + edit; None when a price is unknown
    edit_cost_usd: float | None
    request_id: str | None
    usage: dict[str, Any]
    edit_seconds: float
    located: dict[str, Any] | None  # integrations.openai_images.Located.to_dict()
    labels: list[str]
    regions: list[list[int]]
    marks: list[DrawnMark]
    unlocated_mark: bool  # nothing located, and the model's own mark was kept unchecked
    marked: bool  # False: the photo goes back unmarked, and the note says so
    result_key: str  # the paid result's key (worker.marking.Marker.result_key)
    reused_from: str  # the job whose paid result this is
    lost_edits: int  # edit calls cut off with their worker (each may have been billed)
    budget_reached: bool  # the daily budget took no edit: deskmark marked what it located, if any
    no_model: bool  # no AI model configured (and no guessing on tickets): the photo is unmarked
    budget_usd: float
    credentials: dict[str, str]  # {"signer": "throwaway" | "configured"}, or {"error": why not}
    signals: Signals  # claim signals of the customer's photo (worker.signals)
    batch: str  # the OpenAI batch that made the edit (DESKMARK_EDIT_MODE=batch)


class JobRecord(TypedDict, total=False):
    """A job's record (`dm:job:{id}`), as `Store.job` reads it. Every step writes its own
    fields, so a retry sees what was done; a dead-lettered event (`kind: "event"`) keeps the
    event instead of a photo."""

    batch: str  # batch mode: "collecting", or the OpenAI batch the edit went in
    batch_submitted: float
    job_id: str
    kind: str  # "event" for a dead-lettered event; absent for a photo job
    event: dict[str, Any]
    state: str  # worker.store.JOB_STATES
    vendor: str
    ticket_id: str
    attachment_id: str
    filename: str
    photo: dict[str, Any]  # integrations.events.SourcePhoto.to_dict(); its URL dropped once marked
    ticket_url: str
    created: float
    updated: float
    started: float
    finished: float
    due: float  # when a retrying or waiting job comes back
    replayed: float
    attempts: int
    requeued: int
    worker_deaths: int  # how often its worker died while it ran (worker.recovery: a poison job)
    edits: int
    edits_in_flight: int
    lost_edits: int
    reason: str
    last_error: dict[str, Any] | None  # integrations.errors.VendorError.record()
    located: dict[str, Any]
    mark: Mark
    model: str
    request_id: str | None
    cost_usd: float | None
    note_attempted: bool
    note_id: str
    note_html: str  # the note as posted (the job page shows it)
    language: str  # what the job writes in (integrations.i18n), decided once
    tags_added: list[str]  # the escalation's tags, as added
    warranty_target: int | None  # the group, team or user assigned (None: unchanged)
    slack_message: dict[str, Any]  # {"share", "review": texts as posted, "buttons": bool}
    failure_noted: bool
    escalated: bool
    notify_error: str
    slack_upload: dict[str, Any]
    slack_file: str
    slack_ask_at: float
    slack_channel: str
    slack_ts: str
    review: dict[str, Any]
    review_tagged: bool
    review_note_attempted: bool
    review_note_id: str
    review_shown: bool
