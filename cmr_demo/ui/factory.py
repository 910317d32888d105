"""The app in one pass: bundles -> services -> the upload store -> the Context -> the page -> the ASGI app.

    demo, app = create(["assets"])      # what app.py does; `app` is served by cmr_demo.serve.host.serve

Why one pass: the page's handlers need the upload store (to read a client's picture) and the store needs gradio's
sets of the files the page hands out. The store is made first over a registry (gradio_adapter.GradioFiles) that
the Blocks fills in when it is made, so every object is complete when it is constructed: nothing is patched in
afterwards. Work that must not run at import (threads: the sweeper, memory trimming, the maps' warm-up) runs in the
ASGI app's lifespan, when a server starts it.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path


from cmr_demo.serve.host import trim_memory_every
from cmr_demo.serve.inputs import MAX_IMAGE_BYTES
from cmr_demo.serve.warm import wait_for_backbones, warm_in_background
from cmr_demo.serve.served import load_services
from cmr_demo.serve.upload_store import UploadStore
from cmr_demo.serve.webserver import build_app
from cmr_demo.ui.browser import CSS
from cmr_demo.ui.compare_tab import warm_figures
from cmr_demo.ui.context import Context
from cmr_demo.ui.gradio_adapter import GradioFiles, GradioRoutes, cache_folder
from cmr_demo.ui.page import SESSIONS, build_demo


def create(bundles: Sequence[str], study_figures: Sequence[Path] = (), sessions: int = SESSIONS):
    """(demo, app) serving `bundles` (folders, folders of bundles, `hf:ORG/NAME[@REV]`; the first is the default):
    `demo` the gradio Blocks, `app` the FastAPI app around it (limits, /media, the JSON API, gradio at '/').
    Raises cmr_demo.serve.served.NoBundle with the reason when a bundle cannot be served."""
    services = load_services(list(bundles))
    files = GradioFiles()
    uploads = UploadStore(cache_folder(), files)
    ctx = Context(services, uploads=uploads)
    demo, page = build_demo(ctx, list(study_figures), files=files, sessions=sessions)
    uploads.add_examples(page.search.example_files())
    app = build_app(demo, lambda: ctx.services, MAX_IMAGE_BYTES, GradioRoutes(demo), uploads.admit,
                    lifespan=background(ctx, uploads), **launch_options(ctx))
    app.state.bundles = list(ctx.names)  # the served bundles' names, the default first
    return demo, app


def launch_options(ctx: Context) -> dict:
    """What gradio is served with: only the gallery images as files, no tracebacks to clients, the page's CSS."""
    return {"allowed_paths": [str(Path(s.bundle.folder).resolve() / "gallery" / "images")
                              for s in ctx.services.values()],
            "show_error": False, "css": CSS}


def background(ctx: Context, uploads: UploadStore):
    """The ASGI lifespan that, when a server starts it, waits for the bundles' backbones (the server answers only
    then), then starts the app's housekeeping: memory handed back to the OS every 10 s, the gallery pictures checked
    and the maps' AP colourings and Compare's figures made before anyone asks (cmr_demo.serve.warm), the upload
    folder swept."""
    @contextlib.asynccontextmanager
    async def lifespan(app):
        await asyncio.to_thread(wait_for_backbones, ctx.services)  # "ready": a text is encoded at once
        trim_memory_every(10.0)
        warm_in_background(ctx.services)
        warm_figures(ctx.services)
        uploads.start()
        yield
    return lifespan



