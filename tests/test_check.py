"""`deskmark check` against the loopback vendors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def check(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("OPENAI_", "DESKMARK_", "ZENDESK_", "FRESHDESK_", "SLACK_"))}
    return subprocess.run([sys.executable, "-m", "deskmark.cli", "check"], env={**clean, **env},
                          capture_output=True, text=True, timeout=60, cwd=cwd)


def test_check_passes_against_working_vendors_and_names_each(deskmark_env: dict[str, str],
                                                               tmp_path: Path) -> None:
    result = check(deskmark_env, tmp_path)
    assert result.returncode == 0, result.stdout
    for line in ("configuration  ok", "redis          ok", "openai         ok", "zendesk        ok",
                 "freshdesk      ok   ", "slack          ok   signed in to Sandbox", "all checks passed"):
        assert line in result.stdout
    assert "signed in as user 900001" in result.stdout


def test_a_retired_model_fails_and_names_the_replacement(deskmark_env: dict[str, str],
                                                           tmp_path: Path) -> None:
    result = check({**deskmark_env, "DESKMARK_EDIT_MODEL": "gpt-image-1"}, tmp_path)
    assert result.returncode == 1
    assert "openai         FAIL" in result.stdout
    assert "shut this model down on 2026-10-23" in result.stdout
    assert "DESKMARK_EDIT_MODEL=gpt-image-2" in result.stdout


def api_token(env: dict[str, str], token: str) -> dict[str, str]:
    """`env` with a Zendesk API token instead of the OAuth client."""
    env = {k: v for k, v in env.items() if not k.startswith("ZENDESK_CLIENT_")}
    return {**env, "ZENDESK_EMAIL": "deskmark@example.com", "ZENDESK_API_TOKEN": token}


def test_a_wrong_zendesk_token_fails_and_says_what_to_fix(deskmark_env: dict[str, str],
                                                            tmp_path: Path) -> None:
    result = check(api_token(deskmark_env, "wrong"), tmp_path)
    assert result.returncode == 1
    assert "zendesk        FAIL" in result.stdout and "401" in result.stdout
    assert "ZENDESK_EMAIL / ZENDESK_API_TOKEN" in result.stdout


def test_a_wrong_openai_key_and_missing_settings_fail(deskmark_env: dict[str, str],
                                                       tmp_path: Path) -> None:
    result = check({**deskmark_env, "OPENAI_API_KEY": "sk-wrong"}, tmp_path)
    assert result.returncode == 1 and "check OPENAI_API_KEY" in result.stdout
    incomplete = check({"ZENDESK_SUBDOMAIN": "acme"}, tmp_path)
    assert incomplete.returncode == 1
    assert "configuration  FAIL" in incomplete.stdout and "ZENDESK_WEBHOOK_SECRET" in incomplete.stdout
