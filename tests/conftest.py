"""Test-wide settings: offline, CPU, a private feature cache; nothing reaches a network or ~/.cache."""
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def _no_empty_download_folders():
    """gradio_client downloads each output file through a fresh folder $TMPDIR/<40 hex digits>/ and moves the
    file on, leaving the folder behind (gradio_client 2.x, Client._download_file): hundreds per test session.
    The empty ones this session made are removed at its end; nothing else is touched."""
    import re
    import tempfile
    root = Path(tempfile.gettempdir())
    named = re.compile(r"[0-9a-f]{40}")

    def leftovers() -> set[Path]:
        return {p for p in root.iterdir() if named.fullmatch(p.name) and p.is_dir()}
    before = leftovers()
    yield
    for folder in leftovers() - before:
        try:
            folder.rmdir()  # only when empty
        except OSError:
            pass


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CMR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "feature-cache"))


def quick_job(data: str, objectives: str = "pcl", backbone: str | None = None, epochs: int = 3, embed_dim: int = 64,
              hidden_dim: int = 32, **data_options):
    """A small, quiet training job (3 epochs, narrow heads): what the test bundles are built with."""
    from cmr_demo.train.heads import HeadConfig
    from cmr_demo.train.spec import ObjectiveSpec
    from cmr_demo.train.stage import DataConfig, FeatureConfig, TrainJob
    from cmr_demo.train.fit import TrainConfig
    return TrainJob(DataConfig(data, **data_options), ObjectiveSpec.parse(objectives), TrainConfig(epochs=epochs),
                    HeadConfig(hidden_dim=hidden_dim, embed_dim=embed_dim), FeatureConfig(backbone), quiet=True)


@pytest.fixture(scope="session")
def vit_b32_weights(tmp_path_factory):
    """ViT-B-32 (the real architecture) with its seeded random weights, saved once per session as a
    .safetensors file: the tests that need it load it through the file path, with no download."""
    from safetensors.torch import save_file

    from cmr_demo.backbone.clip import load_backbone
    path = tmp_path_factory.mktemp("vit") / "vitb32.safetensors"
    save_file({k: v.contiguous() for k, v in load_backbone("ViT-B-32:random").model.state_dict().items()}, path)
    return path


@pytest.fixture(scope="session")
def small_bundle(tmp_path_factory):
    """A real bundle on a very small world (200 items, 40 in the gallery), built once per test session."""
    from cmr_demo.bundle.build import build
    out = tmp_path_factory.mktemp("bundle") / "b"
    build(quick_job("shapes:200", "pcl,ce,pcl+0.5*tl", "nano-clip:random"), out)
    return out


def write_clip4cmr_pickles(folder: Path, spec: str = "synthetic:400") -> Path:
    """The official CLIP4CMR layout (clip_train.pkl / clip_test.pkl: image, text, one-hot label, ids as numpy
    arrays) holding a synthetic dataset's features, so tests meet the reader users meet."""
    import pickle

    import numpy as np

    from cmr_demo.data import load_data
    data = load_data(spec, val_fraction=0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, split in (("train", data.train), ("test", data.test)):
        part = {"image": split.image_features, "text": split.text_features, "ids": np.array(split.ids),
                "label": np.eye(len(split.class_names), dtype=np.float32)[split.labels]}
        (folder / f"clip_{name}.pkl").write_bytes(pickle.dumps(part, protocol=4))
    return folder


@pytest.fixture(scope="session")
def features_bundle(tmp_path_factory):
    """A features-only bundle (no backbone, no pictures, no texts) from features in the official CLIP4CMR pickle
    layout (synthetic:400's, 64-d image / 48-d text), built once per session."""
    from cmr_demo.bundle.build import build
    root = tmp_path_factory.mktemp("features-bundle")
    pickles = write_clip4cmr_pickles(root / "pickles")
    out = root / "feats"
    build(quick_job(f"clip4cmr:{pickles}", "pcl,ce"), out)
    return out


@pytest.fixture(scope="session")
def app_process(small_bundle, features_bundle, tmp_path_factory):
    """`python app.py --bundle <small bundle> --bundle <features-only bundle>` running in a subprocess for the
    whole session: (url, log path, gradio folder). The small bundle is the default."""
    from harness.app_server import start_app, stop_app
    folder = tmp_path_factory.mktemp("app")
    log_path, temp_dir = folder / "app.log", folder / "gradio-cache"
    # CMR_APP_BUNDLE serves other bundles (e.g. assets for the README's screenshots)
    bundles = (
        [Path(os.environ["CMR_APP_BUNDLE"])] if os.environ.get("CMR_APP_BUNDLE") else [small_bundle, features_bundle]
    )
    proc, url, _ = start_app(bundles, log_path, temp_dir=temp_dir)
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


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """Where the browser tests save their screenshots: $CMR_SCREENSHOTS (docs/screenshots are made this way), else a
    temp dir."""
    folder = Path(os.environ.get("CMR_SCREENSHOTS") or tmp_path_factory.mktemp("screens"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
