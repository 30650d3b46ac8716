"""The guides and `deskmark check` describe what the code does, in the code's own words."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deskmark.check import _helpdesks, _slack
from deskmark.sandbox.slack import SandboxSlack
from integrations.config import ConfigError, Settings
from integrations.registry import HELPDESKS
from integrations.slack.notifier import NOTIFICATION_ONLY
from worker.records import Mark

ROOT = Path(__file__).resolve().parent.parent


def words(text: str) -> str:
    """Markdown as a reader sees it: no emphasis marks, one space between words, lower case."""
    return " ".join(re.sub(r"[*_`]", "", text).split()).lower()


def slack_env(slack: SandboxSlack, approvers: str) -> dict[str, str]:
    return {"SLACK_BOT_TOKEN": slack.bot_token, "SLACK_SIGNING_SECRET": slack.signing_secret,
            "SLACK_CHANNEL_ID": slack.CHANNEL, "SLACK_API_URL": slack.url, "SLACK_APPROVER_IDS": approvers}


def test_the_slack_guide_and_check_say_what_a_review_without_approvers_is(slack: SandboxSlack) -> None:
    """The sentence is the code's (integrations.slack.notifier); what the code does with it,
    a post without buttons that no click decides, is tests/test_slack.py's
    test_without_approvers_the_post_is_a_notification_and_no_click_decides."""
    guide = words((ROOT / "integrations" / "slack" / "SETUP.md").read_text())
    assert words(NOTIFICATION_ONLY) in guide
    assert "anyone in the channel" not in guide
    unset = _slack(Settings.from_env(slack_env(slack, ""), dotenv=None))
    assert unset.ok and NOTIFICATION_ONLY in unset.detail and "SLACK_APPROVER_IDS unset" in unset.detail
    two = _slack(Settings.from_env(slack_env(slack, "U0A,U0B"), dotenv=None))
    assert two.ok and "2 reviewers may approve or reject" in two.detail and NOTIFICATION_ONLY not in two.detail


def test_check_fails_when_no_helpdesk_is_configured() -> None:
    finding = _helpdesks(Settings.from_env({}, dotenv=None))
    assert not finding.ok
    assert finding.detail.startswith("no helpdesk is configured: deskmark would receive nothing")
    specs = list(HELPDESKS.values())
    assert specs and all(f"{spec.variables[0].split('_')[0]}_*" in finding.detail for spec in specs)
    one = _helpdesks(Settings.from_env({"FRESHDESK_DOMAIN": "acme", "FRESHDESK_API_KEY": "k",
                                        "FRESHDESK_WEBHOOK_SECRET": "s"}, dotenv=None))
    assert one.ok and one.detail == "Freshdesk"


@pytest.mark.parametrize(("variable", "pasted", "api"), [
    ("ZENDESK_SUBDOMAIN", "https://acme.zendesk.com", "https://acme.zendesk.com"),
    ("ZENDESK_SUBDOMAIN", "https://acme.zendesk.com/agent/tickets/5", "https://acme.zendesk.com"),
    ("ZENDESK_SUBDOMAIN", "acme.zendesk.com", "https://acme.zendesk.com"),
    ("FRESHDESK_DOMAIN", "https://Acme-Support.freshdesk.com/", "https://acme-support.freshdesk.com"),
    ("GORGIAS_DOMAIN", "acme.gorgias.com", "https://acme.gorgias.com"),
])
def test_a_pasted_url_in_an_account_variable_is_read_as_its_account_and_said(
        variable: str, pasted: str, api: str) -> None:
    vendor = variable.split("_")[0]
    env = {variable: pasted, f"{vendor}_WEBHOOK_SECRET": "s", "ZENDESK_CLIENT_ID": "c",
           "ZENDESK_CLIENT_SECRET": "s", "FRESHDESK_API_KEY": "k", "GORGIAS_EMAIL": "a@b.c",
           "GORGIAS_API_KEY": "k"}
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith(vendor)}, dotenv=None)
    [own] = settings.helpdesks.values()
    assert own.base_url == api
    [said] = settings.corrections
    assert said.startswith(f"{variable}={pasted!r} read as") and said.endswith(f"the API is {api}")
    assert said in settings.warnings()


def test_an_account_name_as_written_is_not_corrected() -> None:
    settings = Settings.from_env({"ZENDESK_SUBDOMAIN": "acme", "ZENDESK_CLIENT_ID": "c",
                                  "ZENDESK_CLIENT_SECRET": "s", "ZENDESK_WEBHOOK_SECRET": "w"}, dotenv=None)
    assert settings.corrections == () and settings.helpdesk("zendesk").base_url == "https://acme.zendesk.com"  # type: ignore[union-attr]


def test_another_host_in_an_account_variable_fails_naming_the_url_it_would_have_built() -> None:
    with pytest.raises(ConfigError) as failed:
        Settings.from_env({"ZENDESK_SUBDOMAIN": "https://support.acme.com", "ZENDESK_CLIENT_ID": "c",
                           "ZENDESK_CLIENT_SECRET": "s", "ZENDESK_WEBHOOK_SECRET": "w"}, dotenv=None)
    [problem] = failed.value.problems
    assert "ZENDESK_SUBDOMAIN='https://support.acme.com'" in problem
    assert "https://https://support.acme.com.zendesk.com" in problem and "set ZENDESK_BASE_URL" in problem


def test_check_says_which_photos_this_installation_reads() -> None:
    from importlib.metadata import version

    from deskmark.check import _images

    finding = _images(Settings.from_env({}, dotenv=None))  # the dev install has the heic extra
    assert finding.ok and finding.detail == (f"JPEG, PNG, WebP, GIF and HEIC (pillow-heif {version('pillow-heif')}); "
                                             "labels in en")
    assert finding.warning is None  # the fonts and FriBiDi of deploy/apt-packages.txt are installed


def test_the_readmes_sample_note_is_what_the_code_writes() -> None:
    """The note on the README's first screen, for the photo and mark it describes."""
    from worker.notes import note_html, plain_text

    readme = (ROOT / "README.md").read_text()
    quoted = re.search(r"What an agent sees on the ticket.*?\n\n((?:>.*\n)+)", readme)
    assert quoted is not None
    shown = [" ".join(p.split()) for p in re.sub(r"(?m)^> ?", "", quoted.group(1)).split("\n\n")]
    mark: Mark = {"provider": "openai", "model": "gpt-image-2", "cost_usd": 0.0135, "edit_cost_usd": 0.0108,
            "request_id": None, "usage": {}, "edit_seconds": 30.0,
            "located": {"model": "gpt-5.4", "cost_usd": 0.0027,
                        "boxes": [{"label": "cracked screen", "box": [1, 1, 5, 5]}]},
            "labels": ["cracked screen"], "regions": [[1, 1, 5, 5]],
            "marks": [{"label": "cracked screen", "region": [1, 1, 5, 5], "drawn_by": "model", "why": "",
                       "coverage": 1.0}],
            "unlocated_mark": False, "marked": True,
            "signals": {"camera": "Apple iPhone 15", "taken": "2026-12-06T14:02:11", "taken_days_before": 0.8},
            "credentials": {"signer": "configured"}}
    written = [" ".join(p.split()) for p in plain_text(note_html("IMG_4032.jpg", mark, "dm-4f1c9a0e2b7d6c35"))
               .split("\n\n")]
    assert [words(p) for p in shown] == [words(p) for p in written]
