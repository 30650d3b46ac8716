"""Attachment downloads: only allowed hosts, no internal addresses, every redirect hop checked,
credentials only to the vendor, a byte cap."""

from __future__ import annotations

import http.server
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask, Response, redirect, request
from werkzeug.wrappers import Response as WerkzeugResponse

from deskmark.sandbox.server import LoopbackServer
from integrations.downloads import DownloadPolicy, fetch
from integrations.errors import RetryableError, UnsafeURL, UnusablePhoto

seen: list[dict[str, str | None]] = []
host_headers: list[str | None] = []
vendor_url: list[str] = []


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[LoopbackServer, LoopbackServer]]:
    """A 'vendor' and a separate 'file host' on loopback."""
    files = Flask("files")
    vendor = Flask("vendor")

    @files.get("/f/<name>")
    def file(name: str) -> Response:
        seen.append({"host": "files", "authorization": request.headers.get("Authorization")})
        if name == "huge":
            return Response((b"x" * 65536 for _ in range(64)), mimetype="image/jpeg")
        return Response(b"\xff\xd8\xff photo", mimetype="image/jpeg")

    @files.get("/r/<name>")
    def back_to_the_vendor(name: str) -> WerkzeugResponse:
        # An attachment host that sends deskmark back to the vendor's API, at a path it picked.
        seen.append({"host": "files", "authorization": request.headers.get("Authorization")})
        return redirect(f"{vendor_url[0]}/attachments/api?to={request.host_url}f/photo.jpg", code=302)

    @files.get("/h/<name>")
    def file_with_host(name: str) -> Response:
        host_headers.append(request.headers.get("Host"))
        return Response(b"\xff\xd8\xff photo", mimetype="image/jpeg")

    @vendor.get("/attachments/<target>")
    def attachment(target: str) -> WerkzeugResponse:
        seen.append({"host": "vendor", "authorization": request.headers.get("Authorization")})
        return redirect(request.args["to"], code=302)

    servers = (LoopbackServer(vendor).start(), LoopbackServer(files).start())
    vendor_url.append(servers[0].url)
    yield servers
    for server in servers:
        server.stop()


def policy(vendor: LoopbackServer, *extra: str, max_bytes: int = 1024 * 1024) -> DownloadPolicy:
    return DownloadPolicy(vendor="zendesk", vendor_origin=vendor.url,
                          known_hosts=("*.zdusercontent.com",), extra_hosts=extra,
                          max_bytes=max_bytes)


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://127.0.0.1:6379/",
    "https://attacker.example/photo.jpg",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL",
])
def test_foreign_and_internal_urls_are_refused(url: str, hosts: tuple[LoopbackServer, LoopbackServer]) -> None:
    with pytest.raises(UnsafeURL):
        policy(hosts[0]).vet(url)


def test_a_known_attachment_host_that_resolves_inside_is_refused() -> None:
    rule = DownloadPolicy(vendor="zendesk", vendor_origin="https://acme.zendesk.com",
                          known_hosts=("localhost",))
    with pytest.raises(UnsafeURL, match="non-public address"):
        rule.vet("http://localhost/photo.jpg")


def test_credentials_go_to_the_vendor_only(hosts: tuple[LoopbackServer, LoopbackServer]) -> None:
    vendor, files = hosts
    seen.clear()
    with httpx.Client(auth=("agent", "secret"), timeout=5) as client:
        download, ctype = fetch(f"{vendor.url}/attachments/a?to={files.url}/f/photo.jpg",
                                policy(vendor, f"127.0.0.1:{files.port}"), client)
    with download:
        assert download.read().startswith(b"\xff\xd8\xff") and ctype == "image/jpeg"
    assert seen[0]["host"] == "vendor" and seen[0]["authorization"]
    assert seen[1] == {"host": "files", "authorization": None}


def test_every_redirect_hop_is_checked(hosts: tuple[LoopbackServer, LoopbackServer]) -> None:
    vendor, files = hosts
    seen.clear()
    with httpx.Client(timeout=5) as client, pytest.raises(UnsafeURL):
        fetch(f"{vendor.url}/attachments/a?to=http://169.254.169.254/latest/meta-data/",
              policy(vendor, f"127.0.0.1:{files.port}"), client)
    # The files host is not allowed unless the deployer lists it.
    with httpx.Client(timeout=5) as client, pytest.raises(UnsafeURL):
        fetch(f"{vendor.url}/attachments/a?to={files.url}/f/photo.jpg", policy(vendor), client)
    assert seen and all(hit["host"] == "vendor" for hit in seen)


def test_downloads_are_capped(hosts: tuple[LoopbackServer, LoopbackServer]) -> None:
    vendor, files = hosts
    with httpx.Client(timeout=5) as client, pytest.raises(UnusablePhoto, match="larger than"):
        fetch(f"{files.url}/f/huge", policy(vendor, f"127.0.0.1:{files.port}", max_bytes=1024 * 1024),
              client)


@pytest.fixture
def tls_host(tmp_path: Path) -> Iterator[tuple[int, list[str], list[str | None]]]:
    """An HTTPS server on loopback with a self-signed certificate (port, paths served, SNI seen)."""
    if not shutil.which("openssl"):
        pytest.fail("the openssl command is needed to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:files.zdusercontent.com",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    served: list[str] = []
    names: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            served.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"\xff\xd8\xff photo")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], served, names
    server.shutdown()
    server.server_close()


def test_an_attachment_host_with_an_untrusted_certificate_is_not_read(
    tls_host: tuple[int, list[str], list[str | None]], hosts: tuple[LoopbackServer, LoopbackServer],
) -> None:
    # Downloads share one TLS context (built once per process); it must still verify.
    port, served, _ = tls_host
    netloc = f"127.0.0.1:{port}"
    with httpx.Client() as vendor_client, pytest.raises(RetryableError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(f"https://{netloc}/photo.jpg", policy(hosts[0], netloc), vendor_client)
    assert served == []


ATTACHMENT_NAME, PUBLIC = "files.zdusercontent.com", "93.184.216.34"


@dataclass
class FakeNetwork:
    lookups: list[str] = field(default_factory=list)  # resolutions of ATTACHMENT_NAME
    connects: list[str] = field(default_factory=list)  # addresses connected to


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> FakeNetwork:
    """The system resolver and network, simulated (socket.getaddrinfo, create_connection).

    ATTACHMENT_NAME answers PUBLIC to its first lookup and 127.0.0.1 to every later one (DNS
    rebinding); connections to PUBLIC are routed to loopback so that a download can complete.
    """
    network = FakeNetwork()
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.create_connection

    def getaddrinfo(host: str, port: Any = None, *args: Any, **kwargs: Any) -> Any:
        if host != ATTACHMENT_NAME:
            return real_getaddrinfo(host, port, *args, **kwargs)
        network.lookups.append(host)
        address = PUBLIC if len(network.lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port or 0)))]

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        network.connects.append(address[0])
        if address[0] == PUBLIC:
            address = ("127.0.0.1", address[1])
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return network


def test_the_connection_goes_to_the_address_that_was_checked(
    hosts: tuple[LoopbackServer, LoopbackServer], rebinding: FakeNetwork,
) -> None:
    vendor, files = hosts
    host_headers.clear()
    with httpx.Client(timeout=5) as client:
        download, _ = fetch(f"http://{ATTACHMENT_NAME}:{files.port}/h/photo.jpg", policy(vendor), client)
    with download:
        assert download.read().startswith(b"\xff\xd8\xff")
    assert rebinding.lookups == [ATTACHMENT_NAME]  # resolved once, by the check
    assert rebinding.connects == [PUBLIC]  # and connected to what the check saw, not a new answer
    assert host_headers == [f"{ATTACHMENT_NAME}:{files.port}"]  # the server still sees its name


def test_a_pinned_https_download_still_names_and_verifies_the_host(
    tls_host: tuple[int, list[str], list[str | None]], hosts: tuple[LoopbackServer, LoopbackServer],
    rebinding: FakeNetwork,
) -> None:
    # Connecting to the checked address must not lose the TLS server name: the file host gets
    # its own name in SNI, and the certificate is verified (this one is self-signed: refused).
    port, served, names = tls_host
    with httpx.Client(timeout=5) as client, pytest.raises(RetryableError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(f"https://{ATTACHMENT_NAME}:{port}/photo.jpg", policy(hosts[0]), client)
    assert names == [ATTACHMENT_NAME] and served == []


def test_no_credentials_after_a_redirect_even_back_to_the_vendor(
        hosts: tuple[LoopbackServer, LoopbackServer]) -> None:
    vendor, files = hosts
    seen.clear()
    with httpx.Client(auth=("agent", "secret"), timeout=5) as client:
        download, _ = fetch(f"{files.url}/r/x", policy(vendor, f"127.0.0.1:{files.port}"), client)
    download.close()
    assert [hit["host"] for hit in seen] == ["files", "vendor", "files"]
    assert all(hit["authorization"] is None for hit in seen)  # the API key went nowhere
    # A URL a customer wrote gets none either, even on the vendor's own origin.
    seen.clear()
    with httpx.Client(auth=("agent", "secret"), timeout=5) as client:
        fetch(f"{vendor.url}/attachments/a?to={files.url}/f/photo.jpg",
              policy(vendor, f"127.0.0.1:{files.port}"), client, credentials=False)[0].close()
    assert seen[0] == {"host": "vendor", "authorization": None}


@pytest.fixture
def drip() -> Iterator[str]:
    """A host that answers at once, then sends its body one byte every 0.2 s (each read well
    within any per-read timeout)."""
    stop = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                if stop.is_set():
                    return
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    stop.set()
    server.shutdown()
    server.server_close()


def test_a_drip_feeding_host_is_cut_off_at_the_deadline(
        hosts: tuple[LoopbackServer, LoopbackServer], drip: str) -> None:
    rule = DownloadPolicy(vendor="freshdesk", vendor_origin=hosts[0].url, extra_hosts=(drip,),
                          deadline_seconds=1.5)
    started = time.monotonic()
    with httpx.Client(timeout=1.0) as client, pytest.raises(RetryableError, match="longer than 2 s"):
        fetch(f"http://{drip}/photo.jpg", rule, client)
    assert 1.4 < time.monotonic() - started < 3.0  # 20 s of dripping, cut off at 1.5 s


@pytest.mark.parametrize("url", [
    "https://s3.amazonaws.com/attacker-bucket/photo.jpg",  # someone else's bucket, shared host
    "https://attacker-bucket.s3.amazonaws.com/photo.jpg",
    "https://s3.eu-west-1.amazonaws.com/cdn.freshdesk.com/x.jpg",  # not where Freshdesk's is
    "https://evil.amazonaws.com/photo.jpg",
    "https://s3.amazonaws.com/cdn.freshdesk.com.attacker/photo.jpg",
])
def test_freshdesk_attachments_come_only_from_its_own_bucket(url: str) -> None:
    from integrations.freshdesk.client import FRESHDESK_ATTACHMENT_HOSTS

    rule = DownloadPolicy(vendor="freshdesk", vendor_origin="https://acme.freshdesk.com",
                          known_hosts=FRESHDESK_ATTACHMENT_HOSTS)
    with pytest.raises(UnsafeURL, match="not freshdesk's nor an allowed attachment location"):
        rule.vet(url)


def test_freshdesks_own_bucket_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    from integrations.freshdesk.client import FRESHDESK_ATTACHMENT_HOSTS

    # S3's address, as the (simulated) resolver gives it: this machine has no internet.
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: [
        (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("52.216.0.1", 443))])
    rule = DownloadPolicy(vendor="freshdesk", vendor_origin="https://acme.freshdesk.com",
                          known_hosts=FRESHDESK_ATTACHMENT_HOSTS)
    for url in ("https://s3.amazonaws.com/cdn.freshdesk.com/data/helpdesk/attachments/production/1/original/a.jpg",
                "https://cdn.freshdesk.com.s3.amazonaws.com/data/helpdesk/attachments/production/1/a.jpg",
                "https://attachment.freshdesk.com/inline/attachment?token=abc"):
        assert rule.vet(url) == (False, "52.216.0.1")


@pytest.mark.parametrize("url", [
    "https://s3.amazonaws.com/cdn.freshdesk.com/../other-bucket/x.jpg",  # sent as /other-bucket/x.jpg
    "https://s3.amazonaws.com/cdn.freshdesk.com/%2e%2e/other-bucket/x.jpg",
    "https://s3.amazonaws.com/cdn.freshdesk.com/%2E./other-bucket/x.jpg",
    "https://s3.amazonaws.com/cdn.freshdesk.com/./x.jpg",
    "https://s3.amazonaws.com/cdn.freshdesk.com%2F..%2Fother-bucket/x.jpg",
    "https://s3.amazonaws.com/cdn.freshdesk.com/..%5Cother-bucket/x.jpg",
])
def test_dot_segments_are_refused_before_matching(url: str) -> None:
    from integrations.downloads import plain_path
    from integrations.freshdesk.client import FRESHDESK_ATTACHMENT_HOSTS

    rule = DownloadPolicy(vendor="freshdesk", vendor_origin="https://acme.freshdesk.com",
                          known_hosts=FRESHDESK_ATTACHMENT_HOSTS)
    with pytest.raises(UnsafeURL, match="has a dot segment"):
        rule.vet(url)
    # An encoded slash in a file's name is only a name; the prefix matches on a segment boundary.
    assert plain_path("/cdn.freshdesk.com/a%2Fb.jpg") == "/cdn.freshdesk.com/a%2Fb.jpg"
    with pytest.raises(UnsafeURL):
        rule.vet("https://s3.amazonaws.com/cdn.freshdesk.comX/a.jpg")
