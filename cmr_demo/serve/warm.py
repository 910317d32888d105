"""What the first visitor would otherwise wait for.

Before the app reports ready (`wait_for_backbones`, from the app's lifespan): every bundle's backbone loaded. It
loads in a thread from the moment the bundle is read (open_clip's import pulls torchvision and torch._dynamo, ~1.5 s
of a 2-core start); the app used to answer before it was there, and the first text search after "ready" waited
1.5-1.7 s for it (bench/clicks.py). Now "ready" means a text is encoded at once.

Then in a background thread once the app answers: the first query's one-off costs (the text encoder's first pass, the
class read of the best objective), every served gallery picture's hash checked (a picture is checked the first time
it is shown; cold on disk, a first 100-result page took most of a second), then every objective's per-point APs
(the maps' AP colourings and the disagreement tables; ~40 ms per objective and direction at 800 items). None of
these is needed to answer: a request that comes first computes its own part, as it would without this.
"""
from __future__ import annotations

import logging
import threading
import time

from cmr_demo.files import CheckpointError
from cmr_demo.serve.map_colours import point_aps

log = logging.getLogger(__name__)
WARM_MAX_ITEMS = 2_000  # galleries whose per-point APs are computed after start-up; larger ones on first use


BACKBONE_WAIT_S = 120.0  # a backbone still loading after this (a cold disk, a huge model) is waited for by requests


def wait_for_backbones(services: dict) -> None:
    """Until every served bundle's backbone has loaded (or failed: its error is told where it is used)."""
    deadline = time.monotonic() + BACKBONE_WAIT_S
    for service in list(services.values()):
        backbone = service.bundle.backbone
        if backbone is not None and hasattr(backbone, "wait"):
            if not backbone.wait(max(0.0, deadline - time.monotonic())):
                log.warning("bundle %s: its backbone is still loading; the first text or picture will wait for it",
                            service.name)


def first_query(service) -> None:
    """A text through the encoder and the best objective's class read: their one-off costs paid here."""
    if service.encodes:
        try:
            service.query_info(service.text_query("a picture"), service.best)
        except Exception:  # logged: a backbone that failed says so where it is used; nothing to warm
            log.debug("bundle %s: no first query to warm", service.name, exc_info=True)


def check_pictures(service) -> int:
    """Check every gallery picture's hash now (Bundle.image_path checks each once); how many failed (each is shown
    as a placeholder, and logged, when a page asks for it)."""
    failed = 0
    for row in range(service.size if service.bundle.has_pictures else 0):
        try:
            service.bundle.image_path(row)
        except CheckpointError:
            failed += 1
    return failed


def warm_in_background(services: dict) -> threading.Thread:
    """For every served bundle: the first query, then the pictures (the first search shows them), then the
    per-point APs, the best objectives first (the maps open on them)."""
    def run() -> None:
        # not niced: a low-priority thread holding the GIL would stall the request threads waiting for it; the work
        # is short steps with a pause between objectives
        for service in list(services.values()):
            first_query(service)
        for service in list(services.values()):
            check_pictures(service)
        for service in list(services.values()):
            if service.size <= WARM_MAX_ITEMS:
                for objective in [row["objective"] for row in service.leaderboard()]:
                    point_aps(service, objective)
                    time.sleep(0.02)
        log.info("pictures checked and per-point APs ready for the maps")
    thread = threading.Thread(target=run, name="warm-up", daemon=True)
    thread.start()
    return thread
