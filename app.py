"""CLIP4CMR demo: the Space's app file. It loads the bundles, builds the page from `cmr_demo.ui` and serves it with
the JSON API and the upload limits of `cmr_demo.serve.webserver`.

    python app.py [--bundle assets] [--bundle OTHER ...] [--host 127.0.0.1] [--port 7860]

Several bundles are served by one process: a picker in the header switches between them, every endpoint takes an
optional `bundle` (a name from `/bundles`; default the first). `demo` is built at import, so `gradio app.py`
reload mode works for development; `python app.py` hosts it (with the limits and the JSON API).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# gradio's upload and cache folder, private to this app (the sweeper below deletes old files in it)
os.environ.setdefault("GRADIO_TEMP_DIR", os.path.join(tempfile.gettempdir(), "cmr-demo-gradio"))

from cmr_demo.serve.inputs import MAX_IMAGE_BYTES  # noqa: E402
from cmr_demo.serve.served import NoBundle, load_services  # noqa: E402
from cmr_demo.serve.upload_budget import UploadBudget  # noqa: E402
from cmr_demo.serve.uploads import UploadGate, sweep  # noqa: E402
from cmr_demo.ui.browser import CSS  # noqa: E402
from cmr_demo.ui.context import Context  # noqa: E402
from cmr_demo.ui.gradio_adapter import Streams, file_sets, limit_sessions, uploaded_files  # noqa: E402
from cmr_demo.ui.page import build_demo  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_BUNDLES = HERE / "assets"  # every bundle in it: the default world and the Wikipedia benchmark
# gradio keeps every session's component values (a map's figure is ~400 kB, a compare's JSON ...) until this many
# newer sessions exist, and each raw API call is a session of its own: with gradio's default (10,000) the soak's RSS
# grew by 1.9 GB in 5 minutes (bench/soak.py). A page evicted this way answers "run the search again" on its next
# result click; programs should use gradio_client (one session) or the JSON API.
SESSIONS = 256
SWEEP = (600, 1800)  # every 10 min, files in gradio's folder older than 30 min go (uploads never searched with)
STUDY_FIGURES = sorted((HERE / "bench" / "results" / "study").glob("*/*.png"))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="CLIP4CMR demo app")
    p.add_argument("--bundle", action="append", default=None, metavar="FOLDER|hf:ORG/NAME[@REV]",
                   help="a bundle folder (python -m cmr_demo.bundle build ...), a folder of bundles, or a bundle on the "
                        "Hugging Face Hub; repeatable, the first is the default. Default: $CMR_BUNDLES (specs separated "
                        "by ','; a Space sets it in its settings), else $CMR_BUNDLE (folders separated by ':'), else "
                        "every bundle in assets/")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = p.parse_args(argv)
    specs = [f.strip() for f in os.environ.get("CMR_BUNDLES", "").split(",") if f.strip()]
    folders = [f for f in os.environ.get("CMR_BUNDLE", "").split(os.pathsep) if f]
    args.bundle = args.bundle or specs or folders or [str(DEFAULT_BUNDLES)]
    return args


ARGS = parse_args(sys.argv[1:] if __name__ == "__main__" else [])
try:
    CTX = Context(load_services(ARGS.bundle))
except NoBundle as err:
    raise SystemExit(f"error: {err}") from None
demo, PAGE = build_demo(CTX, STUDY_FIGURES)
limit_sessions(demo, SESSIONS)
# query pictures: only files this app received (uploads, its own examples) are opened (cmr_demo.serve.uploads)
EXAMPLE_FILES = PAGE.search.example_files()  # {path: "example picture (gallery item ...)"}
GATE = UploadGate(PAGE.search.image_in.GRADIO_CACHE, lambda: uploaded_files(demo), lambda: EXAMPLE_FILES,
                  registries=lambda: file_sets(demo))
CTX.gate = GATE
# a file a client names is opened only when this app received it (an upload, also one already read and deleted: a
# page sends it again) or wrote it (examples, result galleries), by exact path
demo.made_here = lambda path: any(path in files for files in file_sets(demo)) or GATE.remembers(path)


def launch_options() -> dict:
    """What gradio is served with: only the gallery images as files, no tracebacks to clients, the page's CSS."""
    return {"allowed_paths": [str(Path(s.bundle.folder).resolve() / "gallery" / "images") for s in CTX.services.values()],
            "show_error": False, "css": CSS}


def kept_files() -> set[str]:
    """Files the page shows from gradio's folder for as long as the app runs: examples, the header's pictures."""
    return set(EXAMPLE_FILES).union(*(getattr(b, "keep_in_cache", set()) for b in demo.blocks.values()))


def make_app():
    """The FastAPI app serving the UI (cmr_demo.serve.webserver: upload limit, /media, gradio mounted at '/')."""
    from cmr_demo.serve.map_colours import warm_in_background
    from cmr_demo.serve.host import every, trim_memory_every
    from cmr_demo.serve.webserver import build_app
    trim_memory_every(10.0)
    warm_in_background(CTX.services)  # the maps' AP colourings, ready before anyone asks
    # not gradio's delete_cache: it skips files outside its sets (parts of interrupted uploads) and iterates the
    # sets while requests change them
    every(SWEEP[0], lambda: sweep(GATE.folder, SWEEP[1], kept_files, GATE.evicted), "upload-sweeper")
    # disk quotas for gradio's folder, uploads in flight included: a client's share, its network's, the folder's
    budget = UploadBudget(GATE.folder, keep=kept_files, forget=GATE.evicted)
    return build_app(demo, lambda: CTX.services, MAX_IMAGE_BYTES,
                     lambda size, client, to_disk: budget.admit(client, size, to_disk), lambda: Streams(demo),
                     **launch_options())


if __name__ == "__main__":
    from cmr_demo.serve.host import serve
    logging.basicConfig(level=logging.INFO)
    print(f"* serving {', '.join(CTX.names)} at http://{ARGS.host}:{ARGS.port}/", flush=True)
    serve(make_app(), ARGS.host, ARGS.port)
