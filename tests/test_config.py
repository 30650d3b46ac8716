"""Settings: defaults, and errors a deployer can act on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from integrations.config import ConfigError, Settings
from integrations.zendesk import SPEC as ZENDESK


def test_defaults_need_no_configuration() -> None:
    settings = Settings.from_env({}, dotenv=None)
    assert settings.edit_provider == "local"
    assert settings.edit_model == "gpt-image-2"
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.vendors_on() == []


def test_openai_key_switches_the_provider_and_empty_locate_model_turns_locating_off() -> None:
    settings = Settings.from_env({"OPENAI_API_KEY": "sk-x", "DESKMARK_LOCATE_MODEL": ""},
                                 dotenv=None)
    assert settings.edit_provider == "openai"
    assert settings.locate_model is None


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({
            "DESKMARK_EDIT_PROVIDER": "openai",
            "DESKMARK_EDIT_QUALITY": "ultra",
            "DESKMARK_EDIT_RATE_PER_MINUTE": "five",
            "ZENDESK_SUBDOMAIN": "acme",
            "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s",
            "SLACK_CHANNEL_ID": "#warranty",
        }, dotenv=None)
    text = str(caught.value)
    for expected in ("needs OPENAI_API_KEY", "DESKMARK_EDIT_QUALITY='ultra'",
                     "DESKMARK_EDIT_RATE_PER_MINUTE='five'", "ZENDESK_OAUTH_TOKEN",
                     "ZENDESK_WEBHOOK_SECRET", "channel ID"):
        assert expected in text


def test_zendesk_oauth_alone_is_enough_and_subdomain_builds_the_url() -> None:
    settings = Settings.from_env({"ZENDESK_SUBDOMAIN": "acme", "ZENDESK_OAUTH_TOKEN": "oauth-zz9",
                                  "ZENDESK_WEBHOOK_SECRET": "hook-zz9",
                                  "OPENAI_API_KEY": "sk-zz9"}, dotenv=None)
    assert settings.of(ZENDESK).base_url == "https://acme.zendesk.com"
    assert "zz9" not in repr(settings) + str(settings.describe())  # no secrets in logs


def test_dotenv_fills_in_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("DESKMARK_EDIT_QUALITY=high\nREDIS_URL=redis://from-dotenv:6379/0\n")
    settings = Settings.from_env({"REDIS_URL": "redis://from-env:6379/0"}, dotenv=dotenv)
    assert settings.edit_quality == "high"
    assert settings.redis_url == "redis://from-env:6379/0"


def test_worker_refuses_a_retired_model_and_names_the_replacement(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "deskmark.cli", "worker"],
        env={"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "sk-x", "DESKMARK_EDIT_MODEL": "gpt-image-1"},
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "shut this model down on 2026-10-23" in result.stderr
    assert "DESKMARK_EDIT_MODEL=gpt-image-2" in result.stderr
