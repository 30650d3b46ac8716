"""`deskmark annotate`: photos on disk through the same pipeline, no helpdesk."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from deskmark.sandbox.openai import MarkingModel, SandboxOpenAI
from deskmark.sandbox.photos import damaged_product
from worker.images import sniff

pytestmark = pytest.mark.e2e  # runs `deskmark annotate` as a process


def annotate(args: list[str], env: dict[str, str], cwd: Path, stderr: int = subprocess.PIPE,
             ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DESKMARK_", "ZENDESK_"))}
    return subprocess.run([sys.executable, "-m", "deskmark.cli", "annotate", *args], env={**clean, **env},
                          stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=120, cwd=cwd)


def test_annotate_marks_photos_writes_records_and_reports_bad_files(openai_fake: SandboxOpenAI,
                                                                    tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(damaged_product(1200, 900))
    (tmp_path / "b.png").write_bytes(damaged_product(900, 1200, fmt="PNG"))
    (tmp_path / "broken.jpg").write_bytes(b"<html>")
    env = {"OPENAI_API_KEY": openai_fake.api_key, "OPENAI_BASE_URL": openai_fake.url,
           "DESKMARK_LOCATE_MODEL": "gpt-5.4"}
    result = annotate(["a.jpg", "b.png", "broken.jpg", "-o", "out", "--prompt", "Circle it: {subject}"],
                      env, tmp_path)
    assert result.returncode == 1  # one file could not be marked
    assert "skipped broken.jpg: not an image" in result.stderr
    total = 0.0
    for stem in ("a", "b"):
        assert sniff((tmp_path / "out" / f"{stem}-marked.jpg").read_bytes()) == "JPEG"
        record = json.loads((tmp_path / "out" / f"{stem}-marked.json").read_text())
        assert record["model"] == "gpt-image-2" and record["cost_usd"] > 0
        assert record["labels"] == ["cracked screen"] and len(record["regions"]) == 1
        assert [m["drawn_by"] for m in record["marks"]] == ["model"] and record["marked"]
        assert record["located"]["model"] == "gpt-5.4"
        total += record["cost_usd"]
    assert f"2 of 3 marked, total cost ${total:.4f}" in result.stderr
    assert openai_fake.calls[-1]["prompt"].startswith("Circle it: ")


def test_annotate_works_offline_with_the_local_annotator_and_shows_progress(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(damaged_product(800, 600))
    leader, follower = pty.openpty()
    try:
        result = annotate(["a.jpg"], {}, tmp_path, stderr=follower)
        os.close(follower)
        screen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
    finally:
        os.close(leader)
    assert result.returncode == 0
    assert b"\r[" in screen and b"1/1" in screen  # a progress bar, redrawn in place
    record = json.loads((tmp_path / "a-marked.json").read_text())
    assert record["provider"] == "local" and record["cost_usd"] == 0.0


def test_annotate_debug_writes_the_models_output_and_the_strokes_taken(tmp_path: Path) -> None:
    fake = SandboxOpenAI(transform=MarkingModel(mode="elsewhere")).start()
    try:
        (tmp_path / "a.jpg").write_bytes(damaged_product(1200, 900))
        env = {"OPENAI_API_KEY": fake.api_key, "OPENAI_BASE_URL": fake.url,
               "DESKMARK_LOCATE_MODEL": "gpt-5.4"}
        result = annotate(["a.jpg", "--debug"], env, tmp_path)
    finally:
        fake.stop()
    assert result.returncode == 0, result.stderr
    model = Image.open(io.BytesIO((tmp_path / "a-model.png").read_bytes()))
    strokes = Image.open(io.BytesIO((tmp_path / "a-strokes.png").read_bytes()))
    assert model.format == "PNG" and model.size == (1024, 768)  # as the model answered
    assert strokes.mode == "RGBA" and strokes.size == model.size
    # The model's circle elsewhere was not taken: it shows as rejected (magenta), nothing kept.
    assert strokes.getchannel("A").getbbox() is not None
    colours = [colour for _, colour in strokes.getcolors(2**20) or []]
    assert any(isinstance(c, tuple) and c[:3] == (255, 0, 255) for c in colours)
    record = json.loads((tmp_path / "a-marked.json").read_text())
    assert record["debug_model"].endswith("a-model.png") and record["marks"][0]["drawn_by"] == "deskmark"
    assert "cracked screen: deskmark drew the mark, because the model" in result.stderr


def test_annotate_never_overwrites_without_force_and_never_writes_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(damaged_product(800, 600))
    (tmp_path / "a-marked.jpg").write_bytes(b"the agent's own edit")
    result = annotate(["a.jpg"], {}, tmp_path)
    assert result.returncode == 1 and "already exists (--force to replace)" in result.stderr
    assert (tmp_path / "a-marked.jpg").read_bytes() == b"the agent's own edit"
    assert annotate(["a.jpg", "--force"], {}, tmp_path).returncode == 0
    assert sniff((tmp_path / "a-marked.jpg").read_bytes()) == "JPEG"
    # An output name that is a symlink (say, to a file the attacker wants replaced).
    precious = tmp_path / "elsewhere.txt"
    precious.write_text("keep me")
    (tmp_path / "b.jpg").write_bytes(damaged_product(800, 600, seed=2))
    (tmp_path / "b-marked.jpg").symlink_to(precious)
    for args in (["b.jpg"], ["b.jpg", "--force"]):
        result = annotate(args, {}, tmp_path)
        assert result.returncode == 1
    assert precious.read_text() == "keep me" and (tmp_path / "b-marked.jpg").is_symlink()
    assert "symbolic link" in result.stderr


def test_photos_whose_names_meet_get_distinct_outputs(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    (tmp_path / "a.jpg").write_bytes(damaged_product(800, 600, seed=3))
    (tmp_path / "a.png").write_bytes(damaged_product(800, 600, seed=4, fmt="PNG"))
    (tmp_path / "x" / "c.jpg").write_bytes(damaged_product(800, 600, seed=5))
    (tmp_path / "y" / "c.jpg").write_bytes(damaged_product(800, 600, seed=6))
    result = annotate(["a.jpg", "a.png", "x/c.jpg", "y/c.jpg", "-o", "out"], {}, tmp_path)
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (tmp_path / "out").glob("*-marked.jpg"))
    assert written == ["a-jpg-marked.jpg", "a-png-marked.jpg", "c-jpg-2-marked.jpg", "c-jpg-marked.jpg"]
    records = [json.loads(p.read_text())["source"] for p in sorted((tmp_path / "out").glob("*.json"))]
    assert sorted(records) == ["a.jpg", "a.png", "x/c.jpg", "y/c.jpg"]
