"""The loopback OpenAI's Files and Batch APIs, driven by the official SDK as deskmark's batch
mode will drive them: uploads by purpose, JSON edit lines by file id, a line that fails, the
output and error files, an expired batch, and a store left empty."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator

import openai
import pytest
from PIL import Image

from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.photos import damaged_product
from integrations.config import Settings
from integrations.errors import RetryableError
from integrations.models import cost_usd
from integrations.openai_batch import ENDED, BatchEditor
from worker import images
from worker.marking import EditPlan, make_marker


@pytest.fixture
def batch_fake() -> Iterator[SandboxOpenAI]:
    fake = SandboxOpenAI(batch_delay=0.5).start()
    yield fake
    fake.stop()


@pytest.fixture
def client(batch_fake: SandboxOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=batch_fake.api_key, base_url=batch_fake.url, max_retries=0) as sdk:
        yield sdk


def finished(client: openai.OpenAI, batch_id: str, timeout: float = 20) -> openai.types.Batch:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        time.sleep(0.1)
    raise AssertionError(f"batch {batch_id} did not finish")


def edit_line(custom_id: str, image: dict[str, str], mask: dict[str, str] | None = None) -> str:
    body = {"model": "gpt-image-2", "prompt": "Circle the damage in red.", "images": [image],
            "size": "1024x768", "quality": "low", **({"mask": mask} if mask else {})}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/images/edits", "body": body})


def test_a_batch_of_edits_by_file_id_answers_each_line_once(
        batch_fake: SandboxOpenAI, client: openai.OpenAI) -> None:
    photo = images.encode_png(images.load(damaged_product(1024, 768, seed=5)))
    mask = images.edit_mask((1024, 768), [(400, 300, 700, 500)])
    photo_file = client.files.create(file=("photo.png", photo, "image/png"), purpose="vision")
    mask_file = client.files.create(file=("mask.png", mask, "image/png"), purpose="vision")
    data_url = "data:image/png;base64," + base64.b64encode(photo).decode()
    lines = [edit_line("dm-1", {"file_id": photo_file.id}, {"file_id": mask_file.id}),
             edit_line("dm-2", {"file_id": photo_file.id}), edit_line("dm-3", {"image_url": data_url})]
    batch_fake.batches.fail_lines = 1  # the first line answered fails
    source = client.files.create(file=("in.jsonl", "\n".join(lines).encode(), "application/jsonl"),
                                 purpose="batch")
    created = client.batches.create(input_file_id=source.id, endpoint="/v1/images/edits",
                                    completion_window="24h", metadata={"deskmark": "test"})
    assert created.status == "validating"
    batch = finished(client, created.id)
    assert batch.status == "completed" and batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (3, 2, 1)
    assert batch.output_file_id and batch.error_file_id
    out = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    failed = [json.loads(x) for x in client.files.content(batch.error_file_id).text.splitlines()]
    assert sorted(e["custom_id"] for e in out) == ["dm-2", "dm-3"]
    assert [(e["custom_id"], e["error"]["code"]) for e in failed] == [("dm-1", "server_error")]
    for entry in out:
        answer = entry["response"]
        assert answer["status_code"] == 200 and answer["request_id"].startswith("req_")
        assert answer["body"]["usage"]["output_tokens"] > 0
        image = Image.open(io.BytesIO(base64.b64decode(answer["body"]["data"][0]["b64_json"])))
        assert image.size == (1024, 768)
    edits = [c for c in batch_fake.calls if c.get("batch") == created.id]
    assert sorted(c["custom_id"] for c in edits) == ["dm-2", "dm-3"]  # the failed line made no edit
    # A customer's photo cannot be read back from the store; batch files can.
    with pytest.raises(openai.BadRequestError, match="Not allowed to download"):
        client.files.content(photo_file.id)
    # Deleting every file leaves nothing.
    for file_id in (photo_file.id, mask_file.id, source.id, batch.output_file_id, batch.error_file_id):
        assert client.files.delete(file_id).deleted
    assert list(client.files.list()) == [] and batch_fake.files.held() == []


def test_an_expired_batch_answers_no_line_and_wrong_requests_are_refused(
        batch_fake: SandboxOpenAI, client: openai.OpenAI) -> None:
    photo = images.encode_png(images.load(damaged_product(1024, 768, seed=6)))
    photo_file = client.files.create(file=("photo.png", photo, "image/png"), purpose="vision")
    source = client.files.create(file=("in.jsonl", edit_line("dm-9", {"file_id": photo_file.id}).encode(),
                                       "application/jsonl"), purpose="batch")
    batch_fake.batches.expire_next = 1
    expired = finished(client, client.batches.create(input_file_id=source.id, endpoint="/v1/images/edits",
                                                     completion_window="24h").id)
    assert expired.status == "expired" and expired.output_file_id is None
    assert [c for c in batch_fake.calls if c.get("batch") == expired.id] == []
    with pytest.raises(openai.BadRequestError, match="purpose 'vision', not 'batch'"):
        client.batches.create(input_file_id=photo_file.id, endpoint="/v1/images/edits", completion_window="24h")
    with pytest.raises(openai.BadRequestError, match="must be JSONL"):
        client.files.create(file=("in.txt", b"{}", "text/plain"), purpose="batch")
    with pytest.raises(openai.NotFoundError):
        client.files.delete("file-doesnotexist")


def test_the_batch_editor_edits_plans_at_half_price_and_leaves_no_file(batch_fake: SandboxOpenAI) -> None:
    """deskmark's side: the first half's plans go out as lines with their images by file id,
    a crash between creating the batch and recording it is recovered by deskmark's own id,
    the answers come back billed at the Batch price and make the photo the second half makes,
    a failed line is an error to retry, and every file is deleted again."""
    settings = Settings.from_env({"OPENAI_API_KEY": batch_fake.api_key, "OPENAI_BASE_URL": batch_fake.url,
                                  "DESKMARK_EDIT_MODEL": "gpt-image-2", "DESKMARK_LOCATE_MODEL": "gpt-5.4"},
                                  dotenv=None)
    marker, editor = make_marker(settings), BatchEditor(settings)
    photos = {f"dm-{n}": damaged_product(800, 600, seed=40 + n) for n in range(3)}
    plans, uploaded, lines = {}, [], []
    for custom_id, photo in photos.items():
        plan = marker.ask(photo, "Cracked case", "It came cracked.")
        assert isinstance(plan, EditPlan) and plan.request.mask is not None
        image_id = editor.upload(f"{custom_id}-photo.jpg", plan.request.image, plan.request.mime)
        mask_id = editor.upload(f"{custom_id}-mask.png", plan.request.mask, "image/png")
        uploaded += [image_id, mask_id]
        plans[custom_id] = plan
        lines.append(editor.line(custom_id, plan.request, image_id, mask_id))
    batch_fake.batches.fail_lines = 1
    input_id, batch_id = editor.submit("local-7", lines)
    assert editor.find("local-7") == batch_id and editor.find("local-8") is None
    deadline = time.monotonic() + 20
    while (batch := editor.look(batch_id)).status not in ENDED:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    answers = editor.answers(batch, list(photos))
    assert len(answers.results) == 2 and len(answers.errors) == 1 and answers.unanswered == []
    [(failed_id, error)] = answers.errors.items()
    assert isinstance(error, RetryableError) and error.code == "server_error"
    for custom_id, result in answers.results.items():
        assert result.cost_usd == pytest.approx(0.5 * (cost_usd("gpt-image-2", result.usage) or 0))
        assert result.cost_usd and result.cost_usd > 0
        marked = marker.answer(plans[custom_id], photos[custom_id], result, 0.0)
        assert marked.meta["marks"] and all(m["drawn_by"] == "model" for m in marked.meta["marks"])
    assert failed_id not in answers.results
    editor.delete(*uploaded, input_id, batch.output_file_id or "", batch.error_file_id or "")
    assert batch_fake.files.held() == []


def test_the_sweep_deletes_deskmarks_old_files_but_not_what_an_open_batch_needs(
        batch_fake: SandboxOpenAI, client: openai.OpenAI) -> None:
    settings = Settings.from_env({"OPENAI_API_KEY": batch_fake.api_key, "OPENAI_BASE_URL": batch_fake.url},
                                 dotenv=None)
    editor = BatchEditor(settings)
    left = editor.upload("dm-1-photo.png", b"\x89PNG left by a crash", "image/png")
    needed = editor.upload("dm-2-photo.png", b"\x89PNG in an open batch", "image/png")
    theirs = client.files.create(file=("someone-elses.png", b"\x89PNG", "image/png"), purpose="vision").id
    assert editor.sweep(keep={needed}) == []  # nothing is an hour old yet
    assert editor.sweep(keep={needed}, now=time.time() + 7200) == [left]
    assert {f.id for f in batch_fake.files.held()} == {needed, theirs}
    editor.delete(needed, needed)  # twice: the second finds it gone, and that is fine
    client.files.delete(theirs)
    assert batch_fake.files.held() == []
