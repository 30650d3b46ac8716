"""The README's first command: `deskmark demo` runs the whole flow with nothing installed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from worker.images import load, sniff


@pytest.mark.parametrize("helpdesk", ["zendesk", "freshdesk"])
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
    assert "Warning" not in result.stderr, result.stderr  # nothing to bury the demo's lines
