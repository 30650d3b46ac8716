"""Batch mode (DESKMARK_EDIT_MODE=batch): edits go through OpenAI's Batch API at half price.

A photo job runs the first half of marking (worker.marking: `Marker.ask`, locating included:
it is cheap, and its box makes the edit's mask), uploads the request image and mask to the
Files API, and is *parked*: its edit line, plan and original wait in Redis, and the job is
`waiting` on no worker. One worker at a time (a Redis lock) then `tick`s:

1. **submit**: once the oldest parked job has waited DESKMARK_BATCH_COLLECT_SECONDS, every
   parked job goes into one batch. The batch is recorded (state `submitting`, its jobs)
   before it is created at OpenAI and tagged with deskmark's own id, so that after a crash
   it is found again (`BatchEditor.find`) rather than submitted twice;
2. **look**: each open batch is looked at with back-off (5 s doubling, at most the collect
   time). When it has ended, each answered line's image is kept for its job and the job is
   queued again: the pipeline runs the second half (`Marker.answer`, signing, the note)
   through the same steps as a sync edit. A line that failed goes into the next batch, and
   is dead-lettered after MAX_RETRIES + 1 tries; the lines of an expired or cancelled batch
   go into the next batch. Then the batch's files are deleted at OpenAI;
3. **sweep**: every hour, deskmark's files at OpenAI older than an hour that no parked job or
   open batch needs are deleted (what a crash left behind).

A job's own photo and mask are deleted at OpenAI once its note is posted (`finish`).
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from integrations.errors import PermanentError, VendorError
from integrations.openai_batch import ENDED, BatchEditor
from integrations.openai_images import EditRequest, EditResult, Located
from worker.limits import Reservation
from worker.marking import EditPlan
from worker.retry import MAX_RETRIES
from worker.store import Store

__all__ = ["BatchQueue", "KEEP_SECONDS", "open_batches"]

log = logging.getLogger("deskmark.batches")

KEEP_SECONDS = 2 * 86400  # what a parked job keeps in Redis: the 24 h window and a margin
MAX_LINES = 50_000  # OpenAI's limit per batch
FIRST_LOOK = 5.0
SWEEP_EVERY = 3600.0
WAITING = "dm:batch:waiting"  # parked job ids, by when they were parked
OPEN = "dm:batches:open"  # deskmark's ids of batches submitted (or being submitted)


def _s(value: Any) -> str:
    """A Redis reply as text (this client answers bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def open_batches(r: redis.Redis) -> list[dict[str, Any]]:
    """The dashboard's list: each open batch (its OpenAI id, when it went, its jobs), and one
    entry, "collecting", for the jobs waiting for the next batch."""
    found: list[dict[str, Any]] = []
    for local in sorted(_s(v) for v in r.smembers(OPEN)):
        raw = r.hgetall(_batch_key(local))
        if raw:
            batch = {_s(k): _s(v) for k, v in raw.items()}
            found.append({**batch, "local": local, "jobs": json.loads(batch.get("jobs", "[]"))})
    waiting = [_s(v) for v in r.zrange(WAITING, 0, 199)]
    if waiting:
        found.append({"local": "", "state": "collecting", "jobs": waiting})
    return found


def _batch_key(local: str) -> str:
    return f"dm:batch:{local}"


def _job_key(job_id: str) -> str:
    return f"dm:job:{job_id}:batch"


class BatchQueue:
    def __init__(self, store: Store, editor: BatchEditor, collect_seconds: int) -> None:
        self.store = store
        self.r: redis.Redis = store.r
        self.editor = editor
        self.collect_seconds = collect_seconds
        self._swept = 0.0

    # --- a job's side --------------------------------------------------------------------------
    def park(self, job_id: str, plan: EditPlan, original: bytes) -> None:
        """Upload the plan's images, keep what the second half needs (the budget's reservation
        among it, settled when the answer comes), and wait for a batch."""
        reserved: Reservation | None = plan.reservation
        request = plan.request
        ext = {"image/png": "png", "image/webp": "webp"}.get(request.mime, "jpg")
        image_id = self.editor.upload(f"{job_id}-photo.{ext}", request.image, request.mime)
        mask_id = self.editor.upload(f"{job_id}-mask.png", request.mask, "image/png") if request.mask else None
        line = self.editor.line(job_id, request, image_id, mask_id)
        pipe = self.r.pipeline()
        pipe.hset(_job_key(job_id), mapping={
            "line": json.dumps(line), "image_id": image_id, "mask_id": mask_id or "",
            "plan": json.dumps({"found": plan.found.to_dict() if plan.found else None, "key": plan.key,
                                "decoding": plan.decoding, "located_cost": plan.located_cost,
                                "size": list(request.size), "mime": request.mime, "prompt": request.prompt,
                                "language": plan.language,
                                "reserved": [reserved.day, reserved.amount] if reserved else None}),
            "tries": 0})
        pipe.set(f"dm:job:{job_id}:request", request.image, ex=KEEP_SECONDS)
        pipe.set(f"dm:job:{job_id}:original", original, ex=KEEP_SECONDS)
        if plan.before:
            pipe.set(f"dm:job:{job_id}:before", plan.before, ex=self.store.retention)
        pipe.expire(_job_key(job_id), KEEP_SECONDS)
        pipe.zadd(WAITING, {job_id: time.time()})
        pipe.execute()
        self.store.update(job_id, {"state": "waiting", "reason": "waiting for the next batch to OpenAI",
                                   "batch": "collecting"})
        self.store.unwatch(job_id)  # no worker holds it: the batch does

    def answer_for(self, job_id: str) -> tuple[EditPlan, bytes, EditResult, Reservation | None] | None:
        """The plan, the original photo and the batch's answer of a job whose batch answered."""
        raw = self.r.hgetall(_job_key(job_id))
        fields = {_s(k): v for k, v in raw.items()}
        if "answer" not in fields:
            return None
        plan = json.loads(fields["plan"])
        request_image = self.r.get(f"dm:job:{job_id}:request")
        original = self.r.get(f"dm:job:{job_id}:original")
        if not isinstance(request_image, bytes) or not isinstance(original, bytes):
            return None
        answer = json.loads(fields["answer"])
        width, height = plan["size"]
        edit = EditRequest(image=request_image, mime=plan["mime"], size=(int(width), int(height)),
                           prompt=plan["prompt"], mask=None)
        found = Located.from_dict(plan["found"]) if plan["found"] else None
        before = self.store.image(job_id, "before") or b""
        result = EditResult(image=base64.b64decode(answer["image"]), provider="openai", model=answer["model"],
                            cost_usd=answer["cost_usd"], request_id=answer["request_id"], usage=answer["usage"])
        reserved = Reservation(*plan["reserved"]) if plan["reserved"] else None
        return (EditPlan(edit, found, plan["key"], before, int(plan["decoding"]), None,
                         float(plan["located_cost"]), plan.get("language") or "en"), original, result, reserved)

    def finish(self, job_id: str) -> None:
        """The job's note is posted: its files at OpenAI and its batch keys go."""
        raw = self.r.hmget(_job_key(job_id), ["image_id", "mask_id"])
        ids = [_s(v) for v in raw if v]
        self.editor.delete(*ids)
        self.r.delete(_job_key(job_id), f"dm:job:{job_id}:request", f"dm:job:{job_id}:original")
        self.r.zrem(WAITING, job_id)

    def open_batches(self) -> list[dict[str, Any]]:
        return open_batches(self.r)

    # --- the tick ------------------------------------------------------------------------------
    def tick(self, requeue: Callable[[str], None], give_up: Callable[[str, str, VendorError | None], None],
             now: float | None = None) -> None:
        """One round, by one worker at a time: recover, submit, look, sweep."""
        lock = uuid.uuid4().hex
        if not self.r.set("dm:batch:tick", lock, nx=True, ex=30):
            return
        try:
            now = time.time() if now is None else now
            self._recover()
            self._submit(now)
            self._look(now, requeue, give_up)
            if now - self._swept >= SWEEP_EVERY:
                self._swept = now
                self.editor.sweep(self._needed())
        finally:
            if self.r.get("dm:batch:tick") == lock.encode():
                self.r.delete("dm:batch:tick")

    def _lines(self, jobs: list[str]) -> list[dict[str, Any]]:
        lines = []
        for job_id in jobs:
            raw = self.r.hget(_job_key(job_id), "line")
            if raw:
                lines.append(json.loads(raw))
        return lines

    def _send(self, local: str, jobs: list[str]) -> None:
        input_id, batch_id = self.editor.submit(local, self._lines(jobs))
        self._opened(local, batch_id, input_id, jobs)

    def _opened(self, local: str, batch_id: str, input_id: str, jobs: list[str]) -> None:
        now = time.time()
        self.r.hset(_batch_key(local), mapping={"state": "open", "openai_id": batch_id, "input_id": input_id,
                                                "submitted_at": now, "next_look": now + FIRST_LOOK, "looks": 0})
        for job_id in jobs:
            self.store.update(job_id, {"batch": batch_id, "batch_submitted": now,
                                       "reason": "waiting for its batch (OpenAI answers within 24 h)"})
        log.info("batch %s (%s) submitted with %d edits", batch_id, local, len(jobs))

    def _recover(self) -> None:
        """A batch recorded as being submitted when a worker died: found, or sent now."""
        for local in [_s(v) for v in self.r.smembers(OPEN)]:
            if self.r.hget(_batch_key(local), "state") != b"submitting":
                continue
            jobs = json.loads(self.r.hget(_batch_key(local), "jobs") or b"[]")
            found = self.editor.find(local)
            if found is not None:
                input_id = self.editor.look(found).input_file_id
                self._opened(local, found, input_id, jobs)
                log.warning("batch %s was created before a crash: found again, not sent twice", found)
            else:
                self._send(local, jobs)

    def _submit(self, now: float) -> None:
        oldest = self.r.zrange(WAITING, 0, 0, withscores=True)
        if not oldest or now - float(oldest[0][1]) < self.collect_seconds:
            return
        jobs = [_s(v) for v in self.r.zrange(WAITING, 0, MAX_LINES - 1)]
        local = uuid.uuid4().hex[:16]
        pipe = self.r.pipeline()  # recorded before OpenAI hears of it
        pipe.hset(_batch_key(local), mapping={"state": "submitting", "jobs": json.dumps(jobs), "created": now})
        pipe.expire(_batch_key(local), KEEP_SECONDS)
        pipe.sadd(OPEN, local)
        pipe.zrem(WAITING, *jobs)
        pipe.execute()
        self._send(local, jobs)

    def _look(self, now: float, requeue: Callable[[str], None],
              give_up: Callable[[str, str, VendorError | None], None]) -> None:
        for local in [_s(v) for v in self.r.smembers(OPEN)]:
            raw = {_s(k): _s(v) for k, v in self.r.hgetall(_batch_key(local)).items()}
            if raw.get("state") != "open" or float(raw.get("next_look") or 0) > now:
                continue
            batch = self.editor.look(raw["openai_id"])
            if batch.status not in ENDED:
                looks = int(raw.get("looks") or 0) + 1
                wait = min(FIRST_LOOK * 2 ** looks, float(self.collect_seconds))
                self.r.hset(_batch_key(local), mapping={"looks": looks, "next_look": now + wait})
                continue
            jobs = json.loads(raw["jobs"])
            answers = self.editor.answers(batch, jobs)
            for job_id, result in answers.results.items():
                answer = {"image": base64.b64encode(result.image).decode(), "model": result.model,
                          "cost_usd": result.cost_usd, "request_id": result.request_id, "usage": result.usage,
                          "batch": batch.id}
                self.r.hset(_job_key(job_id), "answer", json.dumps(answer))
                self.store.update(job_id, {"state": "queued", "reason": f"batch {batch.id} answered"})
                requeue(job_id)
            retry = list(answers.unanswered)
            for job_id, error in answers.errors.items():
                tries = int(self.r.hincrby(_job_key(job_id), "tries", 1))
                if isinstance(error, PermanentError) or tries > MAX_RETRIES:
                    tried = "once" if tries == 1 else f"{tries} times"
                    give_up(job_id, f"its batch edit failed ({tried}): {error}", error)
                    self.finish(job_id)
                else:
                    retry.append(job_id)
            if retry:
                self.r.zadd(WAITING, {job_id: now - self.collect_seconds for job_id in retry})  # the next batch
                for job_id in retry:
                    self.store.update(job_id, {"batch": "collecting",
                                               "reason": f"batch {batch.id} did not answer it: in the next batch"})
            self.editor.delete(*[f for f in (raw.get("input_id"), batch.output_file_id, batch.error_file_id) if f])
            self.r.delete(_batch_key(local))
            self.r.srem(OPEN, local)
            log.info("batch %s %s: %d answered, %d again, %d failed", batch.id, batch.status,
                     len(answers.results), len(retry), len(answers.errors) - len(set(answers.errors) & set(retry)))

    def _needed(self) -> set[str]:
        """File ids a parked job or an open batch still needs (kept by the sweep)."""
        keep: set[str] = set()
        for key in self.r.scan_iter(match="dm:job:*:batch", count=1000):
            for value in self.r.hmget(key, ["image_id", "mask_id"]):
                if value:
                    keep.add(_s(value))
        for local in self.r.smembers(OPEN):
            input_id = self.r.hget(_batch_key(_s(local)), "input_id")
            if input_id:
                keep.add(_s(input_id))
        return keep
