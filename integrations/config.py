"""deskmark's configuration: one typed object read once from the environment (and `.env`).

Every other module receives a `Settings`; none reads `os.environ` itself. `Settings.from_env`
collects every problem it finds and raises one `ConfigError` that names the variables to fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

from integrations.env import ConfigError, Reader
from integrations.models import lookup

if TYPE_CHECKING:
    from integrations.helpdesk import HelpdeskSettings, HelpdeskSpec, S

__all__ = ["ConfigError", "Settings", "SlackSettings", "masked_url", "url_password"]

QUALITIES = ("low", "medium", "high", "auto", "xhigh", "max")
# Only the strokes of the model's mark are kept, so the edit's quality buys a cleaner ring, not
# a better photo; `low` costs a ninth of `medium`'s output tokens (README, "What a photo costs").
DEFAULT_QUALITY = "low"
PROVIDERS = ("openai", "local")
DEFAULT_EDIT_MODEL = "gpt-image-2"
DEFAULT_LOCATE_MODEL = "gpt-5.4"


@dataclass(frozen=True)
class SlackSettings:
    bot_token: str
    signing_secret: str
    channel_id: str
    api_url: str
    approver_ids: tuple[str, ...]


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://localhost:6379/0"
    edit_provider: str = "local"
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    edit_model: str = DEFAULT_EDIT_MODEL
    edit_quality: str = DEFAULT_QUALITY
    # DESKMARK_EDIT_MODE: "sync" (an edit call per photo), or "batch": edits go through OpenAI's
    # Batch API at half the price, collected for DESKMARK_BATCH_COLLECT_SECONDS (worker.batches).
    edit_mode: str = "sync"
    batch_collect_seconds: int = 300
    locate_model: str | None = DEFAULT_LOCATE_MODEL
    prompt: str | None = None
    edit_rate_per_minute: int = 5
    daily_budget_usd: float = 20.0
    trigger_tags: tuple[str, ...] = ()
    # DESKMARK_VISIBILITY_TIMEOUT (advanced). Longer than the longest job (an edit may take 4
    # minutes; downloads and uploads add some): with the Redis transport an unacknowledged
    # message comes back only after this, so a worker killed mid-job is covered; every retry
    # countdown stays below it, or the message would be delivered twice.
    visibility_timeout: int = 3600
    # DESKMARK_LEASE_SECONDS (advanced): how long a running job's lease lasts without renewal;
    # a job whose worker died resumes this long (and a reaper round) after.
    lease_seconds: int = 60
    # DESKMARK_IMAGE_MEMORY_MB: decoded pixels in flight across a worker process; image work
    # waits for its share. 400 leaves room for the rest of a worker in a 1 GB container.
    image_memory_mb: int = 400
    # DESKMARK_RETENTION_DAYS: photos, marked images, job records and dead letters.
    retention_days: int = 14
    # DESKMARK_DUPLICATE_DAYS: how long a photo's perceptual hash, ticket and requester id stay
    # in the re-used-photo index (worker.dupes): found for at least this, gone after twice it.
    # 0 turns the check off.
    duplicate_days: int = 90
    attachment_hosts: tuple[str, ...] = ()
    admin_token: str | None = field(default=None, repr=False)
    # DESKMARK_C2PA_CERT / DESKMARK_C2PA_KEY: the PEM chain and key that sign the content
    # credentials (each the PEM itself or a file's path); unset: a throwaway signer.
    c2pa_cert: str | None = field(default=None, repr=False)
    c2pa_key: str | None = field(default=None, repr=False)
    # The helpdesks that are configured, by key (integrations.registry), each its own settings.
    helpdesks: Mapping[str, HelpdeskSettings] = field(default_factory=dict, repr=False)
    slack: SlackSettings | None = field(default=None, repr=False)
    # What was read other than as written (a pasted URL in ZENDESK_SUBDOMAIN), and how.
    corrections: tuple[str, ...] = ()
    # DESKMARK_LANGUAGE: the language of notes, labels and Slack texts (integrations.i18n), or
    # "auto": each ticket's own, as its helpdesk reports it.
    language: str = "en"
    # DESKMARK_DEMO: set by `deskmark demo` for its own worker only. Without a model, its sample
    # photo is marked by the local annotator's guess; real tickets never are.
    demo: bool = False

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")
    ) -> Settings:
        """Read the CONTRACT's variables; a `.env` file fills in what the environment lacks."""
        env: dict[str, str] = {}
        if dotenv is not None and dotenv.is_file():
            from dotenv import dotenv_values

            env.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
        env.update(os.environ if environ is None else environ)
        return _parse(env)

    def vendors_on(self) -> list[str]:
        return [*self.helpdesks, *(["slack"] if self.slack else [])]

    def helpdesk(self, key: str) -> HelpdeskSettings | None:
        """The settings of helpdesk `key`; None when it is not configured."""
        return self.helpdesks.get(key)

    def of(self, spec: HelpdeskSpec[S]) -> S:
        """One helpdesk's settings, typed by its spec (`settings.of(zendesk.SPEC)` is a
        ZendeskSettings); a ConfigError when that helpdesk is not configured."""
        own = self.helpdesks.get(spec.key)
        if own is None:
            raise ConfigError([f"{spec.title} is not configured ({spec.variables[0]} and the rest)"])
        return cast("S", own)

    def describe(self) -> dict[str, object]:
        """A secret-free summary for logs and `deskmark check`."""
        out: dict[str, object] = {}
        for f in fields(self):
            if f.name in ("openai_api_key", "admin_token", "helpdesks", "slack", "c2pa_cert",
                          "c2pa_key"):
                continue
            value = getattr(self, f.name)
            out[f.name] = masked_url(value) if f.name.endswith("_url") and value else value
        out["vendors"] = self.vendors_on()
        return out

    def warnings(self) -> list[str]:
        """What start-up warns of: credentials that will stop working, and the like."""
        return [*self.corrections, *(w for helpdesk in self.helpdesks.values() for w in helpdesk.warnings())]

    def secrets(self) -> list[str]:
        """Every secret in this configuration, for the log redactor."""
        found = [self.openai_api_key or "", self.admin_token or "", url_password(self.redis_url),
                 self.c2pa_key if self.c2pa_key and "BEGIN" in self.c2pa_key else ""]
        for helpdesk in self.helpdesks.values():
            found += helpdesk.secrets()
        if self.slack:
            found += [self.slack.bot_token, self.slack.signing_secret]
        return [secret for secret in found if secret]


def url_password(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


def masked_url(url: str) -> str:
    """`url` with its password (if any) shown as `***`: redis://:***@redis:6379/0."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{user}***@{host}").geturl()


def _parse(env: Mapping[str, str]) -> Settings:
    r = Reader(env)
    openai_key = r.get("OPENAI_API_KEY")
    provider = (r.get("DESKMARK_EDIT_PROVIDER") or ("openai" if openai_key else "local")).lower()
    if provider not in PROVIDERS:
        r.problems.append(f"DESKMARK_EDIT_PROVIDER={provider!r}: use one of {', '.join(PROVIDERS)}")
    elif provider == "openai" and not openai_key:
        r.problems.append(
            "DESKMARK_EDIT_PROVIDER=openai needs OPENAI_API_KEY "
            "(or set DESKMARK_EDIT_PROVIDER=local to mark photos without a model)"
        )
    quality = (r.get("DESKMARK_EDIT_QUALITY") or DEFAULT_QUALITY).lower()
    edit_model = r.get("DESKMARK_EDIT_MODEL") or DEFAULT_EDIT_MODEL
    known = lookup(edit_model)
    if quality not in QUALITIES:
        r.problems.append(f"DESKMARK_EDIT_QUALITY={quality!r}: use one of {', '.join(QUALITIES)}")
    elif known is not None and quality not in known.qualities:
        r.problems.append(f"DESKMARK_EDIT_QUALITY={quality}: {edit_model} takes "
                          f"{', '.join(known.qualities)} (xhigh and max are for gpt-image-2.5-* and 2.6-*)")
    base_url = r.get("OPENAI_BASE_URL")
    redis_url = r.get("REDIS_URL") or "redis://localhost:6379/0"
    if urlsplit(redis_url).scheme not in ("redis", "rediss"):
        r.problems.append(f"REDIS_URL={redis_url!r} must start with redis:// or rediss:// "
                          "(Celery's Redis transport takes no other)")
    # DESKMARK_LOCATE_MODEL set but empty turns locating off; unset means the default.
    locate = env.get("DESKMARK_LOCATE_MODEL")
    locate_model = DEFAULT_LOCATE_MODEL if locate is None else (locate.strip() or None)

    settings = Settings(
        redis_url=redis_url,
        edit_provider=provider,
        openai_api_key=openai_key,
        openai_base_url=r.url("OPENAI_BASE_URL", base_url) if base_url else None,
        edit_model=edit_model,
        edit_quality=quality,
        locate_model=locate_model,
        prompt=r.get("DESKMARK_PROMPT"),
        edit_mode=(r.get("DESKMARK_EDIT_MODE") or "sync").lower(),
        batch_collect_seconds=int(r.number("DESKMARK_BATCH_COLLECT_SECONDS", 300, int)),
        edit_rate_per_minute=int(r.number("DESKMARK_EDIT_RATE_PER_MINUTE", 5, int)),
        daily_budget_usd=float(r.number("DESKMARK_DAILY_BUDGET_USD", 20.0, float)),
        trigger_tags=r.csv("DESKMARK_TRIGGER_TAGS"),
        visibility_timeout=int(r.number("DESKMARK_VISIBILITY_TIMEOUT", 3600, int)),
        lease_seconds=int(r.number("DESKMARK_LEASE_SECONDS", 60, int)),
        image_memory_mb=int(r.number("DESKMARK_IMAGE_MEMORY_MB", 400, int)),
        retention_days=int(r.number("DESKMARK_RETENTION_DAYS", 14, int)),
        duplicate_days=int(r.number("DESKMARK_DUPLICATE_DAYS", 90, int)),
        attachment_hosts=tuple(h.lower() for h in r.csv("DESKMARK_ATTACHMENT_HOSTS")),
        admin_token=r.get("DESKMARK_ADMIN_TOKEN"),
        c2pa_cert=r.get("DESKMARK_C2PA_CERT"),
        c2pa_key=r.get("DESKMARK_C2PA_KEY"),
        helpdesks=_helpdesks(r),
        slack=_slack(r),
        corrections=tuple(r.corrections),
        demo=(r.get("DESKMARK_DEMO") or "").lower() in ("1", "true", "yes"),
        language=_language(r),
    )
    if settings.edit_mode not in ("sync", "batch"):
        r.problems.append(f"DESKMARK_EDIT_MODE={settings.edit_mode!r}: use sync or batch")
    elif settings.edit_mode == "batch" and settings.edit_provider != "openai":
        r.problems.append("DESKMARK_EDIT_MODE=batch sends edits to OpenAI's Batch API: it needs "
                          "OPENAI_API_KEY (the local annotator has no batches)")
    if settings.batch_collect_seconds < 1:
        r.problems.append("DESKMARK_BATCH_COLLECT_SECONDS must be at least 1 (default 300)")
    if settings.visibility_timeout < 10:
        r.problems.append("DESKMARK_VISIBILITY_TIMEOUT must be at least 10 seconds (default 3600)")
    if not 4 <= settings.lease_seconds <= settings.visibility_timeout / 2:
        r.problems.append("DESKMARK_LEASE_SECONDS must be at least 4 and at most half of "
                          "DESKMARK_VISIBILITY_TIMEOUT (default 60)")
    if settings.image_memory_mb < 64:
        r.problems.append("DESKMARK_IMAGE_MEMORY_MB must be at least 64 (default 400): a 12 MP "
                          "photo needs about 40 MB to mark")
    if settings.retention_days < 1:
        r.problems.append("DESKMARK_RETENTION_DAYS must be at least 1 (default 14)")
    if settings.duplicate_days < 0:
        r.problems.append("DESKMARK_DUPLICATE_DAYS must be 0 (the re-used-photo check off) or "
                          "more (default 90)")
    if bool(settings.c2pa_cert) != bool(settings.c2pa_key):
        r.problems.append("DESKMARK_C2PA_CERT and DESKMARK_C2PA_KEY go together: set both (a PEM "
                          "chain and its key), or neither for a throwaway signer")
    if r.problems:
        raise ConfigError(r.problems)
    return settings


def _language(r: Reader) -> str:
    from integrations.i18n import LANGUAGES, supported

    raw = r.get("DESKMARK_LANGUAGE") or "en"
    if raw.lower() == "auto":
        return "auto"
    found = supported(raw)
    if found is None:
        r.problems.append(f"DESKMARK_LANGUAGE={raw!r}: deskmark writes {', '.join(LANGUAGES)}, or auto "
                          "(each ticket's language, as its helpdesk reports it)")
        return "en"
    if found.lower() != raw.lower():
        r.corrections.append(f"DESKMARK_LANGUAGE={raw!r} read as {found}")
    return found


def _helpdesks(r: Reader) -> dict[str, HelpdeskSettings]:
    from integrations.registry import HELPDESKS  # the registry imports every helpdesk package

    found = {key: spec.read(r) for key, spec in HELPDESKS.items()}
    return {key: settings for key, settings in found.items() if settings is not None}


def _slack(r: Reader) -> SlackSettings | None:
    names = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_CHANNEL_ID")
    if not r.any(*names):
        return None
    r.require("Slack", *names)
    channel = r.get("SLACK_CHANNEL_ID") or ""
    if channel.startswith("#"):
        r.problems.append(
            f"SLACK_CHANNEL_ID={channel!r} is a channel name; Slack needs the channel ID "
            "(C…; in Slack: channel details > About > Channel ID)"
        )
    return SlackSettings(
        bot_token=r.get("SLACK_BOT_TOKEN") or "",
        signing_secret=r.get("SLACK_SIGNING_SECRET") or "",
        channel_id=channel,
        api_url=r.url("SLACK_API_URL", r.get("SLACK_API_URL") or "https://slack.com/api/") + "/",
        approver_ids=r.csv("SLACK_APPROVER_IDS"),
    )
