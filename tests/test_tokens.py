"""Expiring OAuth tokens (integrations.tokens): one grant per token lifetime for the whole
deployment, renewal before expiry, one renewal after a 401, and a refused client that fails
with the variable to fix. In-process against a real Redis and the sandbox Zendesk; the
end-to-end runs with two workers are in test_zendesk_oauth.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from deskmark.sandbox.zendesk import SandboxZendesk
from integrations.errors import PermanentError
from integrations.events import Credential
from integrations.logs import Redactor
from integrations.tokens import LEARNED, LocalTokenCache, RedisTokenCache, Token, TokenManager
from integrations.zendesk.client import ZendeskClient
from integrations.zendesk.settings import ZendeskSettings, api_token_end


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Grants:
    """A vendor's token endpoint as a function: counts its calls, can refuse or be slow."""

    def __init__(self, lifetime: float = 1800.0, delay: float = 0.0) -> None:
        self.lifetime = lifetime
        self.delay = delay
        self.calls = 0
        self.refuse = False
        self._lock = threading.Lock()

    def __call__(self) -> tuple[str, float | None, str]:
        time.sleep(self.delay)
        with self._lock:
            self.calls += 1
            n = self.calls
        if self.refuse:
            raise PermanentError("sandbox refused deskmark's OAuth client (invalid_client): check "
                                 "ZENDESK_CLIENT_SECRET", vendor="zendesk", status=401,
                                 code="invalid_client")
        return f"token-{n}", self.lifetime, "tickets:read"


@pytest.fixture
def shared(redis_url: str) -> Iterator[RedisTokenCache]:
    client = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/9")
    client.flushdb()
    yield RedisTokenCache(client)
    client.flushdb()
    client.close()


def test_a_token_is_granted_once_and_renewed_only_when_due() -> None:
    clock, grants = Clock(), Grants(lifetime=1800)
    tokens = TokenManager("zendesk", "k", grants, LocalTokenCache(), clock=clock)
    assert {tokens.token() for _ in range(50)} == {"token-1"}
    assert grants.calls == 1
    clock.now += 1800 - 301  # five minutes (the margin's cap) and a second before the end
    assert tokens.token() == "token-1" and grants.calls == 1
    clock.now += 2
    assert tokens.token() == "token-2" and grants.calls == 2
    # A short token renews a quarter of its life before its end.
    short = TokenManager("zendesk", "s", Grants(lifetime=15), LocalTokenCache(), clock=clock)
    first = short.token()
    clock.now += 11.0
    assert short.token() == first
    clock.now += 0.5
    assert short.token() != first
    assert "token-1" in LEARNED  # the log redactor knows every token held
    assert Redactor([]).clean("sent token-1 to Zendesk") == "sent [redacted] to Zendesk"


def test_processes_sharing_redis_make_one_grant_and_one_renewal(shared: RedisTokenCache) -> None:
    grants = Grants(lifetime=1800, delay=0.2)  # slow: the others arrive while it is under way
    managers = [TokenManager("zendesk", "k", grants, shared) for _ in range(8)]
    seen: list[str] = []
    threads = [threading.Thread(target=lambda m=m: seen.append(m.token())) for m in managers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == ["token-1"] * 8 and grants.calls == 1
    # The token is answered 401 (revoked): every process renews, one grant is made.
    renewed: list[str] = []
    threads = [threading.Thread(target=lambda m=m: renewed.append(m.renew(stale="token-1")))
               for m in managers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert renewed == ["token-2"] * 8 and grants.calls == 2
    # In Redis no longer than its lifetime.
    ttl = shared.r.pttl("dm:token:k")
    assert 1_790_000 < ttl <= 1_800_000


def test_while_one_process_renews_the_others_keep_the_current_token(shared: RedisTokenCache) -> None:
    clock = Clock()
    clock.now = time.time()
    grants = Grants(lifetime=100)
    first = TokenManager("zendesk", "k", grants, shared, clock=clock)
    assert first.token() == "token-1"
    clock.now += 80  # due (renew 25 s before the end), still valid
    owner = shared.lock("k", 30)  # another process is renewing
    assert owner is not None
    started = time.monotonic()
    assert first.token() == "token-1" and grants.calls == 1
    assert time.monotonic() - started < 1  # it did not wait
    shared.unlock("k", owner)
    assert first.token() == "token-2" and grants.calls == 2


def test_a_refused_client_fails_with_the_variable_and_is_remembered(shared: RedisTokenCache) -> None:
    grants = Grants()
    grants.refuse = True
    one, other = (TokenManager("zendesk", "k", grants, shared) for _ in range(2))
    for manager in (one, other, one):
        with pytest.raises(PermanentError, match="ZENDESK_CLIENT_SECRET"):
            manager.token()
    assert grants.calls == 1  # no grant per call, nor per process


def test_the_credential_says_what_it_is_and_how_long_it_lives() -> None:
    now = 1_000_000.0
    assert Credential("OAuth client", now + 28 * 60, renewed=True).describe(now) == (
        "OAuth client: token valid for another 28 min, renewed automatically")
    assert Credential("OAuth access token", now + 600).describe(now) == (
        "OAuth access token: expires in 10 min, and cannot be renewed")
    assert Credential("OAuth access token", now - 120).describe(now) == "OAuth access token: expired 2 min ago"
    assert Credential("API key").describe(now) == "API key: does not expire"
    from datetime import date

    assert api_token_end(date(2026, 12, 2)) == "Zendesk turns these off on 2027-04-30, in 149 days"
    assert Token("t", now, now + 15).renew_at == now + 15 - 3.75


# --- against the sandbox Zendesk -----------------------------------------------------------------
def oauth_settings(zendesk: SandboxZendesk, secret: str | None = None) -> ZendeskSettings:
    return ZendeskSettings(base_url=zendesk.url, email=None, api_token=None, oauth_token=None,
                           webhook_secret="x", warranty_group_id=None, client_id=zendesk.CLIENT_ID,
                           client_secret=secret or zendesk.client_secret)


def test_the_zendesk_client_renews_before_expiry_and_once_after_a_revocation(
        zendesk: SandboxZendesk, shared: RedisTokenCache) -> None:
    lifetime = zendesk.token_lifetime
    zendesk.token_lifetime = 2.0
    grants_before, expired_before = len(zendesk.grants), zendesk.expired_calls
    client = ZendeskClient(oauth_settings(zendesk), tokens=shared)
    try:
        ticket = zendesk.create_ticket("OAuth", "renewals")
        deadline = time.monotonic() + 5
        calls = 0
        while time.monotonic() < deadline:
            assert client.ticket(str(ticket)).subject == "OAuth"
            calls += 1
            time.sleep(0.05)
        grants = len(zendesk.grants) - grants_before
        assert calls > 50 and 3 <= grants <= 5  # one per 1.5 s (2 s tokens), not one per call
        assert zendesk.expired_calls == expired_before  # renewed before they expired
        # Revoked under deskmark: the 401 renews once and the call goes through.
        zendesk.issued.clear()
        granted = len(zendesk.grants)
        assert client.ticket(str(ticket)).subject == "OAuth"
        assert len(zendesk.grants) == granted + 1
        assert client.credential().describe().startswith(
            "OAuth client (ZENDESK_CLIENT_ID): token valid for another ")
    finally:
        zendesk.token_lifetime = lifetime
        client.close()


def test_a_wrong_client_secret_names_it_and_a_token_without_access_is_not_retried_forever(
        zendesk: SandboxZendesk) -> None:
    client = ZendeskClient(oauth_settings(zendesk, secret="not-the-secret"))
    before = len(zendesk.grants)
    with pytest.raises(PermanentError, match="ZENDESK_CLIENT_SECRET") as refused:
        client.own_user_id()
    assert refused.value.code == "invalid_client" and len(zendesk.grants) == before + 1
    client.close()
    # A token granted just now that is answered 401 again: the call fails, saying what to check.
    client = ZendeskClient(oauth_settings(zendesk))
    zendesk.faults.add("GET", r"/users/me\.json$", 401, {"error": "invalid_token"}, times=2)
    with pytest.raises(PermanentError, match="granted just now"):
        client.own_user_id()
    client.close()
