"""Test-wide settings: offline, CPU, a private feature cache; nothing reaches a network or ~/.cache."""
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CMR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "feature-cache"))


SMALL_BUNDLE_TRAIN = ["--epochs", "3", "--quiet", "--embed-dim", "64", "--hidden-dim", "32"]


@pytest.fixture(scope="session")
def small_bundle(tmp_path_factory):
    """A real bundle on a very small world (200 items, 40 in the gallery), built once per test session."""
    from cmr_demo.bundle import build
    out = tmp_path_factory.mktemp("bundle") / "b"
    build("nano-clip:random", "shapes:200", "pcl,ce,pcl+0.5*tl", out, train_args=SMALL_BUNDLE_TRAIN)
    return out


@pytest.fixture(scope="session")
def app_process(small_bundle, tmp_path_factory):
    """`python app.py --bundle <small bundle>` running in a subprocess for the whole session: (url, log path)."""
    from app_server import start_app, stop_app
    folder = tmp_path_factory.mktemp("app")
    log_path, temp_dir = folder / "app.log", folder / "gradio-cache"
    # CMR_APP_BUNDLE serves another bundle (e.g. assets/demo for the README's screenshots)
    proc, url, _ = start_app(Path(os.environ.get("CMR_APP_BUNDLE") or small_bundle), log_path, temp_dir=temp_dir)
    yield url, log_path, temp_dir
    stop_app(proc)


@pytest.fixture(scope="session")
def app_url(app_process):
    return app_process[0]


@pytest.fixture(scope="session")
def app_log(app_process):
    """The app's stdout + stderr (its logging and gradio's tracebacks), growing as requests come in."""
    return app_process[1]


@pytest.fixture(scope="session")
def app_cache(app_process):
    """The running app's own gradio upload/cache folder (GRADIO_TEMP_DIR)."""
    return app_process[2]


SERVER_FIXTURES = {"app_process", "app_url", "app_log", "app_cache"}


def pytest_collection_modifyitems(config, items):
    """Every test that needs the app running in a subprocess is `slow` (its start-up and requests are most of
    the suite's time); others carry the marker themselves. CI runs all; `pytest -m "not slow"` the rest."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
