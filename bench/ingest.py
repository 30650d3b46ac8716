"""Webhook ingestion: deskmark's signed Zendesk endpoint against a bare Flask no-op, both under
the same gunicorn settings, measured side by side with wrk in one run.

    apt-get install wrk && python bench/ingest.py [--rounds 8] [--seconds 4] [--connections 32]
                                               [--rate R]

Both servers run for the whole benchmark and take short turns under load (bare, deskmark, then
deskmark, bare, …), so a shared machine that slows down or speeds up during the run weighs on
both alike; the ratio reported is the median of the rounds. The p99 is taken over every request
of every turn (wrk hands over each latency it saw), and each turn's own p99 is shown too.
Besides requests/s, it reports the CPU time the gunicorn workers spent per request, which
varies less from run to run.

Every request is a distinct, validly signed delivery (its own event id in the body, so its own
signature, and its own X-Zendesk-Webhook-Invocation-Id): deskmark must verify, de-duplicate and
enqueue each one, and no request takes the cheaper duplicate path; after each round the queue is
counted to prove it. The signed bodies are made beforehand (wrk's Lua has no HMAC) and read from
a file; each round starts on an empty Redis.
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
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deskmark.cli import web_workers  # noqa: E402
from deskmark.redis_server import EmbeddedRedis, _free_port  # noqa: E402
from deskmark.sandbox.zendesk import SandboxZendesk  # noqa: E402
from integrations.zendesk.webhook import ZendeskSignature  # noqa: E402

SECRET = "bench-secret"
GUNICORN = ["--worker-class", "gthread", "--config", "python:deskmark.gunicorn_conf"]
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Zendesk-Webhook-Signature-Timestamp"] = %(timestamp)s
local signatures, bodies, n, count = {}, {}, 0, 0
local threads, thread_counter = %(threads)d, 0
function setup(thread)
  thread:set("thread_no", thread_counter)
  thread_counter = thread_counter + 1
end
function init(args)
  -- Each wrk thread takes every `threads`-th signed request, so no two send the same one
  -- (`thread_no` is the global setup() gave this thread).
  local i = 0
  for line in io.lines(%(requests)s) do
    if i %% threads == thread_no then
      local tab = line:find("\t", 1, true)
      count = count + 1
      signatures[count] = line:sub(1, tab - 1)
      bodies[count] = line:sub(tab + 1)
    end
    i = i + 1
  end
end
function request()
  n = n %% count + 1
  wrk.headers["X-Zendesk-Webhook-Signature"] = signatures[n]
  wrk.headers["X-Zendesk-Webhook-Invocation-Id"] = thread_no .. "-" .. n
  return wrk.format(nil, nil, nil, bodies[n])
end
%(delay)s
function done(summary, latency, requests)  -- every latency seen, to pool the turns
  local seen = {}
  for i = 1, #latency do
    local us, count = latency(i)
    seen[#seen + 1] = string.format("%%d:%%d", us, count)
  end
  io.write("latency-us " .. table.concat(seen, ",") .. "\\n")
end
"""


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def run_wrk(url: str, script: Path, seconds: int, connections: int) -> dict[str, Any]:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    seen = re.search(r"^latency-us (.*)$", out, re.M)
    latencies = Counter({int(us): int(n) for us, n in (pair.split(":") for pair in
                                                        (seen.group(1).split(",") if seen else []))})
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
            "p50": ms("50%"), "p99": ms("99%"), "latencies": latencies,
            "errors": float(non_2xx.group(1)) if non_2xx else 0.0}


def percentile_ms(latencies: Counter[int], fraction: float) -> float:
    """The latency below which `fraction` of all the requests answered, in ms."""
    rank, total = fraction * sum(latencies.values()), 0
    for us in sorted(latencies):
        total += latencies[us]
        if total >= rank:
            return us / 1000
    return 0.0


def serve(app: str, env: dict[str, str], port: int, gunicorn: list[str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}",
                                *gunicorn], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{app} did not start")


def cpu_seconds(server: subprocess.Popen[bytes]) -> float:
    """User + system CPU time of the server's gunicorn workers (its children), from /proc."""
    total = 0
    for task in Path(f"/proc/{server.pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="turns under load for each app")
    parser.add_argument("--seconds", type=int, default=4, help="length of one turn")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=int, default=0,
                        help="offer about this many requests/s in all, for the p99 of a busy hour "
                             "rather than of saturation (default 0: as many as each app takes)")
    parser.add_argument("--distinct", type=int, default=60000,
                        help="distinct signed requests prepared (more than one turn sends)")
    parser.add_argument("--workers", type=int, default=web_workers(),
                        help="gunicorn workers, for both apps (default: deskmark web's)")
    parser.add_argument("--threads", type=int, default=16,
                        help="threads per worker, for both apps (default: deskmark web's)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    import redis as redis_lib

    redis = EmbeddedRedis().start()
    queue = redis_lib.Redis.from_url(redis.url)
    zendesk = SandboxZendesk()  # only to build a realistic signed event; not started
    ticket = zendesk.create_ticket("Bench", "bench")
    comment = zendesk.add_comment(ticket, zendesk.CUSTOMER_ID, "photo", [("p.jpg", b"\xff\xd8\xff", "image/jpeg")],
                                  notify=False)
    event = zendesk.event_for(ticket, comment, comment.attachments[0], zendesk.CUSTOMER_ID)
    timestamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    folder = Path(tempfile.mkdtemp())
    # More distinct requests than the fastest app answers in one turn (the queue is emptied
    # between turns, so the same ones serve every turn).
    signer = ZendeskSignature(SECRET)
    with (folder / "requests.tsv").open("w") as out:
        for n in range(args.distinct):
            body = json.dumps({**event, "id": f"01BENCH{n:019d}"})
            out.write(f"{signer.generate(timestamp, body.encode())}\t{body}\n")
    script = folder / "zendesk.lua"
    # Paced: each connection waits connections/rate seconds before its next request.
    delay = f"function delay() return {args.connections * 1000 // args.rate} end" if args.rate else ""
    script.write_text(LUA % {"timestamp": lua_string(timestamp), "delay": delay, "threads": 2,
                             "requests": lua_string(str(folder / "requests.tsv"))})
    env = {**os.environ, "REDIS_URL": redis.url, "ZENDESK_BASE_URL": "https://bench.zendesk.com",
           "ZENDESK_EMAIL": "bench@example.com", "ZENDESK_API_TOKEN": "bench", "ZENDESK_WEBHOOK_SECRET": SECRET,
           "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp()}
    gunicorn = ["--workers", str(args.workers), "--threads", str(args.threads), *GUNICORN]
    apps = {"bare Flask no-op": "bench.bare_app:create_app()", "deskmark": "webhooks:create_app()"}
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in apps}
    try:
        for name, app in apps.items():
            port = _free_port()
            servers[name] = (serve(app, env, port, gunicorn), f"http://127.0.0.1:{port}/webhooks/zendesk")
            run_wrk(servers[name][1], script, 2, args.connections)  # warm up
        order = list(apps)
        for turn in range(args.rounds):
            for name in order if turn % 2 == 0 else order[::-1]:
                server, url = servers[name]
                queue.flushdb()
                cpu_before = cpu_seconds(server)
                result = run_wrk(url, script, args.seconds, args.connections)
                result["cpu_us"] = (cpu_seconds(server) - cpu_before) / result["requests"] * 1e6
                result["enqueued"] = float(queue.llen("deskmark"))
                rounds[name].append(result)
                print(f"round {turn + 1}/{args.rounds} {name:<17} {result['rps']:>7.0f} req/s  "
                      f"p99 {result['p99']:6.2f} ms", file=sys.stderr, flush=True)
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(10)
        redis.cleanup()

    paced = f", paced to ~{args.rate} requests/s" if args.rate else ""
    print(f"\nwrk -t2 -c{args.connections}{paced}, {args.rounds} turns of {args.seconds} s each, taken alternately; "
          f"gunicorn {' '.join(gunicorn[:6])}; same machine")
    print(f"{'round':<7}{'app':<18}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}"
          f"{'requests':>10}{'non-2xx':>9}{'enqueued':>10}")
    for turn in range(args.rounds):
        for name in apps:
            r = rounds[name][turn]
            enqueued = f"{r['enqueued']:.0f}" if name == "deskmark" else "-"
            print(f"{turn + 1:<7}{name:<18}{r['rps']:>9.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['cpu_us']:>12.0f}"
                  f"{r['requests']:>10.0f}{r['errors']:>9.0f}{enqueued:>10}")
    ours, bare = rounds["deskmark"], rounds["bare Flask no-op"]
    ratios = [o["rps"] / b["rps"] for o, b in zip(ours, bare, strict=True)]
    cpu_ratios = [b["cpu_us"] / o["cpu_us"] for o, b in zip(ours, bare, strict=True)]
    p99s = [o["p99"] for o in ours]
    pooled: dict[str, Counter[int]] = {name: sum((r["latencies"] for r in rounds[name]), Counter())
                                       for name in apps}
    # Every answered request enqueued once (wrk may have sent a few more it never saw answered).
    complete = all(o["enqueued"] >= o["requests"] and o["errors"] == 0 for o in ours) and all(
        o["requests"] < args.distinct for o in ours)
    if args.rate:  # both apps answer what is offered: the ratio says nothing
        print(f"\npaced: deskmark answered {median([o['rps'] for o in ours]):.0f} requests/s, the no-op "
              f"{median([b['rps'] for b in bare]):.0f} (medians; offered ~{args.rate})")
    else:
        print(f"\ndeskmark / bare = {median(ratios):.0%} of the no-op's requests/s, median of "
              f"{', '.join(f'{r:.0%}' for r in ratios)} (goal >= 45%)")
    print(f"CPU per request: the no-op's is {median(cpu_ratios):.0%} of deskmark's (median)")
    goal = "<= 15 ms, paced at 1,000/s" if args.rate else "< 50 ms"
    print(f"deskmark p99 {percentile_ms(pooled['deskmark'], 0.99):.1f} ms over all "
          f"{sum(pooled['deskmark'].values())} requests of the turns (goal {goal}); the no-op's "
          f"{percentile_ms(pooled['bare Flask no-op'], 0.99):.1f} ms")
    print(f"p99 per turn: deskmark's median {median(p99s):.1f} ms, worst {max(p99s):.1f} ms; the "
          f"no-op's median {median([b['p99'] for b in bare]):.1f} ms, worst {max(b['p99'] for b in bare):.1f} ms")
    print(f"every request enqueued, none failed: {complete}")
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
