"""The `deskmark` command: demo, check, annotate, verify, replay, web, worker."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import kombu.exceptions
import redis

from deskmark import __version__
from integrations.config import ConfigError, Settings, masked_url
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
    settings = _settings_or_exit()
    try:  # one clear line before Celery's own retries, which say the same at length
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3).ping()
    except redis.RedisError as exc:
        print(f"deskmark worker: Redis is unreachable at {masked_url(settings.redis_url)} ({exc}): waiting "
              "for it; start Redis, or set REDIS_URL to where it runs", file=sys.stderr, flush=True)
    from worker import fonts

    for problem in fonts.problems():  # labels in some scripts would be boxes, or unshaped
        print(f"deskmark worker: warning: {problem}", file=sys.stderr)
    from worker.tasks import app

    # Threads: each job spends most of its time waiting on OpenAI and the helpdesk.
    argv = (["--quiet"] if args.quiet else []) + ["worker", "--pool", args.pool, "--concurrency", str(args.concurrency),
            "--loglevel", args.loglevel, "--without-gossip", "--without-mingle"]
    app.worker_main(argv)
    return 0


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help, where it has one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, [], argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def _command(sub: Any, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=summary, description=description,
                                                     formatter_class=_Help)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The `deskmark` command line; `subcommands(parser)` gives its commands by name."""
    parser = argparse.ArgumentParser(
        prog="deskmark", formatter_class=_Help,
        description="Marks the damage on customers' product photos in helpdesk tickets: a worker "
                    "beside Zendesk, Freshdesk, Gorgias or Help Scout that circles the damage, puts "
                    "the marked photo back as a private note and sends it to warranty review.",
        epilog="Configuration comes from environment variables (or a .env file): see README.md. "
               "Start with `deskmark demo`, then `deskmark check`.")
    parser.add_argument("--version", action="version", version=f"deskmark {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = _command(sub, "demo", "the whole flow on a built-in sandbox helpdesk, no accounts",
                    "Runs the whole flow on this machine with nothing to sign up for: an embedded "
                    "Redis, the web app and a worker, and a sandbox helpdesk with a sample ticket "
                    "and photo. Marks it with the local annotator (or OpenAI when OPENAI_API_KEY "
                    "is set), prints where the marked photo and the dashboard are, and exits 0 "
                    "once the ticket has its note.")
    demo.add_argument("--serve", action="store_true", help="keep running after the note lands")
    demo.add_argument("--out", default="deskmark-demo", metavar="DIR", help="where to write the marked photo")
    demo.add_argument("--port", type=int, default=0, help="web port (0: a free one)")
    demo.add_argument("--helpdesk", choices=list(HELPDESKS), default="zendesk",
                      help="which sandbox helpdesk to run the flow on")
    demo.set_defaults(func=cmd_demo)

    check = _command(sub, "check", "validate the configuration and each vendor's credentials",
                     "Reads the configuration and makes one harmless call to every configured "
                     "vendor (Redis, OpenAI, each helpdesk, Slack). Prints a line per vendor, with "
                     "what to change for each FAIL, and exits 1 if any fails.")
    check.set_defaults(func=cmd_check)

    annotate = _command(sub, "annotate", "mark photos on disk, no helpdesk involved",
                        "Marks photos on disk through the worker's own pipeline and writes "
                        "<name>-marked.jpg and <name>-marked.json (boxes, who drew each mark, "
                        "model, cost). Uses OpenAI when OPENAI_API_KEY is set, else the local "
                        "annotator, whose circle is a guess and says so.")
    annotate.add_argument("images", nargs="+", metavar="IMAGE", help="photos to mark")
    annotate.add_argument("-o", "--out", metavar="DIR", help="where to write (unset: beside each photo)")
    annotate.add_argument("--prompt", help="edit prompt template (unset: DESKMARK_PROMPT or the built-in one)")
    annotate.add_argument("--force", action="store_true",
                          help="replace outputs that exist (never through a symbolic link)")
    annotate.add_argument("--debug", action="store_true",
                          help="also write the model's raw output (<name>-model.png) and the strokes "
                               "taken from it (<name>-strokes.png), and say why a mark was redrawn")
    annotate.set_defaults(func=cmd_annotate)

    trial = _command(sub, "try", "run the whole pipeline on one real ticket, writing nothing to it",
                     "Marks the customer photos of one real ticket as the worker would, and writes "
                     "to DIR what it would post (marked photos, the note as HTML and text, the tags "
                     "and group, the Slack messages), without writing anything to the ticket. "
                     "Asks before paying for edits unless --yes; the spend counts against "
                     "DESKMARK_DAILY_BUDGET_USD.")
    trial.add_argument("helpdesk", choices=list(HELPDESKS), metavar="HELPDESK",
                       help=f"one of: {', '.join(HELPDESKS)}")
    trial.add_argument("ticket_id", metavar="TICKET_ID", help="the ticket (conversation) number")
    trial.add_argument("--out", default="deskmark-try", metavar="DIR", help="where to write what deskmark would post")
    trial.add_argument("--yes", action="store_true", help="pay for the edits without asking")
    trial.set_defaults(func=cmd_try)

    verify = _command(sub, "verify", "check a delivered photo's content credentials (C2PA)",
                      "Reads the content credentials in delivered photos: the original's hash, who "
                      "marked what with which model, the job and ticket. Exits 1 when a photo has "
                      "none, they do not validate (it was changed after signing), or someone other "
                      "than this deployment signed them.")
    verify.add_argument("images", nargs="+", metavar="IMAGE", help="photos to check")
    verify.add_argument("--trust", metavar="CERT_FILE|SHA256",
                        help="the signer to accept, on a machine that is not the deployment: its CA "
                             "certificate (PEM) or that CA's SHA-256 fingerprint, which deskmark check "
                             "prints (unset: DESKMARK_C2PA_CERT, else the throwaway signer in Redis)")
    verify.set_defaults(func=cmd_verify)

    replay = _command(sub, "replay", "re-run dead-lettered jobs (idempotently)",
                      "Queues dead-lettered jobs again. A job that already posted its note does "
                      "not post it twice.")
    replay.add_argument("job_ids", nargs="*", metavar="JOB_ID", help="jobs to re-run (the dashboard lists them)")
    replay.add_argument("--failed", action="store_true", help="every job in the dead-letter list")
    replay.set_defaults(func=cmd_replay)

    web = _command(sub, "web", "serve the webhook app and dashboard under gunicorn",
                   "Serves the webhooks, the dashboard, /healthz, /readyz and /metrics under "
                   "gunicorn. Listens on loopback unless --host says otherwise: put a proxy with "
                   "TLS in front before listening on 0.0.0.0 (docker-compose does).")
    # Loopback unless asked: bare gunicorn is not for the internet (slow clients hold its
    # threads); docker-compose passes --host 0.0.0.0 behind its Caddy.
    web.add_argument("--host", default="127.0.0.1", help="address to listen on")
    web.add_argument("--port", type=int, default=8000, help="port to listen on")
    web.add_argument("--workers", type=int, default=web_workers(),
                     help="gunicorn worker processes (2 per CPU, at most 8)")
    # Each webhook waits on one Redis round trip: threads overlap those waits.
    web.add_argument("--threads", type=int, default=16, help="threads per worker")
    web.set_defaults(func=cmd_web)

    worker = _command(sub, "worker", "run the Celery worker that marks photos",
                      "Runs the Celery worker: downloads photos, marks them, posts the notes, "
                      "escalates and notifies Slack. Run as many as you like, on any hosts, "
                      "against the same Redis.")
    # Threads: a job spends almost all its time waiting on OpenAI (20 s to 2 min per edit);
    # image work inside is bounded separately (worker.marking.IMAGE_SLOTS).
    worker.add_argument("--concurrency", type=int, default=64, help="jobs in flight per worker process")
    worker.add_argument("--pool", default="threads", choices=["threads", "prefork", "solo"], help="Celery pool")
    worker.add_argument("--loglevel", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    worker.add_argument("--quiet", action="store_true", help="no start-up banner")
    worker.add_argument("--healthcheck", action="store_true",
                        help="do not run a worker: exit 0 if this machine's worker consumer ran its "
                             "loop recently, else 1 (docker-compose's health check)")
    worker.add_argument("--max-age", type=float, default=60.0, metavar="SECONDS",
                        help="with --healthcheck: how recent the consumer's last beat must be")
    worker.set_defaults(func=cmd_worker)
    return parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {name: command for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name, command in action.choices.items()}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (redis.ConnectionError, redis.TimeoutError, kombu.exceptions.OperationalError) as exc:
        # One line, not a traceback: what is down, where it was looked for, what to do.
        where = masked_url(os.environ.get("REDIS_URL") or Settings().redis_url)
        reason = str(exc).split("\n")[0][:200]
        print(f"deskmark {args.command}: Redis is unreachable at {where} ({reason}): start Redis, or "
              "set REDIS_URL to where it runs", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
