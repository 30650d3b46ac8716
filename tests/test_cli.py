"""The `deskmark` command as a deployer meets it: help that says what each command does and its
defaults, a version, and one clear line (no traceback) when Redis is down."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

from deskmark import cli
from tests.helpers import free_port


def test_every_subcommand_describes_itself_and_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    parsers = cli.subcommands(cli.build_parser())
    assert set(parsers) == {"demo", "check", "annotate", "try", "verify", "replay", "web", "worker"}
    for name, parser in parsers.items():
        assert parser.description and len(parser.description) > 60, name
        for action in parser._actions:
            assert action.help, f"deskmark {name}: {action.dest} has no help"
    with pytest.raises(SystemExit):
        cli.main(["web", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "address to listen on (default: 127.0.0.1)" in shown and "(default: 8000)" in shown
    assert "Listens on loopback unless --host" in shown


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"deskmark {version('deskmark')}"


@pytest.mark.parametrize("argv", [["replay", "--failed"], ["replay", "dm-0123456789abcdef"],
                                  ["try", "freshdesk", "7", "--yes"]])
def test_redis_down_is_one_clear_line(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    nobody = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    for name, value in {"REDIS_URL": nobody, "FRESHDESK_DOMAIN": "acme", "FRESHDESK_API_KEY": "k",
                        "FRESHDESK_WEBHOOK_SECRET": "s", "FRESHDESK_BASE_URL": "http://127.0.0.1:9"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir("/")  # no .env of the checkout
    assert cli.main(argv) == 1
    out = capsys.readouterr()
    lines = [line for line in (out.err + out.out).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    [line] = lines
    assert line.startswith(f"deskmark {argv[0]}: Redis") and "unreachable" in line and "REDIS_URL" in line
    assert "hunter2" not in line and "Traceback" not in line


@pytest.mark.e2e
def test_a_worker_started_with_redis_down_says_so_in_one_line_and_waits(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    nobody = f"redis://127.0.0.1:{free_port()}/0"
    worker = subprocess.Popen([sys.executable, "-m", "deskmark.cli", "worker", "--quiet", "--concurrency", "2"],
                              env={**os.environ, "REDIS_URL": nobody}, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert worker.stderr is not None
        first = worker.stderr.readline()
        assert first.startswith(f"deskmark worker: Redis is unreachable at {nobody}") and "waiting" in first
        assert worker.poll() is None  # it waits for Redis (Celery retries), it does not exit
    finally:
        worker.terminate()
        worker.communicate(timeout=20)  # and closes the pipe
