"""worker.batches in-process, against a real Redis and the loopback Batch API: parking,
the collect window, a crash between creating a batch and recording it, a failed line going
into the next batch, and the answer handed to the second half."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis

from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.photos import damaged_product
from integrations.config import Settings
from integrations.openai_batch import BatchEditor
from worker.batches import OPEN, WAITING, BatchQueue
from worker.marking import EditPlan, make_marker
from worker.store import Store


@pytest.fixture
def setup(redis_url: str) -> Iterator[tuple[BatchQueue, SandboxOpenAI, Settings]]:
    url = redis_url.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(url).flushdb()
    fake = SandboxOpenAI(batch_delay=0.3).start()
    settings = Settings.from_env({"REDIS_URL": url, "OPENAI_API_KEY": fake.api_key, "OPENAI_BASE_URL": fake.url,
                                  "DESKMARK_EDIT_MODE": "batch", "DESKMARK_BATCH_COLLECT_SECONDS": "60"},
                                 dotenv=None)
    store = Store.from_url(url)
    queue = BatchQueue(store, BatchEditor(settings), settings.batch_collect_seconds)
    yield queue, fake, settings
    store.r.close()
    fake.stop()


def park(queue: BatchQueue, settings: Settings, job_id: str, seed: int, language: str = "en") -> bytes:
    photo = damaged_product(640, 480, seed=seed)
    plan = make_marker(settings).ask(photo, "Cracked", "It came cracked.", language=language)
    assert isinstance(plan, EditPlan)
    queue.store.create_job(job_id, {"vendor": "zendesk", "ticket_id": "1", "filename": f"{job_id}.jpg"})
    queue.park(job_id, plan, photo)
    return photo


def until_answered(queue: BatchQueue, requeued: list[str], count: int, now: float) -> None:
    deadline = time.monotonic() + 20
    while len(requeued) < count:
        assert time.monotonic() < deadline
        time.sleep(0.1)
        queue.tick(requeued.append, lambda *args: None, now=now)
        now += 60  # every look is due


def test_parked_jobs_wait_for_the_window_then_go_in_one_batch_and_come_back_answered(
        setup: tuple[BatchQueue, SandboxOpenAI, Settings]) -> None:
    queue, fake, settings = setup
    languages = {"dm-b0": "en", "dm-b1": "ko", "dm-b2": "ar"}
    originals = {job: park(queue, settings, job, 70 + n, languages[job]) for n, job in enumerate(languages)}
    assert queue.r.zcard(WAITING) == 3 and queue.store.job("dm-b0")["state"] == "waiting"
    requeued: list[str] = []
    queue.tick(requeued.append, lambda *args: None)  # within the window: nothing is sent
    assert fake.batches.created == [] and queue.r.zcard(WAITING) == 3
    fake.batches.fail_lines = 1
    now = time.time() + 61
    queue.tick(requeued.append, lambda *args: None, now=now)
    assert len(fake.batches.created) == 1 and queue.r.zcard(WAITING) == 0
    assert [b["state"] for b in queue.open_batches()] == ["open"]
    until_answered(queue, requeued, 2, now)
    assert len(requeued) == 2 and queue.r.zcard(WAITING) == 1  # the failed line waits for the next
    [again] = [v.decode() if isinstance(v, bytes) else str(v) for v in queue.r.zrange(WAITING, 0, -1)]
    assert again not in requeued and queue.r.scard(OPEN) == 0
    for job_id in requeued:
        answered = queue.answer_for(job_id)
        assert answered is not None
        plan, original, result, reserved = answered
        assert original == originals[job_id] and result.image and result.cost_usd
        assert reserved is None and plan.found is not None and plan.found.boxes  # no gate here
        assert plan.language == languages[job_id]  # the label is drawn in the job's language's font
        marked = make_marker(settings).answer(plan, original, result, 0.0)
        assert marked.meta["marks"]
        queue.finish(job_id)
    assert queue.answer_for(again) is None  # not answered yet
    # The next window sends it again, alone.
    until_answered(queue, requeued, 3, now + 120)
    assert requeued[-1] == again and len(fake.batches.created) == 2
    queue.finish(again)
    assert fake.files.held() == []


def test_a_batch_created_before_a_crash_is_found_again_not_sent_twice(
        setup: tuple[BatchQueue, SandboxOpenAI, Settings]) -> None:
    queue, fake, settings = setup
    park(queue, settings, "dm-c0", 80)
    # What a worker killed between creating the batch and recording it leaves: the batch
    # recorded as being submitted, and created at OpenAI under deskmark's id.
    jobs = ["dm-c0"]
    queue.r.zrem(WAITING, *jobs)
    queue.r.sadd(OPEN, "local-crash")
    queue.r.hset("dm:batch:local-crash", mapping={"state": "submitting", "jobs": json.dumps(jobs)})
    line = json.loads(queue.r.hget("dm:job:dm-c0:batch", "line") or b"{}")
    queue.editor.submit("local-crash", [line])
    requeued: list[str] = []
    until_answered(queue, requeued, 1, time.time())
    assert requeued == ["dm-c0"] and len(fake.batches.created) == 1  # found, not sent again
    queue.finish("dm-c0")
    assert fake.files.held() == []


def test_the_lines_of_an_expired_batch_go_into_the_next_one(setup: tuple[BatchQueue, SandboxOpenAI, Settings]) -> None:
    queue, fake, settings = setup
    park(queue, settings, "dm-e0", 90)
    fake.batches.expire_next = 1
    requeued: list[str] = []
    now = time.time() + 61
    queue.tick(requeued.append, lambda *args: None, now=now)
    assert len(fake.batches.created) == 1
    deadline = time.monotonic() + 20
    while queue.r.zcard(WAITING) == 0:  # until the expired batch is seen and its line put back
        assert time.monotonic() < deadline
        time.sleep(0.1)
        now += 60
        queue.tick(requeued.append, lambda *args: None, now=now)
    assert requeued == [] and queue.r.scard(OPEN) == 0
    assert "did not answer it" in str(queue.store.job("dm-e0").get("reason"))
    until_answered(queue, requeued, 1, now + 120)  # the next batch answers it
    assert requeued == ["dm-e0"] and len(fake.batches.created) == 2
    queue.finish("dm-e0")
    assert fake.files.held() == []


def test_a_line_openai_refuses_is_given_up_at_once_and_its_files_deleted(
        setup: tuple[BatchQueue, SandboxOpenAI, Settings]) -> None:
    queue, fake, settings = setup
    park(queue, settings, "dm-p0", 95)
    line = json.loads(queue.r.hget("dm:job:dm-p0:batch", "line") or b"{}")
    line["body"]["images"] = [{"file_id": "file-gone"}]  # OpenAI answers this line 400
    queue.r.hset("dm:job:dm-p0:batch", "line", json.dumps(line))
    given_up: list[tuple[str, str]] = []
    now = time.time() + 61
    deadline = time.monotonic() + 20
    while not given_up:
        assert time.monotonic() < deadline
        queue.tick(lambda job_id: None, lambda job_id, reason, error: given_up.append((job_id, reason)), now=now)
        time.sleep(0.1)
        now += 60
    [(job_id, reason)] = given_up
    assert job_id == "dm-p0" and "its batch edit failed (once)" in reason and "Invalid image" in reason
    assert queue.r.zcard(WAITING) == 0 and queue.r.scard(OPEN) == 0
    assert fake.files.held() == []  # its photo and mask went with it, and the batch's files
