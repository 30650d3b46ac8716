"""Zendesk through an OAuth client whose tokens expire, end to end: two worker processes share
one token (Redis) and renew it before it ends; a wrong client secret fails once, saying so."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from deskmark.sandbox.zendesk import SandboxZendesk
from tests.helpers import Stack, job_reaches, send_photo, settled, wait_for

CUSTOMER = SandboxZendesk.CUSTOMER_ID
LIFETIME = 15.0  # seconds a sandbox token lives in these tests (Zendesk's default is 30 min)


def test_two_workers_share_15_second_tokens_over_a_minute_of_photos(
        make_stack: Callable[..., Stack], zendesk: SandboxZendesk) -> None:
    lifetime = zendesk.token_lifetime
    zendesk.token_lifetime = LIFETIME
    try:
        stack = make_stack(workers=2)
        wait_for(lambda: stack.store.worker_seen(), timeout=60)
        grants_before, expired_before = len(zendesk.grants), zendesk.expired_calls
        requests_before = len(zendesk.requests)
        started = time.monotonic()
        tickets = []
        for n in range(10):  # ten photos sent over a minute
            tickets.append(send_photo(zendesk, stack.web.url, f"OAuth {uuid.uuid4().hex[:6]}", 900 + n,
                                      size=(640, 480)))
            time.sleep(6)
        for _, job_id in tickets:
            job_reaches(stack.store, job_id, "done", timeout=90)
        settled(zendesk, stack.env["REDIS_URL"])
        elapsed = time.monotonic() - started
        assert [len(zendesk.marked_notes(t)) for t, _ in tickets] == [1] * 10
        assert all(stack.store.job(job)["state"] == "done" for _, job in tickets)

        grants = [g for g in zendesk.grants[grants_before:]]
        calls = len(zendesk.requests) - requests_before
        assert grants and all(g["granted"] for g in grants)
        # About one grant per token life for the whole deployment: a token is renewed once a
        # quarter of its life is left (every 11.25 s at most), and only while calls are made.
        assert 2 <= len(grants) <= elapsed / (LIFETIME * 0.75) + 2, (len(grants), elapsed)
        assert calls >= 10 * len(grants)  # not a grant per call, nor per process per call
        expired = zendesk.expired_calls - expired_before
        assert expired <= len(grants)  # at most one call with an expired token per renewal
        print(f"\n{len(grants)} grants, {calls} Zendesk calls, {expired} with an expired token, "
              f"in {elapsed:.0f} s ({LIFETIME:.0f} s tokens, two workers, ten photos)")
        # Both workers took jobs (each would have made its own grants without the shared token).
        logs = [w.output() for w in stack.workers]
        assert len(logs) == 2 and all("done dm-" in log for log in logs)
    finally:
        zendesk.token_lifetime = lifetime


def test_a_wrong_client_secret_fails_once_with_its_name_and_no_retry_storm(
        make_stack: Callable[..., Stack], zendesk: SandboxZendesk) -> None:
    stack = make_stack(ZENDESK_CLIENT_SECRET="not-the-client-secret")
    grants_before = len(zendesk.grants)
    ticket_id, _ = send_photo(zendesk, stack.web.url, f"Wrong secret {uuid.uuid4().hex[:6]}", 920,
                              size=(640, 480))
    wait_for(lambda: stack.store.dead_ids(), timeout=60)
    settled(zendesk, stack.env["REDIS_URL"])
    [dead] = stack.store.jobs(stack.store.dead_ids())
    assert "ZENDESK_CLIENT_SECRET" in str(dead.get("reason")), dead
    grants = zendesk.grants[grants_before:]
    assert 1 <= len(grants) <= 2 and not any(g["granted"] for g in grants)
    log = stack.workers[0].output()
    assert 1 <= log.count("ZENDESK_CLIENT_SECRET") <= 3  # said, not repeated by retries
    assert "not-the-client-secret" not in log
    assert zendesk.notes(ticket_id) == []
