"""docker-compose.yml stays valid and in step with the code's defaults."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from integrations.config import DEFAULT_LOCATE_MODEL

COMPOSE = Path(__file__).parent.parent / "docker-compose.yml"


def compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_config_accepts_the_file(tmp_path: Path) -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (.ci/run installs one)")
    # A clean clone has no .env: the file must not require one.
    result = subprocess.run([*command, "-f", str(COMPOSE), "config", "-q"], capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_compose_passes_every_contract_variable_and_the_code_defaults() -> None:
    text = COMPOSE.read_text()
    readme = (COMPOSE.parent / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", readme, re.MULTILINE))
    assert "ZENDESK_WEBHOOK_SECRET" in documented
    for name in documented - {"REDIS_URL"}:
        assert f"{name}: ${{{name}" in text, f"{name} is not passed through docker-compose.yml"
    assert f"${{DESKMARK_LOCATE_MODEL-{DEFAULT_LOCATE_MODEL}}}" in text
    assert "--appendonly" in text
