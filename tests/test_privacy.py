"""Nothing private leaves: a customer's photo carries more than pixels (where it was taken, the
phone's serial number, names and addresses in captions and comments). None of it may reach the
models (the locate and the edit request) or go back to a helpdesk (the delivered photo), and the
pixels go out in sRGB. One test per kind of metadata, each in both directions.
"""

from __future__ import annotations

import io
import struct
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image, ImageCms, PngImagePlugin

from deskmark.sandbox.openai import SandboxOpenAI
from deskmark.sandbox.photos import damaged_product
from integrations.config import Settings
from tests.helpers import wait_for
from worker import images
from worker.marking import Marker, make_marker

SECRET = b"SECRET-7F3A"  # planted in every kind of metadata; must appear in no byte that leaves


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def with_segments(jpeg: bytes, *segments: bytes) -> bytes:
    """`jpeg` with extra marker segments right after its start of image."""
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def jpeg(**save: Any) -> bytes:
    image = Image.open(io.BytesIO(damaged_product(1200, 900, fmt="PNG")))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90, **save)
    return out.getvalue()


def exif_gps() -> bytes:
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (52.0, 22.0, 1.0), 3: "E", 4: (4.0, 53.0, 2.0), 0x1B: SECRET})
    return jpeg(exif=exif.tobytes())


def exif_makernote_serial() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x0131] = SECRET.decode()  # Software
    details = exif.get_ifd(0x8769)
    details[0x927C] = b"MakerNote " + SECRET  # maker notes: serials, lens, owner
    details[0xA431] = SECRET.decode()  # BodySerialNumber
    details[0xA430] = "Jane Customer"  # CameraOwnerName
    return jpeg(exif=exif.tobytes())


def xmp() -> bytes:
    packet = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
              b'22-rdf-syntax-ns#"><rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/">'
              b"<dc:creator>" + SECRET + b"</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>")
    return with_segments(jpeg(), _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + packet))


def iptc() -> bytes:
    caption = SECRET + b" 12 Home Street"
    record = b"\x1c\x02\x78" + struct.pack(">H", len(caption)) + caption  # IPTC 2:120 caption
    resource = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(record)) + record
    return with_segments(jpeg(), _segment(0xED, b"Photoshop 3.0\x00" + resource))


def jpeg_comment() -> bytes:
    return with_segments(jpeg(), _segment(0xFE, b"sent from " + SECRET + b"'s phone"))


def png_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", SECRET.decode())
    info.add_text("Author", SECRET.decode(), zip=True)  # zTXt
    info.add_itxt("Description", SECRET.decode())
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 22.0, 1.0), 0x1B: SECRET})
    image = Image.open(io.BytesIO(damaged_product(1200, 900, fmt="PNG")))
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info, exif=exif.tobytes())
    return out.getvalue()


def heic_exif_xmp() -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 22.0, 1.0), 0x1B: SECRET})
    image = Image.open(io.BytesIO(damaged_product(1200, 900, fmt="PNG")))
    out = io.BytesIO()
    image.save(out, format="HEIF", quality=85, exif=exif.tobytes(),
               xmp=b"<x:xmpmeta><dc:creator>" + SECRET + b"</dc:creator></x:xmpmeta>")
    return out.getvalue()


def swapped_primaries_profile() -> bytes:
    """An RGB ICC profile whose red and blue primaries are swapped (built from sRGB's by
    exchanging the rXYZ and bXYZ tags), with SECRET in a tag of its own: pixels tagged with it
    are pure blue where their values say pure red, so a missed conversion shows at once."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack(">I", data[128:132])
    tags = {bytes(data[132 + 12 * i:136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, blue = tags[b"rXYZ"], tags[b"bXYZ"]
    data[red + 4:red + 12], data[blue + 4:blue + 12] = data[blue + 4:blue + 12], data[red + 4:red + 12]
    # A private tag naming the secret: profiles carry text too.
    text = b"text\x00\x00\x00\x00" + SECRET + b"\x00"
    offset = len(data)
    data += text + b"\x00" * (-len(text) % 4)
    data[128:132] = struct.pack(">I", count + 1)
    entry = b"dmsc" + struct.pack(">II", offset, len(text))
    data[132 + 12 * count:132 + 12 * count] = entry
    # Everything after the tag table moved by 12 bytes: shift every offset, then the size.
    for i in range(count + 1):
        start = 132 + 12 * i
        (at,) = struct.unpack(">I", data[start + 4:start + 8])
        data[start + 4:start + 8] = struct.pack(">I", at + 12)
    data[0:4] = struct.pack(">I", len(data))
    return bytes(data)


def icc_profile() -> bytes:
    """A photo whose top-left block is stored as pure red under the swapped profile."""
    image = Image.open(io.BytesIO(damaged_product(1200, 900, fmt="PNG"))).convert("RGB")
    image.paste((255, 0, 0), (0, 0, 200, 200))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95, icc_profile=swapped_primaries_profile())
    return out.getvalue()


KINDS: dict[str, Callable[[], bytes]] = {
    "EXIF with GPS": exif_gps,
    "EXIF maker note and serial number": exif_makernote_serial,
    "XMP": xmp,
    "IPTC": iptc,
    "JPEG comment": jpeg_comment,
    "PNG text chunks and eXIf": png_text,
    "HEIC with EXIF and XMP": heic_exif_xmp,
    "ICC profile": icc_profile,
}


def metadata_in(data: bytes) -> list[str]:
    """What a delivered or sent file carries beyond pixels: JPEG APPn (but JFIF, and the JUMBF
    of deskmark's own content credentials, whose contents the secret check covers: CBOR keeps
    strings as they are) and COM segments, PNG ancillary chunks that are not about pixels."""
    found = []
    if data[:2] == b"\xff\xd8":
        at = 2
        while at + 4 <= len(data) and data[at] == 0xFF:
            marker = data[at + 1]
            if marker == 0xDA:  # start of scan: the headers are over
                break
            (length,) = struct.unpack(">H", data[at + 2:at + 4])
            payload = data[at + 4:at + 2 + length]
            if marker == 0xEB and payload.startswith(b"JP"):  # C2PA (worker.credentials)
                pass
            elif marker == 0xFE or (0xE1 <= marker <= 0xEF) or (marker == 0xE0 and not payload.startswith(b"JFIF")):
                found.append(f"JPEG segment {marker:#04x} {payload[:12]!r}")
            at += 2 + length
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        at = 8
        while at + 8 <= len(data):
            (length,) = struct.unpack(">I", data[at:at + 4])
            kind = data[at + 4:at + 8]
            if kind in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP", b"caBX"):
                found.append(f"PNG chunk {kind.decode()}")
            at += 12 + length
    else:
        found.append(f"not a JPEG or PNG: {data[:12]!r}")
    if SECRET in data:
        found.append("the secret itself")
    return found


def marker_for(fake: SandboxOpenAI) -> Marker:
    return make_marker(Settings.from_env({
        "OPENAI_API_KEY": fake.api_key, "OPENAI_BASE_URL": fake.url,
        "DESKMARK_EDIT_MODEL": "gpt-image-2", "DESKMARK_LOCATE_MODEL": "gpt-5.4"}, dotenv=None))


@pytest.mark.parametrize("kind", list(KINDS))
def test_no_metadata_reaches_the_models(openai_fake: SandboxOpenAI, kind: str) -> None:
    photo = KINDS[kind]()
    assert SECRET in photo  # the test photo does carry it
    calls, located = len(openai_fake.calls), len(openai_fake.located)
    marker_for(openai_fake).mark(photo, "Cracked", "")
    [edit] = openai_fake.calls[calls:]
    [locate] = openai_fake.located[located:]
    for sent in [*edit["raw"], locate["raw"]]:
        assert metadata_in(sent) == []
        assert not Image.open(io.BytesIO(sent)).info.get("icc_profile")


@pytest.mark.parametrize("provider", ["openai", "local"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_no_metadata_goes_back_to_the_helpdesk(openai_fake: SandboxOpenAI, kind: str, provider: str) -> None:
    photo = KINDS[kind]()
    marker = marker_for(openai_fake) if provider == "openai" else Marker(editor=None)
    marked = marker.mark(photo)
    # What the note carries, and the dashboard's thumbnails. (The model's own output carries
    # metadata too, a PNG text chunk from the stand-in: that stays behind as well.)
    for delivered in (marked.image, marked.before, marked.after):
        assert metadata_in(delivered) == []
    assert b"sandbox-openai" not in marked.image


def test_pixels_are_converted_to_srgb_in_both_directions(openai_fake: SandboxOpenAI) -> None:
    photo = icc_profile()
    calls = len(openai_fake.calls)
    marked = marker_for(openai_fake).mark(photo)
    [edit] = openai_fake.calls[calls:]
    sent = Image.open(io.BytesIO(edit["raw"][0])).convert("RGB")
    delivered = Image.open(io.BytesIO(marked.image)).convert("RGB")
    for image in (sent, delivered):
        r, g, b = image.getpixel((image.width * 50 // 1200, image.width * 50 // 1200))  # type: ignore[misc]
        assert b > 200 and r < 60, (r, g, b)  # stored "red" under a red/blue-swapped profile is blue


def test_an_srgb_tagged_photo_keeps_its_pixels_and_loses_the_tag() -> None:
    image = Image.new("RGB", (64, 48), (200, 30, 40))
    out = io.BytesIO()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image.save(out, format="PNG", icc_profile=srgb)
    loaded = images.load(out.getvalue())
    assert loaded.getpixel((5, 5)) == (200, 30, 40) and loaded.info == {}
    assert metadata_in(images.encode_png(loaded)) == []


def everything_at_once() -> bytes:
    """One phone photo with a JPEG comment, XMP, IPTC, and EXIF with GPS and a maker note."""
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 22.0, 1.0), 3: "E", 4: (4.0, 53.0, 2.0),
                                 0x1B: SECRET})
    exif.get_ifd(0x8769)[0x927C] = b"MakerNote " + SECRET
    xmp_packet = b"<x:xmpmeta><dc:creator>" + SECRET + b"</dc:creator></x:xmpmeta>"
    caption = SECRET + b" 12 Home Street"
    iptc_record = b"\x1c\x02\x78" + struct.pack(">H", len(caption)) + caption
    return with_segments(
        jpeg(exif=exif.tobytes()),
        _segment(0xFE, b"sent from " + SECRET + b"'s phone"),
        _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + xmp_packet),
        _segment(0xED, b"Photoshop 3.0\x00" + b"8BIM\x04\x04\x00\x00"
                 + struct.pack(">I", len(iptc_record)) + iptc_record))


def test_a_photo_with_every_kind_of_metadata_leaves_none_of_it_anywhere(
    worker: Any, web: Any, zendesk: Any, openai_fake: SandboxOpenAI, redis_url: str,
) -> None:
    from deskmark.sandbox.zendesk import SandboxZendesk
    from integrations.events import job_id_for
    from worker.store import Store

    photo = everything_at_once()
    assert len(metadata_in(photo)) == 5  # four segments, and the secret
    subject = f"Scuffed case {uuid.uuid4().hex[:8]}"
    ticket_id = zendesk.create_ticket(subject, "Scuffed on arrival.")
    comment = zendesk.add_comment(ticket_id, SandboxZendesk.CUSTOMER_ID, "photo",
                                  [("IMG_0042.jpg", photo, "image/jpeg")])
    job_id = job_id_for("zendesk", str(ticket_id), str(comment.attachments[0].id))
    store = Store.from_url(redis_url)
    wait_for(lambda: store.job(job_id).get("state") == "done", timeout=60)
    [edit] = [c for c in openai_fake.calls if subject in str(c["prompt"])]
    [locate] = [r for r in openai_fake.located if subject in r["text"]]
    [note] = [n for n in zendesk.notes(ticket_id) if n.attachments]
    for sent in [*edit["raw"], locate["raw"], note.attachments[0].data]:
        assert metadata_in(sent) == []
    # The delivered photo's content credentials say what deskmark did, nothing of the metadata.
    assert b"c2pa" in note.attachments[0].data and b"exif" not in note.attachments[0].data.lower()
    for thumbnail in ("before", "after"):
        assert metadata_in(store.image(job_id, thumbnail) or b"") == []
