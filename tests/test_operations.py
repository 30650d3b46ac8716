"""docs/operations.md as a deployer runs it: a Redis backup taken while deskmark runs, restored
with deploy/redis-restore into an empty data directory, brings back what matters (job records
and marked photos, the dead letters, the re-used-photo index, the signer `deskmark verify`
needs), and survives a restart with AOF on, as docker-compose runs Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from deskmark.redis_server import find_redis_server
from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.zendesk import SandboxZendesk
from tests.helpers import Stack, free_port, marked_notes, send_photo, wait_for
from worker.store import Store

pytestmark = pytest.mark.e2e  # runs deskmark's own commands and a redis-server

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "backuptest123"


def redis_cli() -> str:
    return str(Path(find_redis_server()).with_name("redis-cli"))


def start_redis(data: Path, port: int) -> subprocess.Popen[bytes]:
    """Redis as docker-compose runs it: AOF on, a password, on the restored directory."""
    process = subprocess.Popen([find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
                                "--appendonly", "yes", "--requirepass", PASSWORD],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, password=PASSWORD)
    wait_for(lambda: _pings(client), timeout=15)
    client.close()
    return process


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def keys(client: redis.Redis, pattern: str) -> set[bytes]:
    return set(client.scan_iter(match=pattern, count=1000))


def test_a_backup_restored_into_an_empty_redis_brings_back_what_matters(
    make_stack: Callable[..., Stack], zendesk: SandboxZendesk, openai_fake: SandboxOpenAI, tmp_path: Path,
) -> None:
    stack = make_stack(appendonly=True, redis_password=PASSWORD)
    ticket, job = send_photo(zendesk, stack.web.url, f"Backup {uuid.uuid4().hex[:6]}", seed=91, size=(1600, 1200))
    wait_for(lambda: stack.store.job(job).get("state") == "done", timeout=60)
    [note] = marked_notes(zendesk, ticket)
    delivered = tmp_path / "delivered.jpg"
    delivered.write_bytes(note.attachments[0].data)
    before = stack.store.r
    assert keys(before, "dm:ph:*") and before.get("dm:c2pa:signer")

    # Backup, while everything runs (docs/operations.md: redis-cli --rdb).
    backup = tmp_path / "deskmark.rdb"
    taken = subprocess.run([redis_cli(), "-p", str(stack.redis.port), "--rdb", str(backup)],
                           env={**os.environ, "REDISCLI_AUTH": PASSWORD}, capture_output=True, text=True)
    assert taken.returncode == 0 and backup.stat().st_size > 0, taken.stderr

    # Restore into an empty data directory, with the script the docs give.
    data = tmp_path / "redis-data"
    restored = subprocess.run(["sh", str(ROOT / "deploy" / "redis-restore"), str(backup), str(data)],
                              env={**os.environ, "REDIS_SERVER": find_redis_server(), "REDIS_CLI": redis_cli(),
                                   "RESTORE_PORT": str(free_port())}, capture_output=True, text=True, timeout=60)
    assert restored.returncode == 0, restored.stderr
    assert "keys from" in restored.stdout and "(AOF written)" in restored.stdout

    port = free_port()
    for start in ("after the restore", "after a restart"):  # the AOF holds it: a second start too
        server = start_redis(data, port)
        try:
            store = Store.from_url(f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
            record = store.job(job)
            assert record.get("state") == "done" and record.get("note_id"), start
            assert store.marked(job) == stack.store.marked(job), start
            assert job in [j["job_id"] for j in store.jobs_for_ticket(str(ticket), ["zendesk"])], start
            assert store.r.get("dm:c2pa:signer") == before.get("dm:c2pa:signer"), start
            assert keys(store.r, "dm:ph:*") == keys(before, "dm:ph:*"), start
            assert store.steps(job) == stack.store.steps(job), start
            # deskmark verify, on this deployment's restored Redis, knows its own signer.
            verify = subprocess.run([sys.executable, "-m", "deskmark.cli", "verify", str(delivered)],
                                    env={**os.environ, "REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:{port}/0"},
                                    capture_output=True, text=True, cwd=tmp_path, timeout=60)
            assert verify.returncode == 0 and "valid, signed by this deployment" in verify.stdout, verify.stdout
            store.r.close()
        finally:
            server.terminate()  # SIGTERM: Redis flushes its AOF and exits
            server.wait(10)


def test_the_restore_refuses_what_is_not_a_backup(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a backup\n")
    done = subprocess.run(["sh", str(ROOT / "deploy" / "redis-restore"), str(notes), str(tmp_path / "data")],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "is not an RDB file" in done.stderr
    assert not (tmp_path / "data").exists()  # nothing moved, nothing made


def test_the_certificate_recipe_in_the_docs_signs_photos_verify_trusts(tmp_path: Path) -> None:
    """docs/operations.md's OpenSSL block, run as written: its chain and key sign a photo whose
    content credentials validate and chain to its CA (`deskmark verify --trust ca.pem`)."""
    import io
    import re
    import shutil

    from deskmark.sandbox.photos import damaged_product
    from worker import credentials

    if shutil.which("openssl") is None:
        pytest.skip("no openssl")
    page = (ROOT / "docs" / "operations.md").read_text()
    block = re.search(r"<!-- tests/test_operations.py runs this block -->\n```sh\n(.*?)```", page, re.DOTALL)
    assert block is not None
    made = subprocess.run(["sh", "-e", "-c", block.group(1)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert made.returncode == 0, made.stderr
    keys = credentials.keys_from_pem(str(tmp_path / "c2pa-chain.pem"), str(tmp_path / "c2pa-key.pem"))
    photo = damaged_product(800, 600, seed=92)
    facts = credentials.Provenance("dm-cert", "zendesk", "1", "IMG_1.jpg", "gpt-image-2", [])
    signed = credentials.sign(photo, io.BytesIO(photo), "image/jpeg", facts, keys)
    summary = credentials.read(signed, anchors=(tmp_path / "ca.pem").read_text())
    assert summary is not None and summary.valid and summary.trusted, summary
    assert "Example Shop" in summary.signer
    photo_file = tmp_path / "signed.jpg"
    photo_file.write_bytes(signed)
    verify = subprocess.run([sys.executable, "-m", "deskmark.cli", "verify", "--trust", str(tmp_path / "ca.pem"),
                             str(photo_file)], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                            env={**os.environ, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert verify.returncode == 0 and "valid, signed by this deployment" in verify.stdout, verify.stdout
