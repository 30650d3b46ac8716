"""DESKMARK_EDIT_MODE=batch end to end: Zendesk webhooks → real Redis and workers → edits
through the loopback Batch API (one line of the first batch fails) → one note per photo,
billed at the Batch price, and nothing of deskmark's left in OpenAI's file store."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.zendesk import SandboxZendesk
from integrations.models import cost_usd
from tests.helpers import Stack, job_reaches, marked_notes, send_photo, settled, wait_for
from worker.limits import EditGate


@pytest.fixture
def batch_openai() -> Iterator[SandboxOpenAI]:
    fake = SandboxOpenAI(batch_delay=2.0).start()
    yield fake
    fake.stop()


def batch_stack(make_stack: Callable[..., Stack], fake: SandboxOpenAI, workers: int = 1) -> Stack:
    # One sync edit a minute: batched edits take no slot of it (OpenAI limits batches on its
    # own), so six photos still go out together.
    return make_stack(workers=workers, OPENAI_BASE_URL=fake.url, OPENAI_API_KEY=fake.api_key,
                      DESKMARK_EDIT_MODE="batch", DESKMARK_BATCH_COLLECT_SECONDS="3",
                      DESKMARK_EDIT_RATE_PER_MINUTE="1")


def test_six_photos_go_through_batches_and_each_gets_one_note_at_half_price(
        make_stack: Callable[..., Stack], zendesk: SandboxZendesk, batch_openai: SandboxOpenAI) -> None:
    stack = batch_stack(make_stack, batch_openai, workers=2)
    batch_openai.batches.fail_lines = 1  # one line of the first batch fails: it goes in the next
    tag = uuid.uuid4().hex[:6]
    sent = [send_photo(zendesk, stack.web.url, f"Batch {tag} #{n}", seed=1200 + n) for n in range(6)]
    for _, job_id in sent:
        job_reaches(stack.store, job_id, "done", timeout=120)
    settled(zendesk, stack.env["REDIS_URL"])
    assert [len(marked_notes(zendesk, ticket)) for ticket, _ in sent] == [1] * 6
    edits = batch_openai.calls
    assert len(edits) == 6  # one edit a photo: the failed line made none, its retry one
    assert all(call.get("batch") for call in edits)  # no edit outside a batch
    created = batch_openai.batches.created
    assert 2 <= len(created) <= 3  # the failed line went into a later batch
    assert {call["batch"] for call in edits} <= set(created)
    for ticket, job_id in sent:
        record = stack.store.job(job_id)
        mark = record.get("mark") or {}
        edit_cost = mark.get("edit_cost_usd") or 0.0
        assert edit_cost == pytest.approx(0.5 * (cost_usd("gpt-image-2", mark.get("usage")) or 0))
        assert edit_cost > 0 and mark.get("batch", "").startswith("batch_")
        [note] = marked_notes(zendesk, ticket)
        assert f"${mark['cost_usd']:.4f}" in note.html_body
        assert "edited through OpenAI's Batch API, at half the price" in note.html_body
    # The daily budget holds what the notes bill: each reservation settled at the Batch price.
    billed = sum(stack.store.job(job_id).get("cost_usd") or 0.0 for _, job_id in sent)
    assert billed > 0 and EditGate(stack.store, stack.settings).spent() == pytest.approx(billed, abs=1e-6)
    # Every photo, mask, input, output and error file was deleted.
    assert batch_openai.files.deleted and batch_openai.files.held() == []


def test_a_worker_killed_while_its_batch_is_open_applies_the_same_batch_after_a_restart(
        make_stack: Callable[..., Stack], zendesk: SandboxZendesk, batch_openai: SandboxOpenAI) -> None:
    batch_openai.batches.delay = 6.0  # open long enough to kill the worker under it
    stack = batch_stack(make_stack, batch_openai)
    tag = uuid.uuid4().hex[:6]
    sent = [send_photo(zendesk, stack.web.url, f"Killed {tag} #{n}", seed=1300 + n) for n in range(2)]
    wait_for(lambda: batch_openai.batches.created, timeout=60)
    [batch_id] = batch_openai.batches.created
    # The dashboard lists the open batch and its photos; a job page says what it waits on.
    page = wait_for(lambda: (lambda text: text if batch_id in text else None)(
        httpx.get(f"{stack.web.url}/", timeout=10).text), timeout=30)
    assert "Open batches" in page and len(sent) == 2 and all(job_id in page for _, job_id in sent)
    job_page = httpx.get(f"{stack.web.url}/jobs/{sent[0][1]}", timeout=10).text
    assert f"waiting for batch <code>{batch_id}</code> (submitted " in job_page
    assert "OpenAI answers within 24 h" in job_page
    worker = stack.workers[0]
    assert worker.process is not None
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait()
    stack.add_worker()
    for _, job_id in sent:
        job_reaches(stack.store, job_id, "done", timeout=120)
    settled(zendesk, stack.env["REDIS_URL"])
    assert [len(marked_notes(zendesk, ticket)) for ticket, _ in sent] == [1, 1]
    assert len(batch_openai.batches.created) == 1  # the same batch, not a second one
    assert len(batch_openai.calls) == 2  # no photo edited twice
    assert batch_openai.files.held() == []
