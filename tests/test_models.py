"""The model table: shut-down models refused with a replacement, Images 2.5 and 2.6 known and
priced, and no model the table cannot price escaping the daily budget."""

from __future__ import annotations

from datetime import date

import pytest

from integrations.config import ConfigError, Settings
from integrations.models import (
    MODELS,
    TYPICAL_SIZE,
    ceiling,
    cost_usd,
    estimate_usd,
    input_image_tokens,
    lookup,
    output_tokens,
    prices_of,
    request_size,
    retirement_problem,
    retirement_warning,
)
from worker.notes import money

USAGE = {"input_tokens": 1400, "output_tokens": 2000,
         "input_tokens_details": {"text_tokens": 400, "image_tokens": 1000}}
TODAY = date(2026, 12, 3)


@pytest.mark.parametrize("name", ["gpt-image-1.5", "gpt-image-1-mini", "chatgpt-image-latest"])
def test_the_models_shut_down_on_december_1_are_refused_with_the_replacement(name: str) -> None:
    problem = retirement_problem(name, TODAY)
    assert problem is not None
    assert "shut this model down on 2026-12-01" in problem and "DESKMARK_EDIT_MODEL=gpt-image-2" in problem
    assert retirement_problem(name, date(2026, 11, 30)) is None  # the day before: a warning
    assert "scheduled for shutdown on 2026-12-01" in (retirement_warning(name, date(2026, 11, 30)) or "")


@pytest.mark.parametrize("name", ["gpt-image-2.5-flare", "gpt-image-2.5-sunburst", "gpt-image-2.6-flare",
                                  "gpt-image-2.6-sunburst", "gpt-image-2.6-flare-2026-11-04"])
def test_images_2_5_and_2_6_are_known_priced_and_take_the_new_qualities(name: str) -> None:
    model = lookup(name)
    assert model is not None and model.prices == (5.0, 8.0, 30.0)
    assert {"xhigh", "max"} <= set(model.qualities)
    assert retirement_problem(name, TODAY) is None and retirement_warning(name, TODAY) is None
    assert request_size(name, 4000, 3000) == request_size("gpt-image-2", 4000, 3000)
    assert cost_usd(name, USAGE) == pytest.approx((400 * 5 + 1000 * 8 + 2000 * 30) / 1e6)
    assert money(0.07, name) == "cost $0.0700"


def test_a_model_without_a_price_is_counted_at_the_highest_never_at_zero() -> None:
    assert ceiling() == (5.0, 8.0, 32.0)  # gpt-image-1.5's image output was the dearest
    for name in ("gpt-image-2.7-nova", "someone-elses-image-model"):
        prices, known = prices_of(name)
        assert prices == ceiling() and not known
        charged = cost_usd(name, USAGE)
        assert charged is not None and charged >= (cost_usd("gpt-image-2", USAGE) or 0) > 0
        reserved = estimate_usd(name, TYPICAL_SIZE, "medium", None)
        assert reserved >= estimate_usd("gpt-image-2", TYPICAL_SIZE, "medium", None) > 0
        assert "at the highest image-model price ($5 / $8 / $32" in (retirement_warning(name, TODAY) or "")
        assert money(charged, name).startswith("cost at most $")
    # Without a usage there is nothing to price.
    assert cost_usd("gpt-image-2.7-nova", None) is None
    # The qualities above high are reserved above high.
    high = estimate_usd("gpt-image-2.6-sunburst", TYPICAL_SIZE, "high", None)
    assert high < estimate_usd("gpt-image-2.6-sunburst", TYPICAL_SIZE, "xhigh", None) < estimate_usd(
        "gpt-image-2.6-sunburst", TYPICAL_SIZE, "max", None)


def test_every_known_model_has_a_shutdown_with_a_replacement_or_a_price() -> None:
    assert MODELS
    for model in MODELS.values():
        assert model.prices is not None or (model.shutdown is not None and model.replacement in MODELS)


def test_the_quality_must_be_one_the_model_takes() -> None:
    env = {"OPENAI_API_KEY": "sk-test", "DESKMARK_EDIT_QUALITY": "xhigh"}
    assert Settings.from_env({**env, "DESKMARK_EDIT_MODEL": "gpt-image-2.6-flare"}, dotenv=None).edit_quality == "xhigh"
    with pytest.raises(ConfigError, match="gpt-image-2 takes low, medium, high, auto"):
        Settings.from_env(env, dotenv=None)


@pytest.mark.parametrize(("size", "dollars"), [
    ((1024, 1024), (0.006, 0.053, 0.211)),
    ((1024, 1536), (0.005, 0.041, 0.165)),
    ((1536, 1024), (0.005, 0.041, 0.165)),
])
def test_gpt_image_2_output_tokens_give_openais_published_examples(
        size: tuple[int, int], dollars: tuple[float, float, float]) -> None:
    """OpenAI's image generation guide prices these sizes at low / medium / high; the formula
    deskmark reserves with must give the same dollars at $30 per 1M output tokens."""
    for quality, published in zip(("low", "medium", "high"), dollars, strict=True):
        assert round(output_tokens("gpt-image-2", quality, size) * 30 / 1e6, 3) == published


def test_what_a_photo_is_reserved_at_follows_its_size_and_quality() -> None:
    # Quality dominates (a factor squared); size counts weakly (a 2 MP offset).
    low, medium = (output_tokens("gpt-image-2", q, TYPICAL_SIZE) for q in ("low", "medium"))
    assert 8 < medium / low < 10
    assert output_tokens("gpt-image-2", "low", (1536, 1152)) > output_tokens("gpt-image-2", "low", (1024, 768))
    assert output_tokens("gpt-image-2.6-flare", "max", TYPICAL_SIZE) == 4 * output_tokens(
        "gpt-image-2.6-flare", "high", TYPICAL_SIZE)
    # Input images: 32 px patches, small ones magnified to 1024 px, at most 1,536.
    assert input_image_tokens((1024, 768)) == 32 * 24
    assert input_image_tokens((512, 384)) == 32 * 24
    assert input_image_tokens((1536, 1152)) == input_image_tokens((4000, 3000)) <= 1536
    assert estimate_usd("gpt-image-2", (1536, 1152), "low", "gpt-5.4") > estimate_usd(
        "gpt-image-2", TYPICAL_SIZE, "low", "gpt-5.4") > estimate_usd("gpt-image-2", TYPICAL_SIZE, "low", None)
