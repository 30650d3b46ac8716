"""`deskmark check`: is the configuration complete, and does every configured vendor accept it?

Each check makes one harmless call and says, when it fails, what to change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import openai
import redis

from integrations.config import ConfigError, Settings, masked_url
from integrations.errors import VendorError
from integrations.helpdesk import HelpdeskSpec
from integrations.models import TYPICAL_SIZE, estimate_usd, prices_of, retirement_problem, retirement_warning
from integrations.openai_images import make_client, translate
from integrations.registry import HELPDESKS
from integrations.slack.notifier import NOTIFICATION_ONLY, SlackNotifier
from integrations.tokens import LocalTokenCache, RedisTokenCache, TokenCache

__all__ = ["run_check", "Finding"]


@dataclass
class Finding:
    name: str
    ok: bool
    detail: str
    warning: str | None = None


def _redis(settings: Settings) -> Finding:
    try:
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3).ping()
    except redis.RedisError as exc:
        return Finding("redis", False, f"{masked_url(settings.redis_url)} unreachable "
                                       f"({exc}): start Redis or fix REDIS_URL")
    return Finding("redis", True, masked_url(settings.redis_url))


def _openai(settings: Settings) -> Finding:
    if settings.edit_provider != "openai":
        return Finding("openai", True, "off: no AI model (OPENAI_API_KEY unset)",
                       NO_MODEL_WARNING)
    problem = retirement_problem(settings.edit_model)
    if problem:
        return Finding("openai", False, problem)
    client = make_client(settings, timeout=15)
    try:
        available = {m.id for m in client.models.list()}
    except openai.APIError as exc:
        error = translate(exc)
        hint = ("check OPENAI_API_KEY" if error.status in (401, 403)
                else "check OPENAI_BASE_URL and the network")
        return Finding("openai", False, f"{error}: {hint}")
    warnings = [w for w in (retirement_warning(settings.edit_model),) if w]
    for name, model in (("DESKMARK_EDIT_MODEL", settings.edit_model),
                        ("DESKMARK_LOCATE_MODEL", settings.locate_model)):
        if model and model not in available:
            warnings.append(f"{name}={model} is not in this key's model list")
    locate = f", locating with {settings.locate_model}" if settings.locate_model else ", locating off"
    (text, image, out), known = prices_of(settings.edit_model)
    each = estimate_usd(settings.edit_model, TYPICAL_SIZE, settings.edit_quality, settings.locate_model)
    price = (f"${text:g} / ${image:g} / ${out:g} per 1M tokens" if known
             else "no price on file: counted at the highest")
    return Finding("openai", True, f"key accepted; editing with {settings.edit_model} "
                                   f"({settings.edit_quality}; {price}; about ${each:.3f} a photo)"
                                   f"{locate}",
                   "; ".join(warnings) or None)


NO_MODEL_WARNING = ("photos on real tickets will go out unmarked, each with a note saying why: nothing "
                    "can locate the damage, and deskmark draws no circle it cannot place (the local "
                    "annotator's guess is for `deskmark demo` and `deskmark annotate` only); set "
                    "OPENAI_API_KEY to mark them")


def _token_cache(settings: Settings) -> TokenCache:
    """The deployment's tokens (Redis), so that a check reports the token the workers use and
    makes no grant of its own while it is valid; this process alone if Redis is away."""
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError:
        return LocalTokenCache()
    return RedisTokenCache(client)


def _helpdesk(spec: HelpdeskSpec[Any]) -> Callable[[Settings], Finding]:
    """One harmless call with the helpdesk's client: whose id the credentials belong to, and
    what they are and how long they live."""

    def check(settings: Settings) -> Finding:
        own = settings.helpdesk(spec.key)
        if own is None:
            return Finding(spec.key, True, f"off (no {spec.key.upper()}_* variables)")
        client = spec.client(own, settings.attachment_hosts, _token_cache(settings))
        try:
            user_id = client.own_user_id()
            credential = client.credential()
        except VendorError as exc:
            if exc.code == "invalid_client":  # the message names the variables already
                return Finding(spec.key, False, str(exc))
            hint = spec.auth_hint if exc.status in (401, 403) else spec.where_hint
            return Finding(spec.key, False, f"{exc}: check {hint}")
        finally:
            client.close()
        return Finding(spec.key, True, f"{own.base_url}: signed in as user {user_id}; "
                                       f"{credential.describe()}", credential.warning)

    return check


def _slack(settings: Settings) -> Finding:
    if settings.slack is None:
        return Finding("slack", True, "off (no SLACK_* variables)")
    try:
        who, missing = SlackNotifier(settings.slack).check()
    except VendorError as exc:
        return Finding("slack", False, str(exc))
    count = len(settings.slack.approver_ids)
    approvers = (f"{count} reviewer{'s' if count != 1 else ''} may approve or reject (SLACK_APPROVER_IDS)"
                 if count else f"{NOTIFICATION_ONLY} (SLACK_APPROVER_IDS unset)")
    if missing:
        return Finding("slack", False, f"signed in to {who}, but the app lacks the scopes "
                       f"{', '.join(missing)}: add them from integrations/slack/manifest.yml and "
                       "reinstall the app (without the history scopes a review whose answer was "
                       "lost may be posted twice)")
    return Finding("slack", True, f"signed in to {who}; reviews go to {settings.slack.channel_id}; "
                                  f"{approvers}")


def _signer(settings: Settings) -> Finding:
    """Who signs the content credentials, and the fingerprint `deskmark verify --trust` takes
    on a machine that is not the deployment."""
    from worker import credentials
    from worker.store import Store

    if settings.c2pa_cert:
        try:
            chain = credentials.read_pem(settings.c2pa_cert, "DESKMARK_C2PA_CERT")
            ca = credentials.issuer_pem(chain)
        except ValueError as exc:
            return Finding("credentials", False, f"{exc}: fix DESKMARK_C2PA_CERT")
        return Finding("credentials", True, "signed with DESKMARK_C2PA_CERT; elsewhere: deskmark verify "
                                            f"--trust {credentials.fingerprint(ca)}")
    try:
        signer = Store.from_url(settings.redis_url, timeout=3).signer_if_any()
    except redis.RedisError:
        return Finding("credentials", True, "a throwaway signer, kept in Redis (unreachable now)")
    if signer is None:
        return Finding("credentials", True, "a throwaway signer, made by the first worker that "
                                            "signs a photo (run check again after that for its fingerprint)")
    ca = credentials.issuer_pem(credentials.Keys.from_json(signer).chain_pem)
    return Finding("credentials", True, "the deployment's throwaway signer; elsewhere: deskmark verify "
                                        f"--trust {credentials.fingerprint(ca)}")


def _images(settings: Settings) -> Finding:
    """Which photos this installation can read (HEIC needs pillow-heif), and whether it can
    write a label in every language (fonts, and raqm's shaping: worker.fonts)."""
    from importlib.metadata import PackageNotFoundError, version

    from worker import fonts

    warnings = list(fonts.problems())
    try:
        formats = f"JPEG, PNG, WebP, GIF and HEIC (pillow-heif {version('pillow-heif')})"
    except PackageNotFoundError:
        formats = "JPEG, PNG, WebP and GIF"
        warnings.insert(0, "HEIC photos (iPhones) will be skipped: pip install 'deskmark[heic]', or build the "
                           "image with DESKMARK_HEIC=yes (GPL/LGPL codecs: docs/operations.md)")
    language = "each ticket's language" if settings.language == "auto" else settings.language
    return Finding("images", True, f"{formats}; labels in {language}", "; ".join(warnings) or None)


def _helpdesks(settings: Settings) -> Finding:
    if not settings.helpdesks:
        variables = ", ".join(f"{spec.variables[0].split('_')[0]}_*" for spec in HELPDESKS.values())
        return Finding("helpdesks", False, "no helpdesk is configured: deskmark would receive nothing "
                                           f"(set one's variables: {variables}; see README)")
    return Finding("helpdesks", True, ", ".join(HELPDESKS[key].title for key in settings.helpdesks))


CHECKS: list[Callable[[Settings], Finding]] = [
    _redis, _openai, _images, _helpdesks, *(_helpdesk(spec) for spec in HELPDESKS.values()), _slack, _signer,
]


def run_check(environ: dict[str, str] | None = None, echo: Callable[[str], None] = print) -> int:
    try:
        settings = Settings.from_env(environ)
    except ConfigError as exc:
        echo(f"configuration  FAIL\n{exc}")
        return 1
    echo("configuration  ok")
    for correction in settings.corrections:
        echo(f"{'':<14} warning: {correction}")
    failed = False
    for check in CHECKS:
        finding = check(settings)
        failed |= not finding.ok
        echo(f"{finding.name:<14} {'ok  ' if finding.ok else 'FAIL'} {finding.detail}")
        if finding.warning:
            echo(f"{'':<14} warning: {finding.warning}")
    echo("some checks failed: fix the lines marked FAIL" if failed else "all checks passed")
    return 1 if failed else 0
