"""Hostile user inputs: every image and text either becomes a clean value or an InputError naming the fix."""
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cmr_demo.serve.inputs import (
    MAX_QUERY_CHARS,
    InputError,
    check_choice,
    check_class,
    check_k,
    clean_text,
    load_image,
)


def png_bytes(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height with almost no data: decoding it would need gigabytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = b"IDAT" + zlib.compress(b"\x00" * 16)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
            + struct.pack(">I", len(idat) - 4) + idat + struct.pack(">I", zlib.crc32(idat)))


@pytest.mark.parametrize("data, message", [
    (b"", "0 bytes"),
    (b"this is not an image at all", "not an image"),
    (png_bytes(Image.new("RGB", (64, 64), "red"))[:60], "truncated or damaged"),
    (bomb_png(100_000, 100_000), "more than 40,000,000 pixels"),  # PIL refuses it at open
    (bomb_png(8_000, 8_000), "8000 x 8000 pixels"),  # under PIL's limit, over ours: refused before decoding
])
def test_broken_and_hostile_files_are_refused_with_a_reason(data, message, tmp_path):
    path = tmp_path / "upload.png"
    path.write_bytes(data)
    with pytest.raises(InputError, match=message):
        load_image(str(path))
    with pytest.raises(InputError, match=message):
        load_image(data)


def _exif_rotated_jpeg() -> bytes:
    im = Image.new("RGB", (40, 20), "blue")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    return png_bytes(im, format="JPEG", exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [Image.new("P", (16, 16), c) for c in (1, 2, 3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


@pytest.mark.parametrize("data, size", [
    (png_bytes(Image.new("RGB", (1, 1), "white")), (1, 1)),
    (_animated_gif(), (16, 16)),
    (png_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), format="JPEG"), (8, 8)),
    (png_bytes(Image.fromarray(np.arange(0, 65536, 256, dtype=np.uint16).reshape(16, 16))), (16, 16)),
    (png_bytes(Image.new("P", (8, 8), 3), transparency=3), (8, 8)),
    (png_bytes(Image.new("LA", (8, 8), (100, 0))), (8, 8)),
    (_exif_rotated_jpeg(), (20, 40)),  # EXIF orientation applied: portrait
])
def test_unusual_but_valid_images_become_rgb(data, size):
    image = load_image(data)
    assert image.mode == "RGB" and image.size == size


def test_sixteen_bit_images_are_rescaled_not_saturated():
    ramp = Image.fromarray(np.arange(0, 65536, 256, dtype=np.uint16).reshape(16, 16))
    pixels = np.asarray(load_image(png_bytes(ramp)))
    assert pixels.min() == 0 and pixels.max() == 255 and len(np.unique(pixels)) > 100


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("bits", [0x7F800001, 0x7FC00000, 0x7F800000, 0xFF800000])  # sNaN, qNaN, +inf, -inf
def test_float_images_with_nan_and_inf_become_a_clean_grey_ramp(bits):
    """Float TIFFs hold whatever bits a file says: a signalling NaN once made the float64 widening raise
    'invalid value encountered in cast' (the fuzz test's flaky 3x15 image). Non-finite pixels become black."""
    arr = np.tile(np.linspace(-2.0, 5.0, 15, dtype=np.float32), (3, 1))
    arr.view(np.uint32)[1, 3] = bits
    buf = io.BytesIO()
    Image.fromarray(arr, "F").save(buf, "TIFF")
    grey = np.asarray(load_image(buf.getvalue()))[..., 0]
    assert grey.dtype == np.uint8 and grey[0, 0] == 0 and grey[0, -1] == 255 and grey[1, 3] == 0


def _large(kind: str, w: int = 6000, h: int = 4000) -> Image.Image:
    """A w x h picture of `kind` whose left half differs from its right half."""
    left = np.arange(w)[None, :] < w // 2
    if kind == "I;16":
        return Image.fromarray(np.where(left, 1000, 60000).repeat(h, 0).astype(np.uint16))
    if kind in ("I", "F"):
        return Image.fromarray(np.where(left, -5, 2 ** 20).repeat(h, 0).astype(np.int32 if kind == "I" else np.float32),
                               kind)
    if kind == "RGBA":  # left transparent (white once flattened), right opaque red
        return Image.fromarray(
            np.where(left[..., None], [255, 0, 0, 0], [255, 0, 0, 255]).repeat(h, 0).astype(np.uint8)
        )
    return Image.fromarray(np.where(left, 0, 1).repeat(h, 0).astype(np.uint8), "L").convert("P")  # palette 0 / 1


@pytest.mark.parametrize("kind", ["I;16", "I", "F", "RGBA", "P"])
def test_large_pictures_are_shrunk_in_their_own_mode_and_keep_their_content(kind):
    """A picture over WORKING_PIXELS is averaged down before any conversion (a 40 Mpx int32 TIFF converted at full
    size took 1.3 GB): 24 Mpx -> 1500 x 1000, the left half still unlike the right."""
    from cmr_demo.serve.inputs import WORKING_PIXELS
    tiff = {"format": "TIFF", "compression": "tiff_deflate"} if kind in ("I", "F") else {}
    out = np.asarray(load_image(png_bytes(_large(kind), **tiff)))
    assert out.shape == (1000, 1500, 3) and out.shape[0] * out.shape[1] <= WORKING_PIXELS
    left, right = out[:, :700].reshape(-1, 3), out[:, 800:].reshape(-1, 3)
    assert (left == left[0]).all() and (right == right[0]).all() and (left[0] != right[0]).any(), (left[0], right[0])


def test_a_large_picture_still_follows_its_exif_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6
    image = load_image(png_bytes(Image.new("RGB", (3000, 1500), "blue"), format="JPEG", exif=exif.tobytes()))
    assert image.size[1] > image.size[0] and image.size[0] >= 448  # portrait, shrunk


def test_a_high_bit_depth_picture_at_the_pixel_cap_is_read_in_bounded_memory(tmp_path):
    """The hostile probe's 6324 x 6324 int32 TIFF (a few hundred kB) once raised RSS by 972 MB: now <= 400 MB."""
    import subprocess
    import sys
    side = 6324
    ramp = (np.arange(side, dtype=np.int32) // 64 * 7)
    Image.fromarray(ramp[None, :].repeat(side, 0) + ramp[:, None] * 1000, "I").save(tmp_path / "p.tif",
                                                                                    compression="tiff_deflate")
    # the child's own peak (ru_maxrss would carry the parent's, pytest's, across exec)
    peak = "int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    code = ("import sys; from cmr_demo.serve.inputs import load_image; data = open(sys.argv[1], 'rb').read(); "
            f"before = {peak}; image = load_image(data); print(image.size, ({peak} - before) / 1024)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "p.tif")], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1]).stdout.split(")")
    assert float(out[1]) <= 400, f"reading the picture raised RSS by {out[1]} MB"


def test_transparency_is_flattened_onto_white():
    clear = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert np.asarray(load_image(png_bytes(clear))).min() == 255


def test_missing_upload_and_wrong_types():
    with pytest.raises(InputError, match="no image was given"):
        load_image(None)
    with pytest.raises(InputError, match="missing on the server"):
        load_image("/nonexistent/upload.png")
    with pytest.raises(InputError, match="file path or picture"):
        load_image(12345)


@pytest.mark.parametrize("text, expected", [
    ("  a red   star\n", "a red star"),
    ("a\x00red\x07star", "a red star"),
    ("\u202ea red star\u202c", "a red star"),  # right-to-left override marks dropped
    ("a red ⭐ star 🎉", "a red ⭐ star 🎉"),
    ("<script>alert(1)</script> star", "<script>alert(1)</script> star"),  # kept as text, never rendered as HTML
])
def test_texts_are_cleaned(text, expected):
    assert clean_text(text) == expected


def test_long_texts_are_cut_with_a_note():
    notes = []
    assert len(clean_text("star " * 20_000, notes)) == MAX_QUERY_CHARS
    assert notes and str(MAX_QUERY_CHARS) in notes[0]


@pytest.mark.parametrize("text", ["", "   ", "\x00\x01", "\u200b\u200e", None])
def test_empty_texts_are_refused(text):
    with pytest.raises(InputError, match="empty"):
        clean_text(text)


def test_non_text_query_is_refused():
    with pytest.raises(InputError, match="must be text"):
        clean_text(["a", "list"])


@pytest.mark.parametrize("k", [0, -3, 2.5, float("nan"), float("inf"), "5", None, True])
def test_bad_k_is_refused(k):
    with pytest.raises(InputError, match="whole number"):
        check_k(k, 100)


def test_k_is_capped_to_the_gallery_with_a_note():
    notes = []
    assert check_k(12.0, 100) == 12 and check_k(500, 40, notes) == 40 and "showing 40" in notes[0]


def test_choices_and_classes():
    assert check_choice("pcl", ["pcl", "ce"], "objective") == "pcl"
    with pytest.raises(InputError, match="choose one of: pcl, ce"):
        check_choice("/etc/passwd", ["pcl", "ce"], "objective")
    with pytest.raises(InputError, match="unknown objective"):
        check_choice(["pcl"], ["pcl", "ce"], "objective")
    assert check_class("", ["star"]) is None and check_class(None, ["star"]) is None
    assert check_class(" star ", ["ring", "star"]) == 1
