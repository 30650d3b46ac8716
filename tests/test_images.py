"""Untrusted bytes in: type by magic bytes, pixel ceiling before decoding, broken files refused,
orientation applied, metadata never carried out."""

from __future__ import annotations

import io

import pytest
from PIL import Image, PngImagePlugin

from deskmark.sandbox.photos import damaged_product
from integrations.errors import UnusablePhoto
from tests.helpers import png_with_header_only
from worker import images, strokes


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (9_000, 9_000)])
def test_decompression_bombs_are_refused_before_decoding(width: int, height: int) -> None:
    with pytest.raises(UnusablePhoto, match="decompression bomb|MP limit"):
        images.load(png_with_header_only(width, height))


def test_a_truncated_jpeg_is_refused() -> None:
    data = damaged_product(800, 600)
    with pytest.raises(UnusablePhoto, match="broken or truncated JPEG"):
        images.load(data[: len(data) // 2])


@pytest.mark.parametrize("data", [b"<html><body>hi</body></html>", b"%PDF-1.7", b"", b"\xff\xd8"])
def test_the_type_comes_from_the_bytes(data: bytes) -> None:
    with pytest.raises(UnusablePhoto, match="not an image"):
        images.load(data)


def test_a_png_named_jpeg_still_loads_by_its_bytes() -> None:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "green").save(out, format="PNG")
    assert images.sniff(out.getvalue()) == "PNG"
    assert images.load(out.getvalue()).size == (64, 48)


def test_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (40, 30), c) for c in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    assert images.load(out.getvalue()).getpixel((5, 5)) == (255, 0, 0)


def test_webp_and_heic_are_read() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    source = Image.open(io.BytesIO(damaged_product(640, 480, fmt="PNG")))
    for fmt, magic in (("WEBP", "WEBP"), ("HEIF", "HEIF")):
        out = io.BytesIO()
        source.save(out, format=fmt, quality=80)
        assert images.sniff(out.getvalue()) == magic
        assert images.load(out.getvalue()).size == (640, 480)


def test_orientation_is_applied_and_metadata_does_not_leave() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 22.0, 1.0)})
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "home address")
    out = io.BytesIO()
    Image.new("RGB", (400, 300), "white").save(out, format="PNG", exif=exif.tobytes(), pnginfo=info)
    prepared = images.prepare(out.getvalue(), lambda w, h: (w, h))
    assert prepared.photo.size == (300, 400)  # turned upright
    sent = Image.open(io.BytesIO(prepared.request_image))
    assert sent.format == "JPEG" and prepared.request_mime == "image/jpeg"
    assert not sent.getexif() and "Comment" not in sent.info and "exif" not in sent.info
    delivered = Image.open(io.BytesIO(images.encode_jpeg(prepared.photo)))
    assert not delivered.getexif()


def test_big_jpegs_decode_at_a_reduced_scale_but_not_below_the_floor() -> None:
    photo = damaged_product(4032, 3024)
    assert images.load(photo, images.DECODE_FLOOR).size == (2016, 1512)
    assert images.load(photo).size == (4032, 3024)
    assert images.load(damaged_product(1600, 1200), images.DECODE_FLOOR).size == (1600, 1200)


def test_only_red_the_model_added_counts_as_a_stroke() -> None:
    sent = Image.new("RGB", (300, 200), (90, 90, 90))
    sent.paste((200, 30, 30), (0, 0, 100, 200))  # a red product on the left
    output = sent.point(lambda v: min(255, v + 12))  # the model brightened everything ...
    output.paste((225, 25, 25), (180, 60, 200, 140))  # ... and drew a red stroke on grey
    added = strokes.added_red(sent, output)
    assert added.getpixel((190, 100)) == 255  # the new stroke
    assert added.getpixel((50, 100)) == 0  # the product's own red, brightened
    assert added.getpixel((150, 100)) == 0  # grey, brightened


def test_pixels_outside_the_kept_strokes_are_exactly_the_photos() -> None:
    photo = Image.open(io.BytesIO(damaged_product(600, 400, fmt="PNG"))).convert("RGB")
    sent = photo.resize((300, 200))
    output = Image.new("RGB", sent.size, (0, 255, 0))  # the model redrew everything green ...
    output.paste((230, 20, 20), (100, 50, 104, 150))  # ... with one red stroke
    reading = strokes.Reading(added=Image.new("L", sent.size), strokes=Image.new("L", sent.size),
                              areas=[(90, 40, 120, 160)], checks=[], stray=0)
    reading.strokes.paste(255, (100, 50, 104, 150))
    result = photo.copy()
    strokes.paste_strokes(result, output, reading)
    assert result.getpixel((204, 200)) == (230, 20, 20)  # the stroke, scaled up
    for x, y in ((0, 0), (190, 150), (230, 200), (215, 90), (599, 399)):
        assert result.getpixel((x, y)) == photo.getpixel((x, y))  # never the model's green


def test_the_edit_mask_is_transparent_only_in_the_regions() -> None:
    mask = Image.open(io.BytesIO(images.edit_mask((320, 240), [(10, 20, 110, 120)])))
    assert mask.format == "PNG" and mask.mode == "RGBA" and mask.size == (320, 240)
    assert mask.getchannel("A").getpixel((50, 50)) == 0 and mask.getchannel("A").getpixel((200, 200)) == 255


def test_a_small_file_of_many_pixels_is_refused_from_its_header() -> None:
    bomb = png_with_header_only(8000, 8000)  # 64 MP in a few KB: 448 MB to decode as RGBA→RGB
    with pytest.raises(UnusablePhoto, match="pixels per byte"):
        images.decode_cost(bomb)  # from the header: its pixel data is not even valid
    with pytest.raises(UnusablePhoto, match="pixels per byte"):
        images.load(bomb)
    # A photo that size with a plausible file size passes the check (and decodes at 1/4).
    assert images.decode_cost(damaged_product(4032, 3024), images.DECODE_FLOOR) == 2016 * 1512 * 3


def test_image_work_is_admitted_by_bytes_of_pixels() -> None:
    import threading
    import time

    from worker.marking import MemoryBudget

    budget = MemoryBudget(limit_mb=100)
    most = [0]
    lock = threading.Lock()

    def work() -> None:
        with budget.admit(30 * 2**20):
            with lock:
                most[0] = max(most[0], budget.used)
            time.sleep(0.05)

    threads = [threading.Thread(target=work) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 60 * 2**20 <= most[0] <= 90 * 2**20 and budget.used == 0  # at most three at once
    with pytest.raises(UnusablePhoto, match="DESKMARK_IMAGE_MEMORY_MB"), budget.admit(101 * 2**20):
        pass


def test_a_photo_too_big_for_the_workers_image_memory_is_refused_with_the_reason() -> None:
    from worker.marking import Marker, MemoryBudget

    photo = damaged_product(3000, 2000, fmt="PNG")  # 18 MB of pixels, and the stage's own
    with pytest.raises(UnusablePhoto, match="over this worker's 30 MB for images"):
        Marker(editor=None, memory=MemoryBudget(30)).mark(photo)
    assert Marker(editor=None, memory=MemoryBudget(64)).mark(photo).meta["marked"]
