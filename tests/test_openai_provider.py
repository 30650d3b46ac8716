"""The OpenAI edit provider on the real SDK, against the loopback OpenAI."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.photos import damaged_product
from integrations.config import Settings
from integrations.errors import PermanentError, RateLimited
from integrations.models import cost_usd, request_size
from integrations.openai_images import EditRequest, OpenAIEditor, OpenAILocator, prime_response_parsing
from worker import images


def editor_for(openai_fake: SandboxOpenAI, model: str = "gpt-image-2") -> OpenAIEditor:
    return OpenAIEditor(Settings.from_env({
        "OPENAI_API_KEY": openai_fake.api_key, "OPENAI_BASE_URL": openai_fake.url,
        "DESKMARK_EDIT_MODEL": model}, dotenv=None))


def request(model: str = "gpt-image-2") -> EditRequest:
    prepared = images.prepare(damaged_product(800, 600), lambda w, h: request_size(model, w, h))
    return EditRequest(prepared.request_image, prepared.request_size, "circle the damage")


def test_the_fake_refuses_parts_without_an_image_mime_type(openai_fake: SandboxOpenAI) -> None:
    """What a naive client sends (bytes without filename → octet-stream) gets the real 400."""
    response = httpx.post(
        f"{openai_fake.url}/images/edits",
        headers={"Authorization": f"Bearer {openai_fake.api_key}"},
        data={"model": "gpt-image-2", "prompt": "x"},
        files={"image": ("upload", b"\x89PNG...", "application/octet-stream")},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsupported_file_mimetype"


def test_edit_sends_a_png_part_and_reads_usage_and_request_id(openai_fake: SandboxOpenAI) -> None:
    result = editor_for(openai_fake).edit(request())
    call = openai_fake.calls[-1]
    assert call["parts"] == [("photo.jpg", "image/jpeg")]
    assert call["model"] == "gpt-image-2" and call["quality"] == "low"  # the default: only strokes are kept
    assert call["input_fidelity"] is None  # gpt-image-2 takes no input_fidelity
    assert images.sniff(result.image) == "PNG"
    assert result.request_id and result.request_id.startswith("req_")
    assert result.usage["output_tokens"] > 0
    assert result.cost_usd == pytest.approx(cost_usd("gpt-image-2", result.usage))
    # text tokens x $5 + image tokens x $8 + output tokens x $30, per million
    u = result.usage
    expected = (u["input_tokens_details"]["text_tokens"] * 5
                + u["input_tokens_details"]["image_tokens"] * 8 + u["output_tokens"] * 30) / 1e6
    assert result.cost_usd == pytest.approx(expected)


def test_the_prompt_is_cut_to_the_models_limit(openai_fake: SandboxOpenAI) -> None:
    long = EditRequest(request().image, request().size, "x" * 40_000)
    editor_for(openai_fake).edit(long)
    assert len(openai_fake.calls[-1]["prompt"]) == 32_000


def test_retired_model_is_a_permanent_error(openai_fake: SandboxOpenAI) -> None:
    with pytest.raises(PermanentError) as caught:
        editor_for(openai_fake, "gpt-image-1").edit(request("gpt-image-1"))
    assert caught.value.status == 404 and caught.value.code == "model_not_found"


def test_rate_limit_keeps_retry_after_and_quota_does_not_retry(openai_fake: SandboxOpenAI) -> None:
    body = {"error": {"message": "slow down", "type": "requests", "param": None,
                      "code": "rate_limit_exceeded"}}
    openai_fake.faults.add("POST", "/images/edits", 429, body, {"Retry-After": "2"})
    with pytest.raises(RateLimited) as limited:
        editor_for(openai_fake).edit(request())
    assert limited.value.retry_after == 2.0
    quota = {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota",
                       "param": None, "code": "insufficient_quota"}}
    openai_fake.faults.add("POST", "/images/edits", 429, quota)
    with pytest.raises(PermanentError) as exhausted:
        editor_for(openai_fake).edit(request())
    assert not isinstance(exhausted.value, RateLimited)
    assert exhausted.value.code == "insufficient_quota"


@pytest.mark.parametrize(("size", "expected"), [
    ((4000, 3000), (1024, 768)),  # deskmark's long edge (MAX_REQUEST_EDGE)
    ((3000, 4000), (768, 1024)),
    ((640, 480), (944, 704)),  # scaled up to the 655,360-pixel minimum
    ((6000, 1000), (1408, 480)),  # clamped to 3:1, then up to the minimum
])
def test_request_size_for_gpt_image_2(size: tuple[int, int], expected: tuple[int, int]) -> None:
    w, h = request_size("gpt-image-2", *size)
    assert (w, h) == expected
    assert w % 16 == 0 and h % 16 == 0 and w * h >= 655_360 and max(w, h) / min(w, h) <= 3


def test_request_size_for_classic_models_picks_the_nearest_aspect() -> None:
    assert request_size("gpt-image-1.5", 4000, 3000) == (1536, 1024)
    assert request_size("gpt-image-1.5", 3000, 4000) == (1024, 1536)
    assert request_size("gpt-image-1.5", 1000, 1000) == (1024, 1024)


def test_the_locate_parser_is_built_offline_before_the_first_answer(
    openai_fake: SandboxOpenAI, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The SDK builds its validators for a parsed Response on first use, in every thread that
    # arrives before they are cached; deskmark builds them once, without the network, at start.
    from openai import _models  # the SDK's cache of built validators (an lru_cache)

    cached: Any = _models._CachedTypeAdapter

    cached.cache_clear()
    prime_response_parsing.cache_clear()

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("priming must not touch the network")

    with monkeypatch.context() as offline:
        offline.setattr(socket, "create_connection", refuse)
        offline.setattr(socket.socket, "connect", refuse)
        prime_response_parsing()
    built = cached.cache_info().misses
    assert built > 0
    locator = OpenAILocator(Settings.from_env({
        "OPENAI_API_KEY": openai_fake.api_key, "OPENAI_BASE_URL": openai_fake.url}, dotenv=None))
    prepared = images.prepare(damaged_product(800, 600), lambda w, h: request_size("gpt-image-2", w, h))
    found = locator.locate(prepared.request_image, prepared.request_size, "cracked", "see photo")
    assert found.boxes and openai_fake.located
    assert cached.cache_info().misses == built  # the real answer built nothing new
