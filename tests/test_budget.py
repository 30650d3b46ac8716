"""No invented circles on real tickets: past the daily budget deskmark locates and draws its own
mark while the cheaper locate call still fits, and past that sends the photo unmarked; without
a model, real tickets' photos go unmarked. In-process, against the loopback OpenAI and a real
Redis; tests/test_exactly_once.py runs the budget through real workers."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import pytest
import redis
from PIL import Image, ImageChops

from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.photos import damaged_product
from integrations.config import Settings
from integrations.models import TYPICAL_SIZE, estimate_usd, locate_estimate_usd
from worker.limits import EditGate
from worker.marking import Marked, make_marker
from worker.notes import note_html
from worker.store import Store


@pytest.fixture
def budget_env(deskmark_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """deskmark's configuration on a Redis database of this module's own (no worker reads it)."""
    url = deskmark_env["REDIS_URL"].rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(url).flushdb()
    yield {**deskmark_env, "REDIS_URL": url}


def mark_with_budget(env: dict[str, str], budget: float, subject: str) -> tuple[Marked, float]:
    settings = Settings.from_env({**env, "DESKMARK_DAILY_BUDGET_USD": str(budget),
                                  "DESKMARK_EDIT_RATE_PER_MINUTE": "0"}, dotenv=None)
    store = Store.from_url(settings.redis_url)
    try:
        gate = EditGate(store, settings)
        marked = make_marker(settings, gate).mark(damaged_product(1600, 1200, seed=71), subject, "Cracked.")
        return marked, gate.spent()
    finally:
        store.r.close()


def red_added(marked: Marked) -> int:
    """Clearly red pixels in the delivered photo that the customer's photo does not have."""
    delivered = Image.open(io.BytesIO(marked.image)).convert("RGB")
    customer = Image.open(io.BytesIO(damaged_product(1600, 1200, seed=71))).convert("RGB").resize(delivered.size)

    def red(image: Image.Image) -> Image.Image:
        r, g, b = image.split()
        return ImageChops.subtract(r, ImageChops.lighter(g, b)).point(lambda v: 255 if v >= 100 else 0)

    return ImageChops.subtract(red(delivered), red(customer)).histogram()[255]


def test_past_the_edit_deskmark_locates_and_draws_its_own_mark(budget_env: dict[str, str],
                                                                openai_fake: SandboxOpenAI) -> None:
    locate = locate_estimate_usd("gpt-5.4", TYPICAL_SIZE)
    budget = locate + 0.001  # the locate call fits, an edit does not
    assert budget < estimate_usd("gpt-image-2", TYPICAL_SIZE, "low", "gpt-5.4")
    subject = f"Budget {uuid.uuid4().hex[:8]}"
    marked, spent = mark_with_budget(budget_env, budget, subject)
    assert [c for c in openai_fake.calls if subject in c["prompt"]] == []  # no edit
    assert len([r for r in openai_fake.located if subject in r["text"]]) == 1  # one locate
    meta = marked.meta
    assert meta["budget_reached"] and meta["marked"]
    [item] = meta["marks"]
    assert item["drawn_by"] == "deskmark" and "no edit model was called" in (item["why"] or "")
    assert red_added(marked) > 2000  # deskmark's ring and label, on the customer's photo
    assert 0 < spent <= budget and meta["cost_usd"] == pytest.approx(spent, abs=1e-6)
    html = note_html("IMG_1.jpg", meta, "dm-1")
    assert "budget" in html and "deskmark drew the mark itself around the damage" in html
    assert "circled by deskmark: the daily AI budget was reached" in html and "local annotator" not in html


def test_past_the_locate_call_the_photo_goes_unmarked_and_says_why(budget_env: dict[str, str],
                                                                    openai_fake: SandboxOpenAI) -> None:
    subject = f"Budget {uuid.uuid4().hex[:8]}"
    marked, spent = mark_with_budget(budget_env, 0.0001, subject)
    assert not [c for c in openai_fake.calls if subject in c["prompt"]]
    assert not [r for r in openai_fake.located if subject in r["text"]]
    assert spent == 0 and not marked.meta["marked"] and marked.meta["marks"] == []
    assert red_added(marked) == 0  # the customer's photo as it is: no circle guessed
    html = note_html("IMG_1.jpg", marked.meta, "dm-1")
    assert "This photo is not marked" in html and "the daily AI budget left no room for it" in html


@pytest.mark.parametrize(("guess", "marked"), [(False, False), (True, True)])
def test_without_a_model_only_the_demo_and_annotate_guess(guess: bool, marked: bool) -> None:
    settings = Settings.from_env({"DESKMARK_DEMO": "1"} if guess else {}, dotenv=None)
    assert settings.edit_provider == "local" and settings.demo is guess
    result = make_marker(settings).mark(damaged_product(1600, 1200, seed=72))
    assert result.meta["marked"] is marked
    html = note_html("IMG_2.jpg", result.meta, "dm-2")
    if guess:
        assert "heuristic guess" in html and "no AI model was used" in html
    else:
        assert result.meta.get("no_model") and "This photo is not marked" in html
        assert "OPENAI_API_KEY is unset" in html and "Model: none" in html
    # `deskmark annotate` asks for the guess whatever the settings say.
    assert make_marker(Settings.from_env({}, dotenv=None), guess=True).mark(damaged_product(seed=72)).meta["marked"]
