"""Access tokens that expire (Zendesk's and Help Scout's OAuth client credentials), shared by
every deskmark process on every host, so that the whole deployment makes one grant per token
lifetime, not one per call or per process.

- The token lives in a `TokenCache`: Redis (`RedisTokenCache`, key `dm:token:{id}`, kept no
  longer than the token's own lifetime) for the web app and the workers; `LocalTokenCache` for
  one process (a check without Redis).
- A token is renewed before it expires (`expires_in`, less a margin). One renewal is in flight
  at a time across all processes (a short Redis lock); the others keep using the current token
  while it is still valid, or wait for the new one.
- A call answered 401 renews once (unless another process already did) and is sent once more.
  A second 401, or a grant refused (`invalid_client`), raises `PermanentError` naming the
  variable to fix; a refusal is remembered briefly, so a wrong secret makes no grant per call.
- `OAuthBearer` is the httpx auth that does all this for a vendor client.

The id of a cache entry is a hash of the token endpoint, the client id, the secret and the
scope: a changed secret never uses a token granted to the old one.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Protocol

import httpx
import redis

from integrations.errors import PermanentError, RetryableError
from integrations.http import raise_for_vendor

__all__ = ["Token", "Grant", "TokenCache", "RedisTokenCache", "LocalTokenCache", "TokenManager",
           "OAuthBearer", "cache_id", "request_token"]

MARGIN_CAP = 300.0  # renew at most five minutes before expiry (a 30-minute token: at 25 min)
LOCK_SECONDS = 30  # how long one process may hold the renewal before another may take it
WAIT_SECONDS = 20.0  # how long a process without a valid token waits for another's renewal
REFUSED_SECONDS = 120  # how long a refused grant is remembered: no grant per call meanwhile
NO_EXPIRY = 86400.0  # a token granted without `expires_in` is asked for again after a day


@dataclass(frozen=True)
class Token:
    access_token: str = field(repr=False)
    obtained_at: float  # wall clock when the grant was asked for (the token is younger)
    expires_at: float
    scope: str = ""

    @property
    def lifetime(self) -> float:
        return self.expires_at - self.obtained_at

    @property
    def renew_at(self) -> float:
        """When to renew: a quarter of its life before expiry, at most MARGIN_CAP."""
        return self.expires_at - min(MARGIN_CAP, self.lifetime / 4)

    def to_json(self) -> str:
        return json.dumps({"access_token": self.access_token, "obtained_at": self.obtained_at,
                           "expires_at": self.expires_at, "scope": self.scope})

    @classmethod
    def from_json(cls, raw: str | bytes) -> Token:
        data = json.loads(raw)
        return cls(str(data["access_token"]), float(data["obtained_at"]), float(data["expires_at"]),
                   str(data.get("scope") or ""))


# The vendor's token request: returns (access_token, expires_in or None, scope); raises
# PermanentError when the vendor refuses the client, RetryableError when it is unreachable.
Grant = Callable[[], tuple[str, float | None, str]]


class TokenCache(Protocol):
    def get(self, key: str) -> Token | None: ...
    def put(self, key: str, token: Token) -> None: ...
    def lock(self, key: str, seconds: int) -> str | None: ...
    def unlock(self, key: str, owner: str) -> None: ...
    def refusal(self, key: str) -> str | None: ...
    def refuse(self, key: str, reason: str, seconds: int) -> None: ...


_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisTokenCache:
    """Tokens in Redis, shared by every process of the deployment (keys under `dm:token:`)."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._unlock = client.register_script(_UNLOCK)

    def get(self, key: str) -> Token | None:
        raw = self.r.get(f"dm:token:{key}")
        return Token.from_json(raw) if raw else None

    def put(self, key: str, token: Token) -> None:
        ttl_ms = int((token.expires_at - time.time()) * 1000)
        if ttl_ms > 0:  # never kept past its own lifetime
            self.r.set(f"dm:token:{key}", token.to_json(), px=ttl_ms)

    def lock(self, key: str, seconds: int) -> str | None:
        owner = secrets.token_hex(8)
        return owner if self.r.set(f"dm:token:{key}:renewing", owner, nx=True, ex=seconds) else None

    def unlock(self, key: str, owner: str) -> None:
        self._unlock(keys=[f"dm:token:{key}:renewing"], args=[owner])

    def refusal(self, key: str) -> str | None:
        raw = self.r.get(f"dm:token:{key}:refused")
        return raw.decode() if isinstance(raw, bytes) else raw

    def refuse(self, key: str, reason: str, seconds: int) -> None:
        self.r.set(f"dm:token:{key}:refused", reason, ex=seconds)


class LocalTokenCache:
    """The same in one process: for a command that runs without Redis."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._refused: dict[str, tuple[str, float]] = {}
        self._mutex = threading.Lock()

    def get(self, key: str) -> Token | None:
        token = self._tokens.get(key)
        return token if token and token.expires_at > time.time() else None

    def put(self, key: str, token: Token) -> None:
        self._tokens[key] = token

    def lock(self, key: str, seconds: int) -> str | None:
        with self._mutex:
            held = self._locks.get(key)
            if held and held[1] > time.monotonic():
                return None
            owner = secrets.token_hex(8)
            self._locks[key] = (owner, time.monotonic() + seconds)
            return owner

    def unlock(self, key: str, owner: str) -> None:
        with self._mutex:
            if self._locks.get(key, ("", 0.0))[0] == owner:
                del self._locks[key]

    def refusal(self, key: str) -> str | None:
        found = self._refused.get(key)
        return found[0] if found and found[1] > time.monotonic() else None

    def refuse(self, key: str, reason: str, seconds: int) -> None:
        self._refused[key] = (reason, time.monotonic() + seconds)


def cache_id(*parts: str) -> str:
    """The cache entry's id: a hash of the token endpoint, client id, secret and scope."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:24]


# Every access token this process has held, for the log redactor (integrations.logs).
LEARNED: set[str] = set()


class TokenManager:
    """The current access token for one OAuth client, renewed before it expires."""

    def __init__(self, vendor: str, key: str, grant: Grant, cache: TokenCache,
                 clock: Callable[[], float] = time.time) -> None:
        self.vendor = vendor
        self.key = key
        self._grant = grant
        self.cache = cache
        self._clock = clock
        self._local: Token | None = None
        self._mutex = threading.Lock()  # one renewal attempt per process at a time

    def token(self) -> str:
        """A token to send now: the one held while it is not due, else the deployment's."""
        held = self._local
        if held is not None and self._clock() < held.renew_at:
            return held.access_token
        return self._fresh(stale=None).access_token

    def renew(self, stale: str) -> str:
        """After `stale` was answered 401: a token other than it (renewed here, or by another
        process a moment ago)."""
        return self._fresh(stale=stale).access_token

    def current(self) -> Token | None:
        """The deployment's token as it stands, without renewing (for `deskmark check`)."""
        return self.cache.get(self.key)

    def _usable(self, token: Token | None, stale: str | None) -> bool:
        return token is not None and token.access_token != stale and self._clock() < token.renew_at

    def _fresh(self, stale: str | None) -> Token:
        deadline = time.monotonic() + WAIT_SECONDS
        with self._mutex:
            while True:
                cached = self.cache.get(self.key)
                if self._usable(cached, stale):
                    return self._hold(cached)
                refused = self.cache.refusal(self.key)
                if refused:
                    raise PermanentError(refused, vendor=self.vendor, status=401, code="invalid_client")
                owner = self.cache.lock(self.key, LOCK_SECONDS)
                if owner is not None:
                    try:
                        cached = self.cache.get(self.key)  # renewed while we took the lock?
                        if self._usable(cached, stale):
                            return self._hold(cached)
                        return self._hold(self._obtain())
                    finally:
                        self.cache.unlock(self.key, owner)
                # Another process is renewing: the current token serves until it expires.
                if (cached is not None and cached.access_token != stale
                        and self._clock() < cached.expires_at - 1):
                    self._local = None  # look again at the next call
                    return cached
                if time.monotonic() > deadline:
                    raise RetryableError(f"{self.vendor}: no access token: another process's "
                                         "renewal did not finish", vendor=self.vendor)
                time.sleep(0.05)

    def _obtain(self) -> Token:
        asked = self._clock()
        try:
            access, expires_in, scope = self._grant()
        except PermanentError as exc:
            if exc.status in (400, 401, 403):  # refused: say so to every process for a while
                self.cache.refuse(self.key, str(exc), REFUSED_SECONDS)
            raise
        token = Token(access, asked, asked + (expires_in if expires_in else NO_EXPIRY), scope)
        self.cache.put(self.key, token)
        return token

    def _hold(self, token: Token | None) -> Token:
        assert token is not None
        LEARNED.add(token.access_token)
        self._local = token
        return token


class OAuthBearer(httpx.Auth):
    """`Authorization: Bearer` from a TokenManager; a 401 renews once and sends the request
    once more. A second 401 raises PermanentError, saying what to check."""

    requires_request_body = True  # read before sending, so that it can be sent again

    def __init__(self, tokens: TokenManager, fix: str) -> None:
        self.tokens = tokens
        self.fix = fix  # what a second 401 asks the operator to check

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.tokens.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        request.headers["Authorization"] = f"Bearer {self.tokens.renew(stale=token)}"
        response = yield request
        if response.status_code == 401:
            raise PermanentError(
                f"{self.tokens.vendor} answered 401 to {request.method} {request.url.path} with a "
                f"token granted just now: {self.fix}", vendor=self.tokens.vendor, status=401)


def request_token(http: httpx.Client, vendor: str, url: str, fix: str, *,
                  json_body: dict[str, str] | None = None,
                  form: dict[str, str] | None = None) -> tuple[str, float | None, str]:
    """One client-credentials grant: (access_token, expires_in, scope). A refusal raises
    PermanentError saying `fix`; the response body (it holds the token) is never quoted."""
    try:
        response = http.post(url, json=json_body, data=form)
    except httpx.TimeoutException as exc:
        raise RetryableError(f"{vendor} timed out on its token request", vendor=vendor) from exc
    except httpx.TransportError as exc:
        raise RetryableError(f"{vendor} unreachable on its token request: {exc}", vendor=vendor) from exc
    if response.is_success:
        try:
            data = response.json()
            access = str(data["access_token"])
            expires_in = float(data["expires_in"]) if data.get("expires_in") else None
        except (ValueError, KeyError, TypeError) as exc:
            raise RetryableError(f"{vendor} answered its token request with no access token",
                                 vendor=vendor, status=response.status_code) from exc
        return access, expires_in, str(data.get("scope") or "")
    try:
        error = response.json()
        code = str(error.get("error") or "") if isinstance(error, dict) else ""
        said = str(error.get("error_description") or "")[:200] if isinstance(error, dict) else ""
    except ValueError:
        code, said = "", ""
    status = response.status_code
    if status == 429 or status >= 500:
        raise_for_vendor(response, vendor)
    detail = f"{code}: {said}" if code and said else code or said or f"HTTP {status}"
    raise PermanentError(f"{vendor} refused deskmark's OAuth client ({detail}): {fix}",
                         vendor=vendor, status=status, code=code or None)
