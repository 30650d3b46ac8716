"""The `deskmark` command: demo, check, annotate, verify, replay, web, worker."""

from __future__ import annotations

import argparse
import os
import sys
import time

from integrations.config import ConfigError, Settings
from integrations.models import retirement_problem, retirement_warning
from integrations.registry import HELPDESKS

__all__ = ["main"]


def _settings_or_exit() -> Settings:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"deskmark: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.edit_provider == "openai":
        problem = retirement_problem(settings.edit_model)
        if problem:
            print(f"deskmark: {problem}", file=sys.stderr)
            raise SystemExit(2)
        warning = retirement_warning(settings.edit_model)
        if warning:
            print(f"deskmark: warning: {warning}", file=sys.stderr)
    for warning in settings.warnings():
        print(f"deskmark: warning: {warning}", file=sys.stderr)
    return settings


def cmd_demo(args: argparse.Namespace) -> int:
    from deskmark.demo import run_demo

    return run_demo(out_dir=args.out, serve=args.serve, port=args.port, helpdesk=args.helpdesk)


def cmd_check(args: argparse.Namespace) -> int:
    from deskmark.check import run_check

    return run_check()


def cmd_annotate(args: argparse.Namespace) -> int:
    from deskmark.annotate import run_annotate

    return run_annotate(args.images, args.out, args.prompt, _settings_or_exit(), debug=args.debug,
                        force=args.force)


def cmd_try(args: argparse.Namespace) -> int:
    from deskmark.trial import run_try

    return run_try(args.helpdesk, args.ticket_id, args.out, args.yes, _settings_or_exit())


def cmd_verify(args: argparse.Namespace) -> int:
    from deskmark.verify import deployment_trust, parse_trust, run_verify

    if args.trust:
        try:
            return run_verify(args.images, parse_trust(args.trust))
        except ValueError as exc:
            print(f"deskmark verify: {exc}", file=sys.stderr)
            return 2
    try:
        settings = Settings.from_env()
    except ConfigError:
        settings = Settings()
    signer = None
    if not settings.c2pa_cert:
        import redis

        from worker.store import Store

        try:
            signer = Store.from_url(settings.redis_url, timeout=3).signer_if_any()
        except redis.RedisError as exc:
            print(f"deskmark verify: this deployment's signer is in Redis, which is unreachable "
                  f"({exc}); without it, or --trust, no signature can be called ours", file=sys.stderr)
    return run_verify(args.images, deployment_trust(settings.c2pa_cert, signer))


def cmd_replay(args: argparse.Namespace) -> int:
    from worker.replay import replay

    if not args.job_ids and not args.failed:
        print("deskmark replay: give JOB_ID… or --failed", file=sys.stderr)
        return 2
    return replay(_settings_or_exit(), args.job_ids, args.failed)


def web_workers() -> int:
    """Two gunicorn workers per CPU: a worker's threads share one interpreter lock, and while
    one worker waits to be scheduled the other keeps the core busy. On two cores, 4 x 16
    threads took 15-25% more webhooks/s than 2 x 32, with a lower p99 (bench/ingest.py)."""
    return min(8, 2 * len(os.sched_getaffinity(0)))


def cmd_web(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()  # fail here, with the message, rather than in every worker
    if settings.admin_token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"deskmark web: WARNING: listening on {args.host} without DESKMARK_ADMIN_TOKEN: the "
              "dashboard and its admin API answer only to this machine (a loopback peer and Host, "
              "not through a proxy); everyone else gets 403. Set DESKMARK_ADMIN_TOKEN to use the "
              "dashboard from elsewhere. The webhooks work either way.", file=sys.stderr, flush=True)
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # /metrics must add up the counters of every gunicorn worker.
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="deskmark-metrics-")
    argv = ["gunicorn", "webhooks:create_app()", "--bind", f"{args.host}:{args.port}",
            "--workers", str(args.workers), "--threads", str(args.threads),
            "--worker-class", "gthread", "--timeout", "30", "--config", "python:deskmark.gunicorn_conf"]
    os.execvp(sys.executable, [sys.executable, "-m", *argv])
    return 0  # not reached


def worker_health(max_age: float) -> int:
    """`deskmark worker --healthcheck`: 0 while the worker's consumer beats (worker.liveness)."""
    from worker.liveness import beat_file

    path = beat_file()
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        print(f"deskmark worker: unhealthy: no consumer beat yet ({path})", file=sys.stderr)
        return 1
    if age > max_age:
        print(f"deskmark worker: unhealthy: the consumer has not run its loop for {age:.0f} s "
              "(Redis unreachable, or the consumer is stuck: see the worker's log)", file=sys.stderr)
        return 1
    print(f"deskmark worker: healthy (consumer beat {age:.0f} s ago)")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    if args.healthcheck:
        return worker_health(args.max_age)
    if "MALLOC_ARENA_MAX" not in os.environ:
        # With dozens of threads, glibc keeps a malloc arena per thread and holds on to freed
        # image buffers: two arenas keep the worker's memory flat. (Read at process start.)
        os.execve(sys.executable, [sys.executable, "-m", "deskmark.cli", *sys.argv[1:]],
                  {**os.environ, "MALLOC_ARENA_MAX": "2"})
    _settings_or_exit()
    from worker.tasks import app

    # Threads: each job spends most of its time waiting on OpenAI and the helpdesk.
    argv = (["--quiet"] if args.quiet else []) + ["worker", "--pool", args.pool, "--concurrency", str(args.concurrency),
            "--loglevel", args.loglevel, "--without-gossip", "--without-mingle"]
    app.worker_main(argv)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="deskmark",
        description="Marks the damage on customers' product photos in helpdesk tickets.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the whole flow on a built-in sandbox helpdesk")
    demo.add_argument("--serve", action="store_true", help="keep running after the note lands")
    demo.add_argument("--out", default="deskmark-demo", help="where to write the marked photo")
    demo.add_argument("--port", type=int, default=0, help="web port (default: a free one)")
    demo.add_argument("--helpdesk", choices=list(HELPDESKS), default="zendesk",
                      help="which sandbox helpdesk to run the flow on")
    demo.set_defaults(func=cmd_demo)

    check = sub.add_parser("check", help="validate the configuration and each vendor's credentials")
    check.set_defaults(func=cmd_check)

    annotate = sub.add_parser("annotate", help="mark photos on disk, no helpdesk involved")
    annotate.add_argument("images", nargs="+", metavar="IMAGE")
    annotate.add_argument("-o", "--out", help="where to write (default: beside each photo)")
    annotate.add_argument("--prompt", help="edit prompt template (default: DESKMARK_PROMPT or built in)")
    annotate.add_argument("--force", action="store_true",
                          help="replace outputs that exist (never through a symbolic link)")
    annotate.add_argument("--debug", action="store_true",
                          help="also write the model's raw output (<name>-model.png) and the strokes "
                               "taken from it (<name>-strokes.png), and say why a mark was redrawn")
    annotate.set_defaults(func=cmd_annotate)

    trial = sub.add_parser(
        "try", help="run the whole pipeline on one real ticket, writing nothing to it",
        description="Marks the customer photos of one real ticket as the worker would, and writes "
                    "to DIR what it would post (marked photos, the note as HTML and text, the tags "
                    "and group, the Slack messages), without writing anything to the ticket. "
                    "Asks before paying for edits unless --yes; the spend counts against "
                    "DESKMARK_DAILY_BUDGET_USD.")
    trial.add_argument("helpdesk", choices=list(HELPDESKS), metavar="HELPDESK",
                       help=f"one of: {', '.join(HELPDESKS)}")
    trial.add_argument("ticket_id", metavar="TICKET_ID")
    trial.add_argument("--out", default="deskmark-try", metavar="DIR",
                       help="where to write what deskmark would post (default: deskmark-try)")
    trial.add_argument("--yes", action="store_true", help="pay for the edits without asking")
    trial.set_defaults(func=cmd_try)

    verify = sub.add_parser("verify", help="read and check the content credentials (C2PA) of "
                                           "delivered photos; exit 1 if any has none, they fail, or "
                                           "someone other than this deployment signed them")
    verify.add_argument("images", nargs="+", metavar="IMAGE")
    verify.add_argument("--trust", metavar="CERT_FILE|SHA256",
                        help="the signer to accept, on a machine that is not the deployment: its CA "
                             "certificate (PEM) or that CA's SHA-256 fingerprint (deskmark check "
                             "prints it); default: DESKMARK_C2PA_CERT, else the throwaway signer in Redis")
    verify.set_defaults(func=cmd_verify)

    replay = sub.add_parser("replay", help="re-run dead-lettered jobs (idempotently)")
    replay.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    replay.add_argument("--failed", action="store_true", help="every job in the dead-letter list")
    replay.set_defaults(func=cmd_replay)

    web = sub.add_parser("web", help="serve the webhook app under gunicorn")
    # Loopback unless asked: bare gunicorn is not for the internet (slow clients hold its
    # threads); docker-compose passes --host 0.0.0.0 behind its Caddy.
    web.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default: 127.0.0.1; put a proxy in front before 0.0.0.0)")
    web.add_argument("--port", type=int, default=8000)
    web.add_argument("--workers", type=int, default=web_workers(),
                     help="gunicorn worker processes (default: 2 per CPU, at most 8)")
    # Each webhook waits on one Redis round trip: threads overlap those waits.
    web.add_argument("--threads", type=int, default=16, help="threads per worker (default: 16)")
    web.set_defaults(func=cmd_web)

    worker = sub.add_parser("worker", help="run the Celery worker")
    # Threads: a job spends almost all its time waiting on OpenAI (20 s to 2 min per edit);
    # image work inside is bounded separately (worker.marking.IMAGE_SLOTS).
    worker.add_argument("--concurrency", type=int, default=64)
    worker.add_argument("--pool", default="threads", choices=["threads", "prefork", "solo"])
    worker.add_argument("--loglevel", default="INFO")
    worker.add_argument("--quiet", action="store_true", help="no start-up banner")
    worker.add_argument("--healthcheck", action="store_true",
                        help="do not run a worker: exit 0 if this machine's worker consumer ran its "
                             "loop recently, else 1 (docker-compose's health check)")
    worker.add_argument("--max-age", type=float, default=60.0, metavar="SECONDS",
                        help="with --healthcheck: how recent the consumer's last beat must be")
    worker.set_defaults(func=cmd_worker)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
