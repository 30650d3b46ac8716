"""The README's first command: `deskmark demo` runs the whole flow with nothing installed."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from worker.images import load, sniff

pytestmark = pytest.mark.e2e  # runs deskmark's own commands as processes


@pytest.mark.parametrize("helpdesk", ["zendesk", "freshdesk", "helpscout"])
def test_demo_exits_0_and_prints_a_marked_image_that_exists(helpdesk: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DESKMARK_"))}
    result = subprocess.run(
        [sys.executable, "-m", "deskmark.cli", "demo", "--out", str(tmp_path / "out"),
         "--helpdesk", helpdesk],
        env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"^marked image: (.+)$", result.stdout, re.MULTILINE)
    assert match, result.stdout
    marked = Path(match.group(1))
    data = marked.read_bytes()
    assert sniff(data) == "JPEG" and marked.suffix == ".jpg"
    assert load(data).size == (1600, 1200)
    assert "deskmark_annotated, warranty_review" in result.stdout
    assert "dashboard:" in result.stdout
    # The command it prints works as printed, after the demo (and its Redis) is gone.
    command = re.search(r"^credentials:  deskmark (verify .+)$", result.stdout, re.MULTILINE)
    assert command, result.stdout
    verified = subprocess.run([sys.executable, "-m", "deskmark.cli", *shlex.split(command.group(1))],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path,
                              env={**env, "REDIS_URL": "redis://127.0.0.1:1/0"})
    assert verified.returncode == 0 and "valid, signed by this deployment" in verified.stdout, verified.stdout
    assert "Warning" not in result.stderr, result.stderr  # nothing to bury the demo's lines


def children(pid: int) -> set[int]:
    """Every process below `pid` (the worker and its pool, the embedded redis-server)."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid:
                found.add(int(entry.name))
    return found | {grandchild for child in found for grandchild in children(child)}


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_demo_serve_stopped_with_sigterm_stops_its_worker_and_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DESKMARK_"))}
    demo = subprocess.Popen([sys.executable, "-m", "deskmark.cli", "demo", "--serve", "--out",
                             str(tmp_path / "out")], env=env, cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert demo.stdout is not None
    seen = []
    for line in demo.stdout:  # until the demo says it is serving
        seen.append(line)
        if "serving; press Ctrl-C to stop" in line:
            break
    else:
        raise AssertionError("".join(seen))
    below = children(demo.pid)
    names = {(Path("/proc") / str(p) / "comm").read_text().strip() for p in below}
    assert "redis-server" in names and len(below) >= 2, names  # the worker and the Redis
    demo.send_signal(signal.SIGTERM)
    assert demo.wait(60) == 0
    demo.stdout.close()
    left = [p for p in below if alive(p)]
    assert left == [], left
