"""Job state in Redis: delivery de-duplication, job records, step marks, leases, marked images.

Every key deskmark writes ends, except the ones meant to live (tests/test_retention.py lists
them all). "retention" is DESKMARK_RETENTION_DAYS (default 14), renewed by every write to a job.

Keys (all under `dm:`), and how long each lives:
  delivery:{vendor}:{key}   a webhook delivery already accepted: the duplicate window, 7 days
  scan:{vendor}:{ticket}     a scan of the ticket's photos is queued and not yet started: 1 hour
  self:{vendor}             deskmark's own user id at that vendor: 1 day
  credential:{vendor}       what deskmark signs in to the vendor with and when it ends (the
                            dashboard and /readyz show it), as the workers last saw it: 1 day
  token:{id}                an access token of an OAuth client (integrations.tokens), shared
                            by every process: its own lifetime; :renewing (the one renewal in
                            flight) 30 s; :refused (a refused grant) 2 minutes
  job:{id}                  hash: the job record (vendor, ticket, photo, state, steps, cost …):
                            retention after its last write
  job:{id}:marked           the marked image (so a retry never pays twice): retention
  job:{id}:before, :after, :model
                            the dashboard's previews (the customer's photo, the delivered one,
                            the edit model's own output): retention
  result:{key}              who holds the paid result for a prepared photo + models + prompt:
                            `pending:{job}` while that job makes it (10 minutes, renewed), then
                            `done:{job}` for as long as the marked images are kept (retention)
  lease:{id}                held while one worker runs the job, renewed: 60 s
  watch                     sorted set of unfinished jobs (worker.recovery): lives, and each
                            entry leaves when its job ends
  jobs                      sorted set of job ids by last update (the dashboard reads it): lives,
                            trimmed to retention
  dead                      sorted set of dead-lettered job ids (and `ev-…` events): lives,
                            trimmed to retention
  spend:{YYYY-MM-DD}        USD spent on model calls that day (worker.limits): 31 days
  edits:{YYYY-MM-DD}        edit calls that day and their latency buckets: 31 days
  failures:{YYYY-MM-DD}     failed jobs that day, by reason: 8 days
  limit:edit                when the next edit call may start (worker.limits): a minute
  heartbeat:worker          refreshed while a worker's consumer runs: 45 s
  ph:{band}:{value}         the re-used-photo index (worker.dupes): DESKMARK_DUPLICATE_DAYS
                            after a photo was last added to it; older records are trimmed
  metrics:jobs, metrics:edit_seconds, metrics:spend_usd_total
                            Prometheus counters (/metrics): live, as counters must
Celery's own keys (the `deskmark` queue, kombu's `unacked` and `_kombu.*`) are the broker's.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from worker.broker import Accept
from worker.records import JobRecord, Mark

__all__ = ["Store", "JOB_STATES", "TERMINAL_STATES", "DELIVERY_TTL", "SERIES_DAYS", "day_key"]

DELIVERY_TTL = 7 * 24 * 3600
DELIVERIES_KEPT = 500  # per helpdesk, in the delivery log (accepted and ignored webhooks)
REJECTED_KEPT = 200  # per helpdesk: rejected webhooks (no bodies), kept for a day at most
REJECTED_SECONDS = 24 * 3600
# What the accept step's outcomes mean, in the delivery log (webhooks.intake answers the same).
ACCEPT_OUTCOMES = {"enqueued": "queued for the worker", "own": "deskmark's own action",
                   "duplicate": "duplicate delivery", "scan queued": "a scan of this ticket is already queued"}
STEPS_KEPT = 60  # a job's timeline
REPLAY_TTL = 900  # longer than a signature is accepted (±5 minutes), so a replay stays a duplicate
SCAN_TTL = 3600  # a queued scan that never starts (queue purged) stops coalescing after this
SERIES_DAYS = 31  # the dashboard's charts go back 30 days
FAILURE_DAYS = 8  # ... and its failures by reason, 7
JOB_STATES = ("queued", "running", "retrying", "waiting", "done", "skipped", "failed")
TERMINAL_STATES = ("done", "skipped", "failed")
# Edit-call latency histogram buckets (seconds): edits take 20 s to over 2 minutes.
EDIT_BUCKETS = (1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 240)
HEARTBEAT_TTL = 45


# The webhook's one round trip: loop guard, de-duplication and enqueue, all or nothing, and the
# delivery's line in the helpdesk's delivery log (the dashboard's Deliveries page).
# KEYS: own user id, delivery key, scan key, queue, replay key, delivery log. ARGV: actor id,
# delivery TTL, scan TTL, check delivery (1/0), claim scan (1/0), check replay (1/0), replay
# TTL, now, the log line without its outcome, lines kept, message (kombu's, as its Redis
# transport would LPUSH it: worker.broker).
_ACCEPT = """
local function logged(outcome)
  redis.call('ZADD', KEYS[6], ARGV[8], ARGV[9] .. outcome .. '"}')
  redis.call('ZREMRANGEBYRANK', KEYS[6], 0, -1 - tonumber(ARGV[10]))
  redis.call('EXPIRE', KEYS[6], ARGV[2])
  return outcome
end
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) == ARGV[1] then return logged('own') end
if ARGV[6] == '1' and not redis.call('SET', KEYS[5], '1', 'NX', 'EX', ARGV[7]) then
  return logged('duplicate')
end
if ARGV[4] == '1' and not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  return logged('duplicate')
end
if ARGV[5] == '1' and not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[3]) then
  return logged('scan queued')
end
redis.call('LPUSH', KEYS[4], ARGV[11])
return logged('enqueued')
"""


# Claim a result key for a job unless someone holds it; a holder's own claim is refreshed.
# KEYS: result key. ARGV: "pending:{job}", seconds. Returns who holds it now.
_CLAIM_RESULT = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return ARGV[1]
end
if holder == ARGV[1] then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return holder
"""
# Extend a lease only if it is still ours. KEYS: lease. ARGV: token, ms. Returns 1 if renewed.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# Claim an overdue job for re-queuing: still overdue, and nobody holds its lease.
# KEYS: watch set, lease. ARGV: job id, now, next deadline. Returns 1 when claimed.
_CLAIM_OVERDUE = """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[2]) or redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""
# Replace a holder that gave up (its job failed, or its stored image is gone).
_SWAP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


def connect(url: str, timeout: float = 5.0, patience: float = 0.0) -> redis.Redis:
    """A client for `url`. With `patience`, a command that finds Redis gone (a restart, a
    failover) is retried with backoff for about that many seconds before it raises: the
    worker's jobs ride out a routine restart. The web app has none: a webhook that cannot be
    enqueued gets its 503 at once, and the helpdesk retries."""
    options: dict[str, Any] = {}
    if patience:
        backoff = ExponentialWithJitterBackoff(base=0.25, cap=4.0)
        retries, waited = 0, 0.0
        while waited < patience:
            waited += min(4.0, 0.25 * 2**retries)
            retries += 1
        options = {"retry": Retry(backoff, retries),
                   "retry_on_error": [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]}
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=30,
        **options)


def day_key(at: float | None = None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at))


class Store:
    def __init__(self, client: redis.Redis, retention_days: int = 14) -> None:
        self.r = client
        self.retention = retention_days * 86400
        self._accept = client.register_script(_ACCEPT)
        self._claim_result = client.register_script(_CLAIM_RESULT)
        self._renew = client.register_script(_RENEW)
        self._claim_overdue = client.register_script(_CLAIM_OVERDUE)
        self._swap = client.register_script(_SWAP)

    @classmethod
    def from_url(cls, url: str, timeout: float = 5.0, patience: float = 0.0,
                 retention_days: int = 14) -> Store:
        return cls(connect(url, timeout, patience), retention_days)

    # --- web side -----------------------------------------------------------------------------
    def acceptance(self, vendor: str, ticket_id: str, actor_id: str | None, delivery_key: str,
                   scan: bool, replay_key: str = "") -> Accept:
        """The webhook's accept step, for `worker.broker.accepting`: the message is enqueued
        unless it is deskmark's own action, a delivery already seen (by its id, or by what was
        signed: `replay_key`), or a scan of a ticket whose scan is queued and not started.
        Its `outcome` says which, once the message has been published."""
        now = time.time()
        line = json.dumps({"id": secrets.token_hex(6), "at": round(now, 6), "ticket": ticket_id})
        return Accept(
            self._accept,
            keys_before=[f"dm:self:{vendor}", f"dm:delivery:{vendor}:{delivery_key}",
                         f"dm:scan:{vendor}:{ticket_id}"],
            keys_after=[f"dm:delivery:{vendor}:{replay_key}", f"dm:deliveries:{vendor}"],
            args=[actor_id or "", DELIVERY_TTL, SCAN_TTL, 1 if delivery_key else 0,
                  1 if scan else 0, 1 if replay_key else 0, REPLAY_TTL, repr(now),
                  line[:-1] + ', "outcome": "', DELIVERIES_KEPT])

    def log_delivery(self, vendor: str, status: int, outcome: str, detail: str, ticket_id: str = "") -> None:
        """A webhook that did not reach the accept step: rejected (kept REJECTED_SECONDS, its
        body never), or ignored when read. One round trip; the accepted ones are logged by the
        accept step itself."""
        now = time.time()
        rejected = status >= 400
        key = f"dm:{'rejected' if rejected else 'deliveries'}:{vendor}"
        line = {"id": secrets.token_hex(6), "at": round(now, 6), "ticket": ticket_id[:64],
                "outcome": outcome, "status": status, "detail": detail[:200]}
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(key, {json.dumps(line): now})
        pipe.zremrangebyrank(key, 0, -1 - (REJECTED_KEPT if rejected else DELIVERIES_KEPT))
        if rejected:
            pipe.zremrangebyscore(key, "-inf", now - REJECTED_SECONDS)
        pipe.expire(key, REJECTED_SECONDS if rejected else DELIVERY_TTL)
        pipe.execute()

    def deliveries(self, vendors: list[str], limit: int = 200) -> list[dict[str, Any]]:
        """The newest webhook deliveries of these helpdesks, newest first: each with its
        helpdesk, time, answer (status), outcome, reason and ticket."""
        since = time.time() - REJECTED_SECONDS
        pipe = self.r.pipeline(transaction=False)
        for vendor in vendors:
            pipe.zrevrange(f"dm:deliveries:{vendor}", 0, limit - 1)
            pipe.zrevrangebyscore(f"dm:rejected:{vendor}", "+inf", since, start=0, num=limit)
        raw = pipe.execute()
        found: list[dict[str, Any]] = []
        for i, vendor in enumerate(vendors):
            for member in raw[2 * i] + raw[2 * i + 1]:
                line = json.loads(member)
                line.setdefault("status", 202 if line.get("outcome") == "enqueued" else 200)
                line.setdefault("detail", ACCEPT_OUTCOMES.get(line.get("outcome", ""), ""))
                found.append({**line, "vendor": vendor})
        return sorted(found, key=lambda d: d["at"], reverse=True)[:limit]

    def release_scan(self, vendor: str, ticket_id: str) -> None:
        self.r.delete(f"dm:scan:{vendor}:{ticket_id}")

    def own_user_id(self, vendor: str) -> str | None:
        value = self.r.get(f"dm:self:{vendor}")
        return _text(value) if value else None

    def set_own_user_id(self, vendor: str, user_id: str) -> None:
        self.r.set(f"dm:self:{vendor}", user_id.encode(), ex=24 * 3600)

    def set_credential(self, vendor: str, credential: dict[str, Any]) -> None:
        self.r.set(f"dm:credential:{vendor}", _encode(credential), ex=24 * 3600)

    def credentials(self, vendors: list[str]) -> dict[str, dict[str, Any]]:
        """What the workers last saw of each vendor's credential (integrations.events.Credential)."""
        raw = self.r.mget([f"dm:credential:{v}" for v in vendors]) if vendors else []
        return {v: _decode(value) for v, value in zip(vendors, raw, strict=True) if value}

    # --- jobs ---------------------------------------------------------------------------------
    def job(self, job_id: str) -> JobRecord:
        """The job's record; empty when there is none (or it has expired)."""
        raw = self.r.hgetall(f"dm:job:{job_id}")
        return cast(JobRecord, {_text(k): _decode(v) for k, v in raw.items()})

    def create_job(self, job_id: str, fields: JobRecord) -> bool:
        """Create the record unless it exists; return True when created. A photo job goes into
        its ticket's index, for the dashboard's search by ticket."""
        key = f"dm:job:{job_id}"
        now = time.time()
        created = bool(self.r.hsetnx(key, "created", _encode(now)))
        if created:
            self.update(job_id, {"job_id": job_id, "state": "queued", "attempts": 0, **fields})
            if fields.get("vendor") and fields.get("ticket_id"):
                ticket = f"dm:ticket:{fields['vendor']}:{fields['ticket_id']}"
                pipe = self.r.pipeline(transaction=False)
                pipe.zadd(ticket, {job_id: now})
                pipe.expire(ticket, self.retention)
                pipe.execute()
        return created

    def jobs_for_ticket(self, ticket_id: str, vendors: list[str]) -> list[JobRecord]:
        """The photo jobs of a ticket number, at any of these helpdesks, newest first."""
        pipe = self.r.pipeline(transaction=False)
        for vendor in vendors:
            pipe.zrevrange(f"dm:ticket:{vendor}:{ticket_id.strip()[:64]}", 0, 99)
        ids = [_text(i) for found in pipe.execute() for i in found]
        return sorted(self.jobs(ids), key=lambda j: float(j.get("created") or 0), reverse=True)

    def step(self, job_id: str, what: str, at: float | None = None) -> None:
        """A line in the job's timeline (the job page): what happened, when."""
        key = f"dm:steps:{job_id}"
        pipe = self.r.pipeline(transaction=False)
        pipe.rpush(key, json.dumps([round(time.time() if at is None else at, 3), what[:300]]))
        pipe.ltrim(key, -STEPS_KEPT, -1)
        pipe.expire(key, self.retention)
        pipe.execute()

    def steps(self, job_id: str) -> list[tuple[float, str]]:
        return [(float(at), str(what)) for at, what in (json.loads(raw) for raw in self.r.lrange(
            f"dm:steps:{job_id}", 0, -1))]

    def update(self, job_id: str, fields: JobRecord) -> None:
        """Write fields of the record; the record then lives `retention` from now (a field
        written after it expired never leaves a record without an end)."""
        now = time.time()
        key = f"dm:job:{job_id}"
        pipe = self.r.pipeline()
        pipe.hset(key, mapping={k: _encode(v) for k, v in {**fields, "updated": now}.items()})
        pipe.expire(key, self.retention)
        pipe.zadd("dm:jobs", {job_id: now})
        if "state" in fields:  # the timeline follows every change of state, with its reason
            reason = fields.get("reason") or ""
            pipe.rpush(f"dm:steps:{job_id}", json.dumps([round(now, 3), f"{fields['state']}"
                                                          + (f": {reason}"[:300] if reason else "")]))
            pipe.ltrim(f"dm:steps:{job_id}", -STEPS_KEPT, -1)
            pipe.expire(f"dm:steps:{job_id}", self.retention)
        if fields.get("state") in TERMINAL_STATES:
            pipe.hincrby("dm:metrics:jobs", fields["state"], 1)  # deskmark_jobs_total{state}
            pipe.zrem("dm:watch", job_id)
        pipe.execute()

    def _count(self, job_id: str, field: str, by: int) -> int:
        key = f"dm:job:{job_id}"
        pipe = self.r.pipeline()
        pipe.hincrby(key, field, by)
        pipe.expire(key, self.retention)
        return int(pipe.execute()[0])

    def trim(self, now: float | None = None) -> int:
        """Drop index and dead-letter entries older than retention (their records are gone)."""
        cutoff = (time.time() if now is None else now) - self.retention
        pipe = self.r.pipeline()
        pipe.zremrangebyscore("dm:jobs", "-inf", cutoff)
        pipe.zremrangebyscore("dm:dead", "-inf", cutoff)
        return int(sum(pipe.execute()))

    # --- metrics the web app's /metrics reads (kept in Redis: workers may be on other hosts) --
    def observe_edit(self, seconds: float) -> None:
        """An edit call's latency: for /metrics (a cumulative histogram) and for the dashboard's
        chart (per day: each bucket's count, the count and the sum)."""
        day = f"dm:edits:{day_key()}"
        pipe = self.r.pipeline()
        for le in EDIT_BUCKETS:
            if seconds <= le:
                pipe.hincrby("dm:metrics:edit_seconds", str(le), 1)
                pipe.hincrby(day, str(le), 1)
        pipe.hincrby("dm:metrics:edit_seconds", "+Inf", 1)
        pipe.hincrbyfloat("dm:metrics:edit_seconds", "sum", seconds)
        pipe.hincrby(day, "+Inf", 1)
        pipe.hincrbyfloat(day, "sum", seconds)
        pipe.expire(day, SERIES_DAYS * 86400)
        pipe.execute()

    def count_failure(self, reason: str) -> None:
        day = f"dm:failures:{day_key()}"
        pipe = self.r.pipeline()
        pipe.hincrby(day, reason[:120], 1)
        pipe.expire(day, FAILURE_DAYS * 86400)
        pipe.execute()

    def series(self, days: int) -> list[dict[str, Any]]:
        """The dashboard's charts: per day, oldest first, the spend, edit latencies and failures."""
        today = time.time()
        keys = [day_key(today - 86400 * n) for n in range(days - 1, -1, -1)]
        pipe = self.r.pipeline()
        for day in keys:
            pipe.get(f"dm:spend:{day}")
            pipe.hgetall(f"dm:edits:{day}")
            pipe.hgetall(f"dm:failures:{day}")
        raw = pipe.execute()
        out = []
        for i, day in enumerate(keys):
            spend, edits, failures = raw[3 * i:3 * i + 3]
            out.append({"day": day, "spend": float(spend or 0),
                        "edits": {_text(k): float(v) for k, v in edits.items()},
                        "failures": {_text(k): int(v) for k, v in failures.items()}})
        return out

    def add_spend(self, usd: float) -> None:
        if usd:
            self.r.incrbyfloat("dm:metrics:spend_usd_total", usd)

    def metrics(self) -> dict[str, Any]:
        pipe = self.r.pipeline()
        pipe.hgetall("dm:metrics:jobs")
        pipe.hgetall("dm:metrics:edit_seconds")
        pipe.get("dm:metrics:spend_usd_total")
        pipe.llen("deskmark")
        pipe.zcard("dm:dead")
        pipe.exists("dm:heartbeat:worker")
        jobs, edits, spend, depth, dead, alive = pipe.execute()
        return {"jobs": {_text(k): int(v) for k, v in jobs.items()},
                "edit_seconds": {_text(k): float(v) for k, v in edits.items()},
                "spend_usd_total": float(spend or 0), "queue_depth": int(depth),
                "dead_letters": int(dead), "worker_up": bool(alive)}

    def count_edit(self, job_id: str, started: bool) -> None:
        """Edit calls under way for the job: one that is still counted when the job starts
        again was cut off with its worker, and may have been billed."""
        self._count(job_id, "edits_in_flight", 1 if started else -1)

    def count_attempt(self, job_id: str) -> int:
        return self._count(job_id, "attempts", 1)

    def jobs(self, ids: list[str]) -> list[JobRecord]:
        pipe = self.r.pipeline()
        for job_id in ids:
            pipe.hgetall(f"dm:job:{job_id}")
        return [cast(JobRecord, {_text(k): _decode(v) for k, v in raw.items()})
                for raw in pipe.execute() if raw]

    def recent_jobs(self, limit: int = 50, state: str | None = None,
                    vendor: str | None = None) -> list[JobRecord]:
        """The most recently updated jobs, newest first, optionally filtered."""
        ids = [_text(i) for i in self.r.zrevrange("dm:jobs", 0, max(limit, 500) - 1)]
        found = [j for j in self.jobs(ids) if j.get("kind") != "event"
                 and (not state or j.get("state") == state)
                 and (not vendor or j.get("vendor") == vendor)]
        return found[:limit]

    def claim_review(self, job_id: str, decision: dict[str, Any]) -> dict[str, Any]:
        """Record the first decision on a job; return whichever decision holds."""
        pipe = self.r.pipeline()
        pipe.hsetnx(f"dm:job:{job_id}", "review", _encode(decision))
        pipe.expire(f"dm:job:{job_id}", self.retention)
        pipe.execute()
        current: dict[str, Any] = self.job(job_id)["review"]
        return current

    # --- dead letters ---------------------------------------------------------------------------
    def bury(self, job_id: str) -> None:
        self.r.zadd("dm:dead", {job_id: time.time()})

    def unbury(self, job_id: str) -> None:
        self.r.zrem("dm:dead", job_id)

    def dead_ids(self, limit: int = 1000) -> list[str]:
        return [_text(i) for i in self.r.zrange("dm:dead", 0, limit - 1)]

    def bury_event(self, event: dict[str, Any], reason: str, error: dict[str, Any] | None) -> str:
        """Keep an event whose ticket could not be read, so `deskmark replay` can retry it."""
        event_id = "ev-" + uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(event, sort_keys=True)).hex[:16]
        self.create_job(event_id, {"kind": "event", "vendor": str(event.get("vendor")),
                                   "ticket_id": str(event.get("ticket_id")), "event": event})
        self.bury(event_id)
        self.update(event_id, {"state": "failed", "reason": reason, "last_error": error})
        detail = (error or {}).get("code") or (error or {}).get("status")
        self.count_failure(f"{event.get('vendor')} ticket unreadable" + (f": {detail}" if detail else ""))
        return event_id

    # --- the marked image ---------------------------------------------------------------------
    def shared_signer(self, make: Callable[[], str]) -> str:
        """The deployment's throwaway content-credentials signer (worker.credentials): made by
        the first worker that needs one, `make()`, and used by all. Kept without expiry."""
        found = self.r.get("dm:c2pa:signer")
        if found is None:
            self.r.set("dm:c2pa:signer", make().encode(), nx=True)
            found = self.r.get("dm:c2pa:signer")
        return _text(found)

    def signer_if_any(self) -> str | None:
        """The throwaway signer, if a worker has made one (nothing is made here)."""
        found = self.r.get("dm:c2pa:signer")
        return _text(found) if found is not None else None

    def save_marked(self, job_id: str, image: bytes, meta: Mark) -> None:
        pipe = self.r.pipeline()
        pipe.set(f"dm:job:{job_id}:marked", image, ex=self.retention)
        pipe.hset(f"dm:job:{job_id}", mapping={"mark": _encode(meta)})
        pipe.expire(f"dm:job:{job_id}", self.retention)
        pipe.execute()

    def marked(self, job_id: str) -> bytes | None:
        return self.image(job_id, "marked")

    def save_thumbnails(self, job_id: str, before: bytes, after: bytes, model: bytes = b"") -> None:
        pipe = self.r.pipeline()
        for name, data in (("before", before), ("after", after), ("model", model)):
            if data:
                pipe.set(f"dm:job:{job_id}:{name}", data, ex=self.retention)
        pipe.execute()

    def image(self, job_id: str, name: str) -> bytes | None:
        """`marked`, `before`, `after` or `model`."""
        value = self.r.get(f"dm:job:{job_id}:{name}")
        return value if isinstance(value, bytes) else None

    # --- paid results, reused for the same photo ---------------------------------------------
    def claim_result(self, key: str, job_id: str, seconds: int) -> str:
        """`pending:{job_id}` when this job is now to make the result; else who holds it
        (`pending:{job}` or `done:{job}`)."""
        return _text(self._claim_result(keys=[f"dm:result:{key}"],
                                        args=[f"pending:{job_id}", seconds]))

    def take_over_result(self, key: str, holder: str, job_id: str, seconds: int) -> bool:
        return bool(self._swap(keys=[f"dm:result:{key}"], args=[holder, f"pending:{job_id}", seconds]))

    def publish_result(self, key: str, job_id: str) -> None:
        """The job's marked image is stored: later jobs with the same key reuse it."""
        self.r.set(f"dm:result:{key}", f"done:{job_id}".encode(), ex=self.retention)

    # --- leases -------------------------------------------------------------------------------
    def acquire_lease(self, job_id: str, seconds: int) -> str | None:
        token = uuid.uuid4().hex
        if self.r.set(f"dm:lease:{job_id}", token.encode(), nx=True, ex=seconds):
            return token
        return None

    def release_lease(self, job_id: str, token: str) -> None:
        # Delete only our own lease: compare-and-delete in one step.
        self.r.eval(
            "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"
            " return 0",
            1,
            f"dm:lease:{job_id}",
            token,
        )

    def renew_leases(self, held: dict[str, str], seconds: int) -> dict[str, bool]:
        """Extend each lease that is still held with its token; say which were."""
        pipe = self.r.pipeline(transaction=False)
        for job_id, token in held.items():
            self._renew(keys=[f"dm:lease:{job_id}"], args=[token, seconds * 1000], client=pipe)
        return {job_id: bool(ok) for job_id, ok in zip(held, pipe.execute(), strict=True)}

    # --- unfinished jobs, watched for a dead worker (worker.recovery) --------------------------
    def watch(self, job_id: str, at: float) -> None:
        self.r.zadd("dm:watch", {job_id: at})

    def unwatch(self, job_id: str) -> None:
        self.r.zrem("dm:watch", job_id)

    def overdue(self, now: float, limit: int = 200) -> list[str]:
        return [_text(i) for i in self.r.zrangebyscore("dm:watch", "-inf", now, start=0, num=limit)]

    def claim_overdue(self, job_id: str, now: float, next_at: float) -> bool:
        return bool(self._claim_overdue(keys=["dm:watch", f"dm:lease:{job_id}"],
                                        args=[job_id, now, next_at]))

    # --- liveness -----------------------------------------------------------------------------
    def beat(self, worker_name: str) -> None:
        self.r.set("dm:heartbeat:worker", worker_name.encode(), ex=HEARTBEAT_TTL)

    def worker_seen(self) -> bool:
        return bool(self.r.exists("dm:heartbeat:worker"))


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(value: Any) -> Any:
    try:
        return json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return _text(value)
