"""`deskmark check` against the loopback vendors."""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from deskmark.sandbox.zendesk import SandboxZendesk
from tests.helpers import check

pytestmark = pytest.mark.e2e  # runs deskmark's own commands as processes


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


def test_the_models_shut_down_on_december_1_fail_and_images_2_6_is_priced(deskmark_env: dict[str, str],
                                                                            tmp_path: Path) -> None:
    for name in ("gpt-image-1.5", "gpt-image-1-mini", "chatgpt-image-latest"):
        result = check({**deskmark_env, "DESKMARK_EDIT_MODEL": name}, tmp_path)
        assert result.returncode == 1, result.stdout
        assert "openai         FAIL" in result.stdout
        assert "shut this model down on 2026-12-01" in result.stdout
        assert "DESKMARK_EDIT_MODEL=gpt-image-2" in result.stdout
    current = check({**deskmark_env, "DESKMARK_EDIT_MODEL": "gpt-image-2.6-flare"}, tmp_path)
    assert current.returncode == 0, current.stdout
    line = next(x for x in current.stdout.splitlines() if x.startswith("openai "))
    assert "editing with gpt-image-2.6-flare (low; $5 / $8 / $30 per 1M tokens; about $" in line
    assert "warn" not in line and "no price" not in current.stdout


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


def test_each_credential_says_what_it_is_and_how_long_it_lives(deskmark_env: dict[str, str],
                                                                 zendesk: SandboxZendesk,
                                                                 tmp_path: Path) -> None:
    result = check(deskmark_env, tmp_path)
    assert result.returncode == 0, result.stdout
    # The token the workers share (granted for 30 min, renewed 5 min before its end): this
    # run's earlier tests may have been granted it some minutes ago.
    found = re.search(r"zendesk +ok .*OAuth client \(ZENDESK_CLIENT_ID\): token valid for another "
                      r"(\d+) min, renewed automatically", result.stdout)
    assert found is not None and 5 <= int(found.group(1)) <= 30, result.stdout
    assert "helpscout      ok" in result.stdout and "token valid for another 48 h" in result.stdout
    assert "API key (FRESHDESK_API_KEY): does not expire" in result.stdout
    assert zendesk.client_secret not in result.stdout + result.stderr
    old = check(api_token(deskmark_env, zendesk.api_token), tmp_path)
    assert old.returncode == 0, old.stdout
    days = (date(2027, 4, 30) - datetime.now(UTC).date()).days
    assert f"API token (ZENDESK_API_TOKEN): Zendesk turns these off on 2027-04-30, in {days} days" in old.stdout
    assert "warning: create an OAuth client and set ZENDESK_CLIENT_ID" in old.stdout
    # A static OAuth token that ends: said, with the fix.
    zendesk.oauth_token = "static-oauth-token-for-check"
    zendesk.oauth_token_expires_at = time.time() + 20 * 60
    try:
        static = {k: v for k, v in api_token(deskmark_env, "").items() if not k.startswith("ZENDESK_API")}
        result = check({**static, "ZENDESK_OAUTH_TOKEN": zendesk.oauth_token}, tmp_path)
    finally:
        zendesk.oauth_token, zendesk.oauth_token_expires_at = None, None
    assert result.returncode == 0, result.stdout
    assert re.search(r"OAuth access token \(ZENDESK_OAUTH_TOKEN\): expires in (19|20) min, and cannot be "
                     r"renewed", result.stdout), result.stdout
    assert "deskmark cannot renew it: create an OAuth client" in result.stdout


def test_a_wrong_client_secret_fails_and_names_it(deskmark_env: dict[str, str], tmp_path: Path) -> None:
    result = check({**deskmark_env, "ZENDESK_CLIENT_SECRET": "not-the-secret"}, tmp_path)
    assert result.returncode == 1
    assert "zendesk        FAIL" in result.stdout and "invalid_client" in result.stdout
    assert "check ZENDESK_CLIENT_SECRET" in result.stdout
    assert "not-the-secret" not in result.stdout
