"""CLIP4CMR demo: the Space's app file. It reads the command line and builds the app with
`cmr_demo.ui.factory.create` (bundles, upload store, page, JSON API, in one pass).

    python app.py [--bundle assets] [--bundle OTHER ...] [--host 127.0.0.1] [--port 7860]

Several bundles are served by one process: a picker in the header switches between them, every endpoint takes an
optional `bundle` (a name from `/bundles`; default the first). `demo` is built at import, so `gradio app.py`
reload mode works for development; `python app.py` hosts `app` (with the limits and the JSON API).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# gradio's upload and cache folder, private to this app (the upload store's sweep deletes old files in it)
os.environ.setdefault("GRADIO_TEMP_DIR", os.path.join(tempfile.gettempdir(), "cmr-demo-gradio"))

# imported after the environment is set: gradio reads GRADIO_TEMP_DIR when it is imported
from cmr_demo.serve.served import NoBundle
from cmr_demo.ui.factory import create

HERE = Path(__file__).resolve().parent
DEFAULT_BUNDLES = HERE / "assets"  # every bundle in it: the default world and the Wikipedia benchmark
STUDY_FIGURES = sorted((HERE / "bench" / "results" / "study").glob("*/*.png"))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="CLIP4CMR demo app")
    p.add_argument("--bundle", action="append", default=None, metavar="FOLDER|hf:ORG/NAME[@REV]",
                   help="a bundle folder (python -m cmr_demo.bundle build ...), a folder of bundles, or a bundle on "
                        "the "
                        "Hugging Face Hub; repeatable, the first is the default. Default: $CMR_BUNDLES (specs "
                        "separated "
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
    demo, app = create(ARGS.bundle, STUDY_FIGURES)
except NoBundle as err:
    raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    from cmr_demo.serve.host import serve
    logging.basicConfig(level=logging.INFO)
    print(f"* serving {', '.join(app.state.bundles)} at http://{ARGS.host}:{ARGS.port}/", flush=True)
    serve(app, ARGS.host, ARGS.port)
