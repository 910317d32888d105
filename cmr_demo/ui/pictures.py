"""A gallery item's picture as the page shows it: its file, or a placeholder tile when the file fails its hash check
(changed or damaged since the build), so that one bad file never fails a search or the start-up."""
from __future__ import annotations

import functools
import logging

from cmr_demo.serve.service import RetrievalService
from cmr_demo.ui.gradio_adapter import page_root

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def placeholder_picture():
    """What the page shows for a gallery picture that fails its hash check: a grey tile with a cross."""
    from PIL import Image, ImageDraw
    tile = Image.new("RGB", (96, 96), (200, 200, 200))
    draw = ImageDraw.Draw(tile)
    draw.line([(20, 20), (76, 76)], fill=(120, 120, 120), width=5)
    draw.line([(76, 20), (20, 76)], fill=(120, 120, 120), width=5)
    return tile


def picture(service: RetrievalService, row: int, url: bool = True):
    """A gallery item's picture for a gallery component: inside an event of the page, the URL of the app's /media
    route for it (gradio passes a URL on untouched, and /media tells browsers to keep it: each thumbnail is fetched
    once per visit); outside one (the page as built, a handler called directly), or for a program's call (`url`
    False: gradio_client downloads a result's file through gradio's file route, which refuses a URL), its path.
    When the file was changed or damaged since the bundle was built, a placeholder (logged once per item): one bad
    file never fails a search or the start-up, and is never served. (/media sits beside gradio, which the app
    mounts at '/': the same root.)"""
    from cmr_demo.files import CheckpointError
    try:
        path = service.bundle.image_path(row)
        root, media = page_root(), service.catalog.media_url(row) if url else None
        return root + media if root is not None and media is not None else str(path)
    except CheckpointError as err:
        if (service.name, row) not in _reported:
            _reported.add((service.name, row))
            log.warning("%s: shown as a placeholder", err)
        return placeholder_picture()


_reported: set[tuple[str, int]] = set()
