"""Webhook ingestion: deskmark's signed Zendesk endpoint against a bare Flask no-op, both under
the same gunicorn settings, measured side by side with wrk in one run.

    apt-get install wrk && python bench/ingest.py [--seconds 15] [--connections 32]

Every request is a distinct delivery (its own X-Zendesk-Webhook-Invocation-Id), so deskmark
must verify, de-duplicate and enqueue each one; afterwards the queue is counted to prove it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deskmark.redis_server import EmbeddedRedis, _free_port  # noqa: E402
from deskmark.sandbox.zendesk import SandboxZendesk  # noqa: E402
from integrations.zendesk.webhook import ZendeskSignature  # noqa: E402

SECRET = "bench-secret"
GUNICORN = ["--workers", "2", "--threads", "32", "--worker-class", "gthread",
            "--config", "python:deskmark.gunicorn_conf"]
LUA = """
wrk.method = "POST"
wrk.body = %(body)s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Zendesk-Webhook-Signature"] = %(signature)s
wrk.headers["X-Zendesk-Webhook-Signature-Timestamp"] = %(timestamp)s
local prefix, n = "", 0
function init(args) prefix = tostring({}):sub(10) .. os.time() end
function request()
  n = n + 1
  wrk.headers["X-Zendesk-Webhook-Invocation-Id"] = prefix .. "-" .. n
  return wrk.format()
end
"""


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def run_wrk(url: str, script: Path, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
            "p50": ms("50%"), "p99": ms("99%"),
            "errors": float(non_2xx.group(1)) if non_2xx else 0.0}


def serve(app: str, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}",
                                *GUNICORN], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{app} did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    redis = EmbeddedRedis().start()
    zendesk = SandboxZendesk()  # only to build a realistic signed event; not started
    ticket = zendesk.create_ticket("Bench", "bench")
    comment = zendesk.add_comment(ticket, zendesk.CUSTOMER_ID, "photo", [("p.jpg", b"\xff\xd8\xff", "image/jpeg")],
                                  notify=False)
    body = json.dumps(zendesk.event_for(ticket, comment, comment.attachments[0], zendesk.CUSTOMER_ID))
    timestamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    script = Path(tempfile.mkdtemp()) / "zendesk.lua"
    script.write_text(LUA % {"body": lua_string(body), "timestamp": lua_string(timestamp),
                             "signature": lua_string(ZendeskSignature(SECRET).generate(timestamp, body.encode()))})
    env = {**os.environ, "REDIS_URL": redis.url, "ZENDESK_BASE_URL": "https://bench.zendesk.com",
           "ZENDESK_EMAIL": "bench@example.com", "ZENDESK_API_TOKEN": "bench", "ZENDESK_WEBHOOK_SECRET": SECRET,
           "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp()}
    results = {}
    for name, app in (("bare Flask no-op", "bench.bare_app:create_app()"),
                      ("deskmark", "webhooks:create_app()")):
        port = _free_port()
        server = serve(app, env, port)
        try:
            url = f"http://127.0.0.1:{port}/webhooks/zendesk"
            run_wrk(url, script, 2, args.connections)  # warm up
            import redis as redis_lib

            queue = redis_lib.Redis.from_url(redis.url)
            queue.flushdb()
            results[name] = run_wrk(url, script, args.seconds, args.connections)
            results[name]["enqueued"] = float(queue.llen("deskmark"))
        finally:
            server.terminate()
            server.wait(10)
    redis.cleanup()

    print(f"\nwrk -t2 -c{args.connections} -d{args.seconds}s, gunicorn {' '.join(GUNICORN[:6])}, same machine")
    print(f"{'app':<18}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}{'non-2xx':>9}{'enqueued':>10}")
    for name, r in results.items():
        enq = f"{r['enqueued']:.0f}" if name == "deskmark" else "-"
        print(f"{name:<18}{r['rps']:>9.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['requests']:>10.0f}"
              f"{r['errors']:>9.0f}{enq:>10}")
    ours, bare = results["deskmark"], results["bare Flask no-op"]
    print(f"\ndeskmark / bare = {ours['rps'] / bare['rps']:.0%} of the no-op's requests/s (goal >= 50%); "
          f"p99 {ours['p99']:.1f} ms (goal < 50 ms); "
          f"no request lost: {ours['enqueued'] >= ours['requests'] and ours['errors'] == 0}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
