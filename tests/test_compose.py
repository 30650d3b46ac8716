"""docker-compose.yml stays valid and in step with the code's defaults."""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_PASSWORD", "DESKMARK_DOMAIN")}
    # Without a .env the file is still valid; Redis refuses to start without a password, and
    # says what to set (its start command, run here with the password compose would give it).
    result = subprocess.run([*command, "-f", str(COMPOSE), "config", "--format", "json"],
                            capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    redis_service = json.loads(result.stdout)["services"]["redis"]
    assert redis_service["environment"]["REDIS_PASSWORD"] == ""
    # (`config` prints `$$` as written; the container's shell gets `$`.)
    start = [part.replace("$$", "$") for part in [*redis_service["entrypoint"], *redis_service["command"]]]
    refused = subprocess.run(["/bin/sh", *start[1:]], capture_output=True, text=True, timeout=10,
                             env={"REDIS_PASSWORD": "", "PATH": "/nonexistent"})  # never a real Redis
    assert refused.returncode == 1 and "set REDIS_PASSWORD in .env" in refused.stderr
    result = subprocess.run([*command, "-f", str(COMPOSE), "config", "--format", "json"],
                            capture_output=True, text=True, cwd=tmp_path,
                            env={**env, "REDIS_PASSWORD": "s3cretPassw0rd"})
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"caddy"}  # the web app is reached through the proxy only
    assert '--requirepass "$$REDIS_PASSWORD"' in " ".join(services["redis"]["command"])
    assert services["redis"]["environment"]["REDIS_PASSWORD"] == "s3cretPassw0rd"
    assert services["web"]["environment"]["REDIS_URL"] == "redis://:s3cretPassw0rd@redis:6379/0"
    assert services["caddy"]["environment"]["DESKMARK_SITE"] == "http://localhost"
    assert any(v["target"] == "/etc/caddy/Caddyfile" for v in services["caddy"]["volumes"])
    with_domain = subprocess.run([*command, "-f", str(COMPOSE), "--profile", "flower", "config",
                                  "--format", "json"], capture_output=True, text=True, cwd=tmp_path,
                                 env={**env, "REDIS_PASSWORD": "p", "DESKMARK_DOMAIN": "deskmark.example.com"})
    services = json.loads(with_domain.stdout)["services"]
    assert services["caddy"]["environment"]["DESKMARK_SITE"] == "deskmark.example.com"
    assert "--basic-auth" in " ".join(services["flower"]["command"])


def test_compose_passes_dotenv_whole(tmp_path: Path) -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (.ci/run installs one)")
    (tmp_path / ".env").write_text("REDIS_PASSWORD=pw\nGORGIAS_DOMAIN=yourshop\n"
                                   "DESKMARK_LOCATE_MODEL=\nREDIS_URL=redis://localhost:6379/0\n")
    result = subprocess.run([*command, "-f", str(COMPOSE), "--project-directory", str(tmp_path),
                             "config", "--format", "json"], capture_output=True, text=True,
                            cwd=tmp_path, env={k: v for k, v in os.environ.items()
                                               if k not in ("REDIS_PASSWORD", "DESKMARK_DOMAIN")})
    assert result.returncode == 0, result.stderr
    for service in ("web", "worker"):
        environment = json.loads(result.stdout)["services"][service]["environment"]
        assert environment["GORGIAS_DOMAIN"] == "yourshop"  # any variable, no list to keep
        assert environment["DESKMARK_LOCATE_MODEL"] == ""  # set but empty: locating off
        assert environment["REDIS_URL"] == "redis://:pw@redis:6379/0"  # compose's own wins


def test_every_variable_is_documented_and_in_the_example() -> None:
    from integrations.registry import HELPDESKS

    readme = (COMPOSE.parent / "README.md").read_text()
    example = (COMPOSE.parent / ".env.example").read_text()
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", readme, re.MULTILINE))
    in_example = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    for spec in HELPDESKS.values():
        for name in spec.variables:
            assert name in documented, f"{name} ({spec.title}) is not in README's configuration table"
            assert name in in_example or name.endswith("_BASE_URL"), f"{name} is not in .env.example"
    assert in_example <= documented, in_example - documented
    text = COMPOSE.read_text()
    assert "DESKMARK_LOCATE_MODEL" not in text  # the code's default applies: nothing to keep in step
    assert DEFAULT_LOCATE_MODEL in readme
    assert "--appendonly" in text


def test_the_worker_has_a_memory_limit_above_the_image_budget() -> None:
    text = COMPOSE.read_text()
    worker = text[text.index("\n  worker:"):text.index("\n  flower:")]
    match = re.search(r"mem_limit: \$\{DESKMARK_WORKER_MEMORY:-(\d+)g\}", worker)
    assert match and int(match.group(1)) * 1024 >= 400 + 512  # the 400 MB default budget, and room


def pin_images() -> Any:
    """deploy/pin-images as a module (a script without .py, so loaded by path)."""
    path = COMPOSE.parent / "deploy" / "pin-images"
    loader = importlib.machinery.SourceFileLoader("pin_images", str(path))
    spec = importlib.util.spec_from_loader("pin_images", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_every_base_image_is_pinned_by_digest() -> None:
    tool = pin_images()
    seen = []
    for relative in tool.FILES:
        text = (COMPOSE.parent / relative).read_text(encoding="utf-8")
        built = tool.built_here(text)
        for _, ref in tool.references(text):
            seen.append(ref)
            assert ref in built or tool.DIGEST.search(ref), f"{relative}: {ref} has no digest"
    pulled = [ref for ref in seen if tool.DIGEST.search(ref)]
    assert len(pulled) >= 4 and {"deskmark:latest", "deskmark-flower:latest"} <= set(seen)
    # Flower runs on the same base as deskmark's image.
    bases = {ref for ref in pulled if ref.startswith("python:")}
    assert len(bases) == 1
    # Every Dockerfile of the repository is one the tool (and so this check) reads.
    dockerfiles = {str(p.relative_to(COMPOSE.parent)) for p in COMPOSE.parent.rglob("*Dockerfile")
                   if ".venv" not in p.parts}
    assert dockerfiles and dockerfiles <= set(tool.FILES)


def test_pin_images_moves_every_pin_to_what_the_tag_points_to(tmp_path: Path) -> None:
    tool = pin_images()
    for relative in tool.FILES:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(COMPOSE.parent / relative, tmp_path / relative)
    asked: list[str] = []

    class Registry(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # the token service
            scope = parse_qs(urlsplit(self.path).query)["scope"][0]
            body = json.dumps({"token": f"t:{scope}"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_HEAD(self) -> None:  # the registry: a tag's index digest, for a pull token
            repository, _, tag = self.path.removeprefix("/v2/").partition("/manifests/")
            good = (self.headers["Authorization"] == f"Bearer t:repository:{repository}:pull"
                    and "application/vnd.oci.image.index.v1+json" in self.headers["Accept"])
            asked.append(f"{repository}:{tag}")
            self.send_response(200 if good else 401)
            if good:
                self.send_header("Docker-Content-Digest",
                                 "sha256:" + hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest())
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert tool.main(["--root", str(tmp_path), "--registry", url, "--auth", f"{url}/token"]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(asked) == ["library/caddy:2.11.2", "library/python:3.11.16-slim",
                             "library/python:3.11.16-slim", "library/redis:7.4.9-alpine3.21"]
    compose = (tmp_path / "docker-compose.yml").read_text(encoding="utf-8")
    redis_digest = hashlib.sha256(b"library/redis:7.4.9-alpine3.21").hexdigest()
    assert f"image: redis:7.4.9-alpine3.21@sha256:{redis_digest}\n" in compose
    assert "image: deskmark:latest\n" in compose  # built here: left alone
    python_digest = hashlib.sha256(b"library/python:3.11.16-slim").hexdigest()
    assert (tmp_path / "Dockerfile").read_text(encoding="utf-8").count(python_digest) == 1
    # Nothing else in the files changed.
    original = (COMPOSE.parent / "docker-compose.yml").read_text(encoding="utf-8")
    assert re.sub(r"sha256:[0-9a-f]{64}", "", compose) == re.sub(r"sha256:[0-9a-f]{64}", "", original)


def test_the_heic_build_option_installs_the_heic_extra_from_its_own_lock(tmp_path: Path) -> None:
    import tomllib

    root = COMPOSE.parent
    extra = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["heic"]
    wanted = [line.strip() for line in (root / "deploy" / "heic.in").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert wanted == extra  # the image's option is the package's extra
    heic_lock, main_lock = ((root / name).read_text() for name in ("deploy/heic.lock", "requirements.lock"))
    pillow = re.search(r"^pillow==(\S+) ", main_lock, re.MULTILINE)
    assert pillow and f"pillow=={pillow.group(1)} " in heic_lock and re.search(r"^pillow-heif==", heic_lock, re.M)
    assert "--hash=sha256:" in heic_lock
    assert "DESKMARK_HEIC: ${DESKMARK_HEIC:-no}" in COMPOSE.read_text()
    # The Dockerfile's install step, run with a pip that only says what it was asked.
    dockerfile = (root / "Dockerfile").read_text()
    assert "ARG DESKMARK_HEIC=no" in dockerfile and "COPY requirements.lock deploy/heic.lock ./" in dockerfile
    step = re.search(r"^RUN (pip install --no-cache-dir --require-hashes -r requirements\.lock.*?)(?<!\\)\n",
                     dockerfile, re.MULTILINE | re.DOTALL)
    assert step is not None
    fake = tmp_path / "pip"
    fake.write_text('#!/bin/sh\necho "pip $*" >> "$PIP_LOG"\n')
    fake.chmod(0o755)
    for choice, installs, code in (("no", ["requirements.lock"], 0), ("yes", ["requirements.lock", "heic.lock"], 0),
                                   ("maybe", ["requirements.lock"], 1)):
        log = tmp_path / f"{choice}.log"
        done = subprocess.run(["sh", "-c", step.group(1).replace("\\\n", " ")], capture_output=True, text=True,
                              env={"PATH": f"{tmp_path}:/usr/bin:/bin", "PIP_LOG": str(log), "DESKMARK_HEIC": choice})
        assert done.returncode == code, done.stderr
        calls = log.read_text().splitlines()
        assert [c.rsplit(" ", 1)[-1] for c in calls] == installs and all("--require-hashes" in c for c in calls)


def test_behind_an_existing_proxy_caddy_stays_off_and_web_is_on_loopback(tmp_path: Path) -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (.ci/run installs one)")
    override = COMPOSE.parent / "deploy" / "compose.behind-proxy.yml"
    env = {**{k: v for k, v in os.environ.items() if k != "DESKMARK_WEB_PORT"}, "REDIS_PASSWORD": "p"}
    result = subprocess.run([*command, "-f", str(COMPOSE), "-f", str(override), "config", "--format", "json"],
                            capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert set(services) == {"redis", "web", "worker"}  # no Caddy: the deployer's proxy is in front
    [port] = services["web"]["ports"]
    assert (port["host_ip"], str(port["published"]), port["target"]) == ("127.0.0.1", "8000", 8000)


def test_the_image_and_ci_install_the_fonts_and_shaping_library_from_one_list() -> None:
    from worker.fonts import FONTS, RAQM_PACKAGE

    root = COMPOSE.parent
    listed = [line.strip() for line in (root / "deploy" / "apt-packages.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    needed = {font.package for font in FONTS} | {RAQM_PACKAGE}
    assert needed and needed <= set(listed)
    dockerfile, ci = (root / "Dockerfile").read_text(), (root / ".ci" / "run").read_text()
    assert "COPY deploy/apt-packages.txt ./" in dockerfile
    assert "grep -v '^#' apt-packages.txt | xargs apt-get install" in dockerfile
    assert "grep -v '^#' deploy/apt-packages.txt" in ci
