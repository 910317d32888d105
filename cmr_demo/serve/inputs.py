"""Checking what users send: query texts, uploaded images, k, objective and class names.

Why one module: the app, its API and the fuzz tests meet every hostile input here, once. Each check
returns a clean value or raises `InputError` whose message names the problem and the fix; nothing
here touches gradio, so the app turns these into `gr.Error` at its edge and keeps serving.
"""
from __future__ import annotations

import io
import math
import threading
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_QUERY_CHARS = 1000  # the tokenizer keeps ~32-77 tokens anyway; longer input only costs time
MAX_IMAGE_BYTES = 20 * 2 ** 20  # a generous photo; larger uploads are refused before reading
MAX_IMAGE_PIXELS = 40_000_000  # ~ a 7000 x 5700 photo; declared sizes above this are refused unread
MAX_K = 100  # results per query shown or returned
MAX_ASPECT = 20  # longer side / shorter side kept of an upload; CLIP only looks at the centre square anyway
# a decoded picture is shrunk to about this many pixels before any conversion (CLIP sees 224-336 px; a 40 Mpx int32
# TIFF converted at full size took 1.3 GB), its short side kept at MIN_SIDE or more
WORKING_PIXELS = 2_000_000
MIN_SIDE = 448
DECODING = threading.BoundedSemaphore(2)  # full-size decodes at once, process-wide (each up to 160 MB at 40 Mpx)


class InputError(ValueError):
    """A user input the service cannot use; the message says what was wrong and what to send instead."""


def shown(value: object, limit: int = 80) -> str:
    """repr of a user value for a message, cut to `limit` characters (never fails, even on huge ints)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # ints beyond sys.get_int_max_str_digits(), deep nesting
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= limit else text[:limit] + "..."


def clean_text(text: object, notes: list[str] | None = None) -> str:
    """Printable, whitespace-normalised text of at most MAX_QUERY_CHARS characters, or InputError."""
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise InputError(f"the query must be text; got {type(text).__name__}")
    # control and format characters (NUL, bidi marks, zero-width joiners ...) carry no meaning for CLIP
    kept = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text[:20 * MAX_QUERY_CHARS])
    kept = " ".join(kept.split())
    if not kept:
        raise InputError("the text query is empty: type a few words, e.g. 'a red star on a striped background'")
    if len(kept) > MAX_QUERY_CHARS:
        kept = kept[:MAX_QUERY_CHARS]
        if notes is not None:
            notes.append(f"the query was cut to its first {MAX_QUERY_CHARS} characters")
    return kept


def check_k(k: object, gallery_size: int, notes: list[str] | None = None) -> int:
    """A whole number of results in 1..min(MAX_K, gallery size)."""
    number = isinstance(k, (int, float, np.integer, np.floating)) and not isinstance(k, bool)
    # isfinite fails on ints > 2**64
    finite = number and not (isinstance(k, (float, np.floating)) and not np.isfinite(k))
    if not finite or k != int(k) or k < 1:
        raise InputError(f"k (number of results) must be a whole number from 1 to {MAX_K}; got {shown(k)}")
    limit = min(MAX_K, gallery_size)
    if k > limit and notes is not None:
        holds = "the gallery holds" if limit == gallery_size else "allowed"
        notes.append(f"k={shown(int(k), 30)} is more than {holds}; showing {limit}")
    return int(min(k, limit))


def check_choice(value: object, choices: Sequence[str], what: str) -> str:
    """`value` when it is one of `choices` (exactly), else an InputError listing them."""
    if isinstance(value, str) and value in choices:
        return value
    raise InputError(f"unknown {what} {shown(value)}; choose one of: {', '.join(choices)}")


def check_flag(value: object, what: str) -> bool:
    """A yes/no option: a boolean (None, i.e. left out, is False)."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InputError(f"{what} must be true or false; got {shown(value)}")


def check_choices(values: object, choices: Sequence[str], what: str) -> list[str]:
    """A list of names from `choices` (None: an empty list), duplicates dropped, order kept."""
    if values is None:
        return []
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InputError(f"{what} must be a list of names; got {shown(values)}")
    return list(dict.fromkeys(check_choice(v, choices, what.rstrip("s")) for v in values))


def check_class(name: object, class_names: Sequence[str]) -> int | None:
    """Class id for a stated class name; None when no class was stated (empty or None)."""
    if name is None or (isinstance(name, str) and not name.strip()):
        return None
    return list(class_names).index(check_choice(name.strip() if isinstance(name, str) else name,
                                                class_names, "class"))


def load_image(source: object) -> Image.Image:
    """An RGB PIL image from a path, bytes or PIL image, refusing bombs and broken files with InputError.

    Orientation follows EXIF; the first frame of an animation is used; a large picture is shrunk to about
    WORKING_PIXELS in its own mode first (memory stays bounded whatever its bit depth, and at most two pictures are
    decoded at full size at once); transparency is flattened onto white; 16-bit and float images are scaled to 8
    bits rather than clipped to white; strips
    longer than MAX_ASPECT:1 are centre-cropped to that (CLIP scales the short side up to its input
    size, so a 1 x 1,000,000 strip would become gigapixels, and keeps only the centre square anyway).
    """
    if source is None:
        raise InputError("no image was given: upload one, or pick an example or a gallery item")
    if isinstance(source, Image.Image):
        try:
            return _to_rgb(source)
        except InputError:
            raise
        except (OSError, ValueError) as err:  # a mode PIL cannot convert to RGB, e.g. La or RGBa
            raise InputError(f"the picture cannot be converted to RGB ({str(err)[:120]}): "
                             f"send it as a PNG or JPEG file") from None
    data = _read_bytes(source)
    if not data:
        raise InputError("the image file is empty (0 bytes): upload a PNG, JPEG, GIF or WebP picture")
    try:
        with DECODING, Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise InputError(f"the image declares {w} x {h} pixels, more than the {MAX_IMAGE_PIXELS:,} "
                                 f"allowed: resize it below that and upload again")
            im.seek(0)
            factor = shrink_factor(w, h)
            if factor > 1 and im.format == "JPEG":
                im.draft(im.mode, (w // factor, h // factor))  # decoded at 1/2, 1/4 or 1/8 size: less to hold
            im.load()
            return _to_rgb(im)
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(f"the image declares more than {MAX_IMAGE_PIXELS:,} pixels (a decompression bomb?): "
                         f"resize it and upload again") from None
    except UnidentifiedImageError as err:
        raise InputError(f"the file is not an image this app can read ({type(err).__name__}): "
                         f"upload a PNG, JPEG, GIF or WebP picture") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise InputError(f"the image could not be decoded ({str(err)[:120]}); it may be truncated or damaged: "
                         f"upload the file again or try another one") from None


def _read_bytes(source: object) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"the uploaded image '{path.name}' is missing on the server: upload it again")
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise InputError(f"the image is {path.stat().st_size / 2 ** 20:.0f} MB, more than "
                             f"{MAX_IMAGE_BYTES // 2 ** 20} MB: upload a smaller file")
        data = path.read_bytes()
    else:
        raise InputError(f"an image must be a file path or picture; got {type(source).__name__}")
    if len(data) > MAX_IMAGE_BYTES:
        raise InputError(f"the image is more than {MAX_IMAGE_BYTES // 2 ** 20} MB: upload a smaller file")
    return data


def shrink_factor(w: int, h: int) -> int:
    """The integer factor a w x h picture is shrunk by before conversion: to about WORKING_PIXELS, its short side
    kept at MIN_SIDE or more (1: left as it is)."""
    wanted = math.ceil(math.sqrt(w * h / WORKING_PIXELS))
    return max(1, min(wanted, min(w, h) // MIN_SIDE))


# modes PIL cannot average in: each band is converted first (its own size only, never the whole picture)
AVERAGED_AS = {"1": "L", "P": "RGBA", "PA": "RGBA", "I;16": "I", "I;16B": "I", "I;16L": "I", "I;16N": "I"}
BAND_ROWS = 64  # rows of the shrunk picture made per band


def _shrunk(im: Image.Image) -> Image.Image:
    """`im` averaged down by `shrink_factor`, a band of rows at a time, in its own mode where PIL can average in it
    (16-bit, int32 and float included) so that no converted copy of the whole picture ever exists: PIL's own
    `reduce` of a 40 Mpx RGBA picture made a premultiplied copy of it (+160 MB), a float64 one took 320 MB."""
    factor = shrink_factor(*im.size)
    if factor <= 1:
        return im
    mode = AVERAGED_AS.get(im.mode, im.mode)
    w, h = im.width // factor, im.height // factor
    out = Image.new(mode, (w, h))
    for top in range(0, h, BAND_ROWS):
        rows = min(BAND_ROWS, h - top)
        band = im.crop((0, top * factor, w * factor, (top + rows) * factor))
        out.paste(band.convert(mode).reduce(factor) if band.mode != mode else band.reduce(factor), (0, top))
    return out


def _upright(im: Image.Image, orientation: object) -> Image.Image:
    """`im` turned as its EXIF orientation (read before shrinking: a shrunk copy has no EXIF) says."""
    method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}.get(orientation)
    return im if method is None else im.transpose(method)


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.width < 1 or im.height < 1:
        raise InputError("the image has no pixels: upload a real picture")
    orientation = im.getexif().get(0x0112)
    im = _upright(_shrunk(im), orientation)
    w, h = im.size
    if max(w, h) > MAX_ASPECT * min(w, h):
        cw, ch = min(w, MAX_ASPECT * h), min(h, MAX_ASPECT * w)
        left, top = (w - cw) // 2, (h - ch) // 2
        im = im.crop((left, top, left + cw, top + ch))
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # high bit depth: rescale, do not saturate
        with np.errstate(invalid="ignore"):  # float TIFFs may hold signalling NaNs: widening them raises
            # 'invalid' (the fuzz test's once-flaky 3x15 image); NaN is handled below
            arr = np.asarray(im, dtype=np.float64)
        finite = np.isfinite(arr)  # float images may hold NaN and inf: scale the finite range, the rest is black
        arr = np.where(finite, arr, np.min(arr, where=finite, initial=np.inf) if finite.any() else 0.0)
        lo, hi = float(arr.min()), float(arr.max())
        # halves first: hi - lo overflows to inf for pixels near +-1.8e308, and inf / inf is NaN
        scaled = np.zeros_like(arr) if hi <= lo else (arr / 2 - lo / 2) / (hi / 2 - lo / 2) * 255
        im = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", im.size, "white")
        background.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
        return background
    return im.convert("RGB")
