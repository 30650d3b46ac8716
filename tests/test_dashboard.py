"""The dashboard: loopback-only without DESKMARK_ADMIN_TOKEN, token-protected with it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from deskmark.sandbox.zendesk import SandboxZendesk
from integrations.config import Settings
from integrations.zendesk import SPEC as ZENDESK
from integrations.zendesk.client import ZendeskClient
from webhooks import create_app
from worker import pipeline
from worker.marking import make_marker
from worker.store import Store

REMOTE = {"REMOTE_ADDR": "203.0.113.9"}


def test_without_a_token_only_loopback_gets_the_dashboard(deskmark_env: dict[str, str]) -> None:
    client = create_app(Settings.from_env(deskmark_env, dotenv=None)).test_client()
    assert client.get("/").status_code == 200
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        assert client.get("/", headers={"Host": host}).status_code == 200
    assert client.get("/", environ_base=REMOTE).status_code == 403
    # A DNS-rebinding page: a loopback peer, the attacker's host name.
    rebound = client.get("/", headers={"Host": "rebind.attacker.example"})
    assert rebound.status_code == 403 and "not a loopback name" in rebound.get_data(as_text=True)
    assert client.get("/jobs/dm-x/marked.jpg", headers={"Host": "rebind.attacker.example"}).status_code == 403
    # A same-host proxy or tunnel makes every visitor look like loopback: its headers give it away.
    proxied = client.get("/", headers={"X-Forwarded-For": "198.51.100.7"})
    assert proxied.status_code == 403 and "proxy" in proxied.get_data(as_text=True)


def test_state_changing_requests_need_a_same_origin_origin(deskmark_env: dict[str, str]) -> None:
    client = create_app(Settings.from_env(deskmark_env, dotenv=None)).test_client()
    foreign = client.post("/replay-failed", headers={"Host": "rebind.attacker.example",
                                                     "Origin": "http://rebind.attacker.example"})
    assert foreign.status_code == 403
    cross = client.post("/replay-failed", headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403
    bare = client.post("/replay-failed")  # neither Origin nor Referer
    assert bare.status_code == 403 and "Origin" in bare.get_data(as_text=True)
    assert client.post("/jobs/dm-x/replay").status_code == 403
    ok = client.post("/replay-failed", headers={"Origin": "http://localhost"})
    assert ok.status_code == 303


def test_every_answer_forbids_framing_and_sniffing(deskmark_env: dict[str, str]) -> None:
    client = create_app(Settings.from_env(deskmark_env, dotenv=None)).test_client()
    for path in ("/", "/healthz"):
        headers = client.get(path).headers
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"


def test_with_a_token_bearer_or_basic_is_required(deskmark_env: dict[str, str]) -> None:
    env = {**deskmark_env, "DESKMARK_ADMIN_TOKEN": "let-me-in"}
    client = create_app(Settings.from_env(env, dotenv=None)).test_client()
    assert client.get("/", environ_base=REMOTE).status_code == 401
    assert client.get("/").status_code == 401  # loopback too, once a token is set
    bearer = {"Authorization": "Bearer let-me-in"}
    assert client.get("/", headers=bearer, environ_base=REMOTE).status_code == 200
    basic = {"Authorization": "Basic YWRtaW46bGV0LW1lLWlu"}  # admin:let-me-in
    assert client.get("/", headers=basic, environ_base=REMOTE).status_code == 200
    wrong = {"Authorization": "Bearer nope"}
    assert client.get("/", headers=wrong, environ_base=REMOTE).status_code == 401
    # With a token, /metrics needs it too; /readyz answers, without its details.
    assert client.get("/metrics", environ_base=REMOTE).status_code == 401
    assert client.get("/metrics", headers=bearer, environ_base=REMOTE).status_code == 200
    public = client.get("/readyz", environ_base=REMOTE).get_json()
    assert set(public) == {"status"}
    assert "redis" in client.get("/readyz", headers=bearer, environ_base=REMOTE).get_json()


def test_dashboard_lists_jobs_and_serves_the_marked_photo(deskmark_env: dict[str, str]) -> None:
    store = Store.from_url(deskmark_env["REDIS_URL"])
    store.create_job("dm-dashboardtest", {"vendor": "zendesk", "ticket_id": "123",
                                          "filename": "crack.jpg"})
    store.save_marked("dm-dashboardtest", b"\xff\xd8\xff fake jpeg", {"provider": "openai", "marks": [
        {"label": "crack", "drawn_by": "deskmark", "why": "the model's mark was missing",
         "region": [10, 10, 60, 60], "coverage": None}]})
    client = create_app(Settings.from_env(deskmark_env, dotenv=None)).test_client()
    page = client.get("/").get_data(as_text=True)
    assert "dm-dashboardtest" in page and "crack.jpg" in page
    assert "crack: circled by deskmark (the model&#39;s mark was missing)" in page
    image = client.get("/jobs/dm-dashboardtest/marked.jpg")
    assert image.status_code == 200 and image.mimetype == "image/jpeg"
    assert client.get("/jobs/dm-nothing/marked.jpg").status_code == 404


def test_a_static_oauth_token_that_ends_shows_on_the_dashboard_and_readyz(
        deskmark_env: dict[str, str], zendesk: SandboxZendesk, redis_url: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/12"
    env = {k: v for k, v in deskmark_env.items() if not k.startswith("ZENDESK_CLIENT_")}
    env.update({"REDIS_URL": url, "ZENDESK_OAUTH_TOKEN": "static-token-for-the-dashboard"})
    settings = Settings.from_env(env, dotenv=None)
    store = Store.from_url(url)
    store.r.flushdb()
    zendesk.oauth_token = "static-token-for-the-dashboard"
    zendesk.oauth_token_expires_at = time.time() + 25 * 60
    client = ZendeskClient(settings.of(ZENDESK))
    try:
        # What the worker does every ten minutes (worker.tasks: the reaper's thread).
        pipeline.record_credentials(pipeline.Runtime(settings=settings, store=store,
                                                     helpdesks={"zendesk": client},
                                                     marker=make_marker(settings)))
    finally:
        zendesk.oauth_token, zendesk.oauth_token_expires_at = None, None
        client.close()
    web = create_app(settings).test_client()
    page = web.get("/").get_data(as_text=True)
    assert "OAuth access token (ZENDESK_OAUTH_TOKEN): expires in" in page
    assert "deskmark cannot renew it: create an OAuth client" in page
    details = web.get("/readyz").get_json()
    assert "expires in" in details["zendesk credential"] and "ZENDESK_CLIENT_ID" in details["zendesk credential"]
    assert "static-token-for-the-dashboard" not in page + str(details)
    store.r.flushdb()
    store.r.close()


def test_the_dashboard_and_check_give_the_signers_fingerprint(deskmark_env: dict[str, str],
                                                               redis_url: str, tmp_path: Path) -> None:
    from worker import credentials

    url = redis_url.rsplit("/", 1)[0] + "/12"
    store = Store.from_url(url)
    store.r.flushdb()
    keys = credentials.Keys.from_json(store.shared_signer(lambda: credentials.throwaway_keys().to_json()))
    fingerprint = credentials.fingerprint(credentials.issuer_pem(keys.chain_pem))
    env = {**deskmark_env, "REDIS_URL": url}
    page = create_app(Settings.from_env(env, dotenv=None)).test_client().get("/").get_data(as_text=True)
    assert f"deskmark verify --trust {fingerprint} PHOTO" in page
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DESKMARK_", "ZENDESK_"))}
    checked = subprocess.run([sys.executable, "-m", "deskmark.cli", "check"], env={**clean, **env},
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert f"credentials    ok   the deployment's throwaway signer; elsewhere: deskmark verify --trust {fingerprint}" \
        in checked.stdout, checked.stdout
    store.r.flushdb()
    store.r.close()


def test_deliveries_list_each_webhook_its_answer_and_why_never_its_body(
        deskmark_env: dict[str, str], zendesk: SandboxZendesk) -> None:
    """In-process: the web app's own delivery log, read back through the Deliveries page."""
    import json
    import uuid

    from tests.helpers import free_port

    url = deskmark_env["REDIS_URL"].rsplit("/", 1)[0] + "/8"
    Store.from_url(url).r.flushdb()
    client = create_app(Settings.from_env({**deskmark_env, "REDIS_URL": url}, dotenv=None)).test_client()
    secret = f"body-secret-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"ticket_id": "777", "note": secret}).encode()
    good = client.post("/webhooks/zendesk", data=body, headers=zendesk.signed_headers(body, deskmark_env[
        "ZENDESK_WEBHOOK_SECRET"]))
    again = client.post("/webhooks/zendesk", data=body, headers=zendesk.signed_headers(body, deskmark_env[
        "ZENDESK_WEBHOOK_SECRET"]))
    forged = client.post("/webhooks/zendesk", data=body, headers={
        **zendesk.signed_headers(body, deskmark_env["ZENDESK_WEBHOOK_SECRET"]),
        "X-Zendesk-Webhook-Signature": "Zm9yZ2Vk"})
    freshdesk = client.post("/webhooks/freshdesk", data=b"not json", headers={
        "X-Deskmark-Secret": deskmark_env["FRESHDESK_WEBHOOK_SECRET"]})
    assert (good.status_code, again.status_code, forged.status_code, freshdesk.status_code) == (202, 200, 401, 400)
    lines = Store.from_url(url).deliveries(["zendesk", "freshdesk"])
    # Newest first (two answered within the same millisecond may come in either order).
    assert sorted((d["vendor"], d["status"], d["outcome"]) for d in lines) == [
        ("freshdesk", 400, "malformed"), ("zendesk", 200, "duplicate"), ("zendesk", 202, "enqueued"),
        ("zendesk", 401, "rejected")]
    assert [d["at"] for d in lines] == sorted((d["at"] for d in lines), reverse=True)
    [enqueued] = [d for d in lines if d["outcome"] == "enqueued"]
    assert enqueued["ticket"] == "777"
    [rejected] = [d for d in lines if d["status"] == 401]
    assert "signature" in rejected["detail"]
    page = client.get("/deliveries").get_data(as_text=True)
    assert "401" in page and "missing, wrong or stale Zendesk signature" in page and "#777: its photos" in page
    assert secret not in page and secret not in json.dumps(lines)  # never a body
    assert client.get("/deliveries?vendor=freshdesk").get_data(as_text=True).count("<tr data-outcome") == 1
    # The search by ticket: the job of ticket 777's photo, once the worker made it.
    store = Store.from_url(url)
    store.create_job("dm-search-1", {"vendor": "zendesk", "ticket_id": "777", "filename": "a.jpg"})
    found = client.get("/?ticket=777").get_data(as_text=True)
    assert 'data-job="dm-search-1"' in found and "Photos of ticket #777" in found
    assert 'data-job="dm-search-1"' not in client.get("/?ticket=778").get_data(as_text=True)
    # Redis down: 503 and what to check, on every page, not a 500.
    down = create_app(Settings.from_env({**deskmark_env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
                                        dotenv=None)).test_client()
    for path in ("/", "/deliveries", "/jobs/dm-search-1"):
        answer = down.get(path)
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "30"
        assert "deskmark cannot reach Redis" in answer.get_data(as_text=True)
