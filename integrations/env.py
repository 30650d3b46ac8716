"""Reading the environment: every problem collected, so that one error names them all.

`Reader` is what deskmark's settings and every helpdesk's settings (integrations/<key>/settings.py)
read their variables with; `ConfigError` is what they raise together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = ["ConfigError", "Reader"]

_ACCOUNT = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")  # one DNS label


class ConfigError(Exception):
    """The configuration cannot work; `problems` lists what to fix, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("configuration problems:\n" + "\n".join(f"  - {p}" for p in problems))


class Reader:
    """Reads variables and collects every problem, so that one error names them all."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []
        self.corrections: list[str] = []  # what was read other than as written, and how

    def get(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def any(self, *names: str) -> bool:
        return any(self.get(n) for n in names)

    def require(self, vendor: str, *names: str) -> None:
        for name in names:
            if not self.get(name):
                self.problems.append(f"{vendor}: set {name}")

    def number(self, name: str, default: float, kind: type[int] | type[float]) -> float:
        raw = self.get(name)
        if raw is None:
            return default
        try:
            value = kind(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not a {kind.__name__}")
            return default
        if value < 0:
            self.problems.append(f"{name} must not be negative (got {raw})")
            return default
        return value

    def group(self, name: str) -> int | None:
        raw = self.get(name)
        if raw is not None and not raw.isdigit():
            self.problems.append(f"{name}={raw!r} must be a numeric id")
            return None
        return int(raw) if raw else None

    def url(self, name: str, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.problems.append(f"{name}={value!r} is not an http(s) URL")
        return value.rstrip("/")

    def base_url(self, vendor: str, base_var: str, account_var: str, template: str) -> str:
        """The vendor's API root: the override, else built from the account name. A pasted URL
        or host name of the vendor's own (`https://acme.zendesk.com/agent`) gives its account
        name, and the correction is said (`corrections`); anything else is a problem that names
        the URL it would have built."""
        base, account = self.get(base_var), self.get(account_var)
        if base:
            return self.url(base_var, base)
        if not account:
            self.problems.append(f"{vendor}: set {account_var} (or {base_var})")
            return ""
        suffix = template.split("{}", 1)[1]  # ".zendesk.com"
        host = (urlsplit(account if "://" in account else f"https://{account}").hostname or "").lower()
        name = host.removesuffix(suffix) if host.endswith(suffix) else host
        if "." in name or not _ACCOUNT.fullmatch(name):
            self.problems.append(
                f"{account_var}={account!r}: give the account name, the part before {suffix} "
                f"(it would have made {template.format(account)}); for another host, set {base_var}")
            return ""
        built = template.format(name)
        if name != account:
            self.corrections.append(f"{account_var}={account!r} read as {name!r}: the API is {built}")
        return built

    def csv(self, name: str) -> tuple[str, ...]:
        return tuple(item.strip() for item in (self.get(name) or "").split(",") if item.strip())
