"""Content credentials (C2PA) on delivered photos, and `deskmark verify` reading them back.
(The pipeline's own signed note: tests/test_zendesk_flow.py.)"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from PIL import Image

from deskmark.sandbox.photos import damaged_product
from integrations.config import ConfigError, Settings
from worker import credentials
from worker.store import Store

ORIGINAL = damaged_product(1600, 1200, seed=150)
FACTS = credentials.Provenance("dm-0123456789abcdef", "gorgias", "4242", "IMG_0420.jpg", "gpt-image-2",
                               [{"label": "cracked lid", "x": 600, "y": 300, "width": 240, "height": 180}])


def marked_jpeg() -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(ORIGINAL)).resize((1536, 1152)).save(out, "JPEG", quality=92)
    return out.getvalue()


def verify(*paths: Path, trust: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`deskmark verify` on another machine than the deployment: the signer's CA given."""
    return subprocess.run([sys.executable, "-m", "deskmark.cli", "verify", *map(str, paths),
                           *(["--trust", str(trust)] if trust else [])],
                          capture_output=True, text=True, timeout=60)


def ca_file(keys: credentials.Keys, tmp_path: Path) -> Path:
    path = tmp_path / "deskmark-ca.pem"
    path.write_text(credentials.issuer_pem(keys.chain_pem))
    return path


def change_pixels(jpeg: bytes) -> bytes:
    """A few bytes of the compressed pixels changed, the file still a JPEG with its manifest."""
    data = bytearray(jpeg)
    at = data.rindex(b"\xff\xda") + 400  # well inside the last scan's entropy-coded data
    for i in range(at, at + 40, 8):
        if data[i] not in (0xFF, 0xFE) and data[i - 1] != 0xFF:
            data[i] ^= 0x01
    assert bytes(data) != jpeg
    return bytes(data)


@pytest.fixture(scope="module")
def keys() -> credentials.Keys:
    return credentials.throwaway_keys()


@pytest.mark.e2e  # `deskmark verify` as a process
def test_a_signed_photo_verifies_and_names_the_original_model_region_and_job(
        keys: credentials.Keys, tmp_path: Path) -> None:
    signed = credentials.sign(marked_jpeg(), io.BytesIO(ORIGINAL), "image/jpeg", FACTS, keys)
    assert Image.open(io.BytesIO(signed)).size == (1536, 1152)
    photo = tmp_path / "IMG_0420-marked.jpg"
    photo.write_bytes(signed)
    result = verify(photo, trust=ca_file(keys, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"{photo}: valid, signed by this deployment (--trust " in out
    assert f"original sha256  {hashlib.sha256(ORIGINAL).hexdigest()}" in out
    assert "marked by        gpt-image-2 (the model's strokes; source type compositeWithTrainedAlgorithmicMedia)" in out
    assert "region           'cracked lid' at x=600 y=300, 240×180 px" in out
    assert "job              dm-0123456789abcdef (gorgias ticket 4242)" in out
    assert "signer           deskmark throwaway signer (issued by deskmark)" in out


@pytest.mark.e2e  # `deskmark verify` as a process
def test_changed_pixels_or_no_credentials_exit_1(keys: credentials.Keys, tmp_path: Path) -> None:
    signed = credentials.sign(marked_jpeg(), io.BytesIO(ORIGINAL), "image/jpeg", FACTS, keys)
    good, changed, plain = tmp_path / "good.jpg", tmp_path / "changed.jpg", tmp_path / "plain.jpg"
    good.write_bytes(signed)
    changed.write_bytes(change_pixels(signed))
    plain.write_bytes(ORIGINAL)
    trust = ca_file(keys, tmp_path)
    assert verify(good, trust=trust).returncode == 0
    result = verify(changed, trust=trust)
    assert result.returncode == 1
    assert f"{changed}: INVALID: the photo was changed after it was signed" in result.stdout
    assert "mismatch" in result.stdout
    result = verify(plain, good, trust=trust)
    assert result.returncode == 1 and f"{plain}: no content credentials" in result.stdout
    assert f"{good}: valid" in result.stdout  # the others are still reported
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("hello")
    result = verify(not_an_image, trust=trust)
    assert result.returncode == 1 and "not an image" in result.stdout
    missing = verify(tmp_path / "nope.jpg", trust=trust)
    assert missing.returncode == 1 and "cannot be read" in missing.stdout


def test_deskmarks_own_drawing_declares_no_ai_source(keys: credentials.Keys) -> None:
    drawn = credentials.Provenance(**{**FACTS.__dict__, "model": None})
    summary = credentials.read(credentials.sign(marked_jpeg(), io.BytesIO(ORIGINAL), "image/jpeg",
                                                drawn, keys))
    assert summary is not None and summary.valid
    assert summary.ai_source is None and summary.model == "deskmark"


def test_configured_signer_from_files_or_pem(tmp_path: Path) -> None:
    ours = credentials.throwaway_keys(name="Acme Warranty Desk")
    (tmp_path / "chain.pem").write_bytes(ours.chain_pem)
    (tmp_path / "key.pem").write_bytes(ours.key_pem)
    for cert, key in ((str(tmp_path / "chain.pem"), str(tmp_path / "key.pem")),
                      (ours.chain_pem.decode(), ours.key_pem.decode())):
        keys = credentials.keys_from_pem(cert, key)
        assert not keys.throwaway
        summary = credentials.read(credentials.sign(marked_jpeg(), io.BytesIO(ORIGINAL),
                                                    "image/jpeg", FACTS, keys))
        assert summary is not None and summary.valid
        assert summary.signer.startswith("Acme Warranty Desk")
    with pytest.raises(ValueError, match="DESKMARK_C2PA_CERT"):
        credentials.keys_from_pem(str(tmp_path / "missing.pem"), ours.key_pem.decode())


def test_the_cert_and_key_go_together() -> None:
    with pytest.raises(ConfigError, match="DESKMARK_C2PA_CERT and DESKMARK_C2PA_KEY go together"):
        Settings.from_env({"DESKMARK_C2PA_CERT": "/etc/deskmark/chain.pem"}, dotenv=None)
    settings = Settings.from_env({"DESKMARK_C2PA_CERT": "a", "DESKMARK_C2PA_KEY": "-----BEGIN k"},
                                 dotenv=None)
    assert "-----BEGIN k" in settings.secrets() and "BEGIN" not in repr(settings)


def test_every_worker_shares_one_throwaway_signer(redis_url: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(url).delete("dm:c2pa:signer")
    made: list[int] = []

    def make() -> str:
        made.append(1)
        return credentials.throwaway_keys().to_json()

    first = Store.from_url(url).shared_signer(make)
    second = Store.from_url(url).shared_signer(make)
    assert first == second and len(made) == 1
    assert credentials.Keys.from_json(first).throwaway


def test_a_customer_photo_in_other_formats_is_the_ingredient(keys: credentials.Keys) -> None:
    for fmt, kind in (("PNG", "image/png"), ("WEBP", "image/webp"), ("GIF", "image/gif")):
        out = io.BytesIO()
        Image.open(io.BytesIO(ORIGINAL)).save(out, fmt)
        summary = credentials.read(credentials.sign(marked_jpeg(), io.BytesIO(out.getvalue()), kind,
                                                    FACTS, keys))
        assert summary is not None and summary.valid, fmt
        assert summary.original_sha256 == hashlib.sha256(out.getvalue()).hexdigest()


