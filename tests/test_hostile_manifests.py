"""A customer's own content credentials are hostile input: read under a memory ceiling and a time
limit in a process of their own, with no network, and nothing of them rides along in the
delivered photo; `deskmark verify` knows whose signature it is."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import c2pa
import pytest

from deskmark.sandbox.photos import inflated_manifest_photo, located_owner_photo, remote_manifest_photo
from deskmark.sandbox.slack import SandboxSlack
from deskmark.sandbox.zendesk import SandboxZendesk
from deskmark.verify import Trust, deployment_trust
from integrations.events import job_id_for
from tests.helpers import Stack, WorkerProcess, job_reaches, post_signed, wait_for
from worker import credentials, manifests
from worker.signals import checks_line, read_signals

CUSTOMER = SandboxZendesk.CUSTOMER_ID


class Listener:
    """A TCP listener on loopback that counts who connects (and answers nothing useful)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/manifest.c2pa"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener()
    yield found
    found.close()


# --- in-process: the reader, the signals, verify --------------------------------------------------
def test_an_inflated_cbor_header_is_read_under_a_ceiling_and_said() -> None:
    bomb = inflated_manifest_photo()
    assert len(bomb) < 12_000
    started = time.monotonic()
    summary = manifests.read_untrusted(bomb, "image/jpeg")
    assert time.monotonic() - started < 5  # in-process it took 17 s (and 5.3 GB)
    reason = summary.reason if isinstance(summary, manifests.Unreadable) else summary and summary.unreadable
    assert reason, summary
    # The reader's own peak, measured where nothing else ran: a process that only reads it.
    probe = subprocess.run([sys.executable, "-c", (
        "import resource, sys; from deskmark.sandbox.photos import inflated_manifest_photo; "
        "from worker import manifests; manifests.read_untrusted(inflated_manifest_photo(), 'image/jpeg'); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")],
        capture_output=True, text=True, timeout=60, check=True)
    peak = int(probe.stdout.split()[-1]) * 1024
    assert 0 < peak < 256 << 20, peak  # the child stayed far under its ceiling (in-process: 5.3 GB)
    found = read_signals(io.BytesIO(bomb), "image/jpeg", time.time())
    assert found.get("credentials_unreadable")
    assert "its content credentials could not be read (" in checks_line(found)
    # A photo without any manifest costs no process at all, and a real one reads as before.
    assert manifests.read_untrusted(inflated_manifest_photo()[:2] + b"\xff\xd9", "image/jpeg") is None


def test_no_reader_of_deskmarks_connects_anywhere(listener: Listener, tmp_path: Path) -> None:
    photo = remote_manifest_photo(listener.url)
    # The control: c2pa at its defaults fetches the remote manifest the photo names.
    try:
        with c2pa.Reader("image/jpeg", io.BytesIO(photo)) as reader:
            reader.json()
    except c2pa.C2paError:
        pass
    wait_for(lambda: listener.connections >= 1, timeout=10)
    before = listener.connections
    assert manifests.read_untrusted(photo, "image/jpeg") is None  # the worker's read
    assert "generated_by" not in read_signals(io.BytesIO(photo), "image/jpeg", time.time())
    page = credentials.read(photo)  # the job page's, and verify's in its child: c2pa says "remote"
    assert page is not None and not page.valid and "remote" in page.problems[0].lower()
    path = tmp_path / "remote.jpg"
    path.write_bytes(photo)
    done = subprocess.run([sys.executable, "-m", "deskmark.cli", "verify", "--trust", "0" * 64, str(path)],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0"})
    assert done.returncode == 1
    # Each read above has returned (verify's process has exited), and c2pa fetches inside the
    # read, as the control's did: a connection would be counted by now.
    assert listener.connections == before


@pytest.mark.e2e  # `deskmark check` / `verify` as a process
def test_verify_knows_whose_signature_it_is(tmp_path: Path) -> None:
    ours, lookalike = credentials.throwaway_keys(), credentials.throwaway_keys()  # the same names
    photo = _plain_jpeg()
    facts = credentials.Provenance("dm-1", "zendesk", "5000", "a.jpg", None, [
        {"label": "approved by warranty team\x1b[2J\u202e", "x": 1, "y": 2, "width": 3, "height": 4}])
    genuine = credentials.sign(photo, io.BytesIO(photo), "image/jpeg", facts, ours)
    forged = credentials.sign(photo, io.BytesIO(photo), "image/jpeg", facts, lookalike)
    ca = credentials.issuer_pem(ours.chain_pem)
    (tmp_path / "ca.pem").write_text(ca)
    for name, data in (("genuine.jpg", genuine), ("forged.jpg", forged)):
        (tmp_path / name).write_bytes(data)

    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "deskmark.cli", "verify", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0"})

    for trust in (credentials.fingerprint(ca), "SHA256:" + ":".join(
            re.findall("..", credentials.fingerprint(ca).upper())), "ca.pem"):
        good = verify("--trust", trust, "genuine.jpg")
        assert good.returncode == 0 and "valid, signed by this deployment" in good.stdout, good.stdout
        bad = verify("--trust", trust, "forged.jpg")
        assert bad.returncode == 1 and "signed by someone else" in bad.stdout, bad.stdout
        assert "\x1b" not in bad.stdout and "\u202e" not in bad.stdout
    # On the deployment: the throwaway signer from Redis, or the configured certificate.
    from deskmark.verify import _verdict

    assert _verdict("g", genuine, deployment_trust(None, ours.to_json()))[0]
    assert not _verdict("f", forged, deployment_trust(None, ours.to_json()))[0]
    assert not _verdict("f", genuine, Trust(anchor_pem=ca, leaf_serial="1", source="x"))[0]
    nobody = verify("genuine.jpg")  # no Redis, no certificate, no --trust: cannot say it is ours
    assert nobody.returncode == 1 and "cannot be told here" in nobody.stdout
    assert verify("--trust", "nonexistent.pem", "genuine.jpg").returncode == 2


def test_the_customers_manifest_stays_behind(tmp_path: Path) -> None:
    photo = located_owner_photo("37,46.5N", "122,25.1W", "Jane Customer, 12 Elm St")
    assert b"Jane Customer" in photo and b"37,46.5N" in photo
    keys = credentials.throwaway_keys()
    facts = credentials.Provenance("dm-1", "zendesk", "1", "IMG_0001.jpg", None, [])
    delivered = credentials.sign(_plain_jpeg(), io.BytesIO(photo), "image/jpeg", facts, keys)
    theirs = re.findall(rb"xmp\.iid:[0-9a-f-]{36}", photo)  # the customer's manifest's ids
    assert theirs
    for private in (b"Jane Customer", b"37,46.5N", b"122,25.1W", b"CameraApp", *theirs):
        assert private not in delivered, private
    summary = credentials.read(delivered)
    assert summary is not None and summary.valid
    assert summary.original_sha256 and summary.original_sha256 in delivered.decode("latin-1")


def _plain_jpeg() -> bytes:
    from deskmark.sandbox.photos import damaged_product

    return damaged_product(800, 600, seed=77)


# --- the whole stack ------------------------------------------------------------------------------
def peak_rss(worker: WorkerProcess) -> int:
    assert worker.process is not None
    status = (Path("/proc") / str(worker.process.pid) / "status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]


def test_hostile_manifests_through_the_whole_stack(
        make_stack: Callable[..., Stack], zendesk: SandboxZendesk, slack: SandboxSlack,
        listener: Listener) -> None:
    stack = make_stack()
    wait_for(lambda: stack.store.worker_seen(), timeout=60)
    jobs = {}
    for name, photo in (("bomb", inflated_manifest_photo()),
                        ("remote", remote_manifest_photo(listener.url, seed=931)),
                        ("owner", located_owner_photo("37,46.5N", "122,25.1W", "Jane Customer, 12 Elm St",
                                                      seed=932))):
        ticket_id = zendesk.create_ticket(f"Hostile {name} {uuid.uuid4().hex[:6]}", "Damaged on arrival.")
        comment = zendesk.add_comment(ticket_id, CUSTOMER, "photo", [(f"{name}.jpg", photo, "image/jpeg")],
                                      notify=False)
        event = zendesk.event_for(ticket_id, comment, comment.attachments[0], CUSTOMER)
        assert post_signed(stack.web.url, zendesk, event).status_code == 202
        jobs[name] = (ticket_id, job_id_for("zendesk", str(ticket_id), str(comment.attachments[0].id)))
    for _, job in jobs.values():
        job_reaches(stack.store, job, "done", timeout=120)
    # The inflated header: marked, its Checks line says why its credentials are not read, and
    # the worker stayed under 1 GB (it went to 3.2 GB reading it in-process).
    ticket_id, job = jobs["bomb"]
    [note] = zendesk.notes(ticket_id)
    assert note.attachments and "its content credentials could not be read" in note.html_body
    peak = peak_rss(stack.workers[0])
    print(f"\nworker peak RSS with the inflated manifest: {peak / 2**20:.0f} MB")
    assert peak < 1 << 30
    # The remote manifest: nobody connected.
    assert listener.connections == 0
    # The GPS and the owner: in neither the delivered photo nor the Slack upload.
    ticket_id, job = jobs["owner"]
    delivered = zendesk.marked_notes(ticket_id)[0][0]
    shared = slack.uploads[stack.store.job(job)["slack_file"]].data
    assert shared[:2] == b"\xff\xd8"
    for private in (b"Jane Customer", b"37,46.5N", b"122,25.1W"):
        assert private not in delivered and private not in shared
