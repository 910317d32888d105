"""Bundles through the Hugging Face Hub, offline: the download side against a Hub cache laid out as huggingface_hub
lays it (refs/, snapshots/REV/ linking into blobs/), built here; the push side through --dry-run and through
huggingface_hub's own commit-operation objects (no Hub is reachable from the tests)."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cmr_demo.bundle import hub

ROOT = Path(__file__).resolve().parents[1]
REVISION = "0123456789abcdef0123456789abcdef01234567"


def lay_out_cache(bundle: Path, hf_home: Path, repo: str = "someone/shapes-bundle") -> Path:
    """`bundle` as huggingface_hub caches a downloaded repository: blobs named by their etag (git sha1 of a small
    file, sha256 of a large one), the snapshot's files relative links to them, refs/main naming the commit."""
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / REVISION
    (root / "blobs").mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(REVISION)
    for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
        data = path.read_bytes()
        etag = hashlib.sha256(data).hexdigest() if len(data) > 10_000 else \
            hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        (root / "blobs" / etag).write_bytes(data)
        link = snapshot / path.relative_to(bundle)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(root / "blobs" / etag, link.parent))
    return root


@pytest.fixture
def hub_cache(small_bundle, tmp_path, monkeypatch):
    """A Hub cache holding the session's small bundle as someone/shapes-bundle, in use for this test."""
    from huggingface_hub import constants
    home = tmp_path / "hf"
    root = lay_out_cache(small_bundle, home)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("CMR_CACHE_DIR", str(tmp_path / "cmr" / "features"))
    return home, root


def test_a_hub_bundle_loads_from_the_cache_offline_and_is_named_after_its_repository(hub_cache, small_bundle):
    import cmr_demo
    service = cmr_demo.load("hf:someone/shapes-bundle")
    assert service.name == "shapes-bundle" and service.size == len(cmr_demo.load(small_bundle).bundle.items)
    assert not any(p.is_symlink() for p in Path(service.bundle.folder).rglob("*"))  # nothing links out of it
    again = cmr_demo.load(f"hf:someone/shapes-bundle@{REVISION}")
    assert again.name == "shapes-bundle"
    item = service.bundle.items[0]["id"]
    assert service.search(service.item_query(item), service.best, 3).hits


def test_missing_repositories_revisions_and_bad_names_are_one_line_and_fast(hub_cache):
    start = time.perf_counter()
    with pytest.raises(hub.HubError, match="someone/nothing-here.*not in the Hugging Face cache.*HF_HUB_OFFLINE"):
        hub.fetch("hf:someone/nothing-here")
    with pytest.raises(hub.HubError, match="someone/shapes-bundle@v9"):
        hub.fetch("hf:someone/shapes-bundle@v9")
    assert time.perf_counter() - start < 30
    for bad in ("hf:", "hf:noslash", "hf:a/b/c", "hf:../x/y", "hf:a/b@../main"):
        with pytest.raises(hub.HubError, match="hf:ORG/NAME|revision"):
            hub.parse(bad)


def test_one_changed_byte_in_the_cache_is_refused(hub_cache):
    import cmr_demo
    from cmr_demo.files import CheckpointError
    _, root = hub_cache
    manifest = json.loads((root / "snapshots" / REVISION / "manifest.json").read_text())
    rel = next(r for r in manifest["files"] if r.endswith("heads.safetensors"))
    blob = (root / "snapshots" / REVISION / rel).resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        cmr_demo.load("hf:someone/shapes-bundle")
    meta = (root / "snapshots" / REVISION / "manifest.json").resolve()  # the manifest: checked against its blob name
    meta.write_bytes(meta.read_bytes().replace(b'"format"', b'"format" ', 1))
    with pytest.raises(hub.HubError, match="manifest.json in the cache"):
        hub.fetch("hf:someone/shapes-bundle")


def test_push_dry_run_lists_every_file_with_the_card(small_bundle, capsys):
    from cmr_demo.bundle.command import main
    assert main(["push", str(small_bundle), "--repo", "someone/shapes-bundle", "--dry-run"]) == 0
    out = capsys.readouterr().out
    manifest = json.loads((small_bundle / "manifest.json").read_text())
    for rel in [*manifest["files"], "manifest.json"]:
        assert rel in out
    assert "README.md" in out and "nothing uploaded" in out
    card = out.split("nothing uploaded)", 1)[1]
    front = card.split("---")[1]
    import yaml
    meta = yaml.safe_load(front)
    assert meta["license"] and meta["library_name"] == "cmr-demo" and "cross-modal-retrieval" in meta["tags"]
    results = meta["model-index"][0]["results"]
    pcl = next(r for r in results if r["task"]["name"].endswith("objective pcl"))
    values = {m["name"]: m["value"] for m in pcl["metrics"]}
    assert values["mAP@all average (pcl)"] == pytest.approx(manifest["objectives"]["pcl"]["avg_map"], abs=1e-4)
    assert pcl["dataset"]["split"] == "test"


def test_push_commits_every_file_as_the_manifest_hashes_it(small_bundle):
    class Recorder:
        def __init__(self):
            self.calls = []

        def create_repo(self, repo, **kw):
            self.calls.append(("repo", repo, kw))

        def create_branch(self, repo, **kw):
            self.calls.append(("branch", repo, kw))

        def create_commit(self, repo, operations, **kw):
            self.calls.append(("commit", repo, kw))
            self.operations = operations
    api = Recorder()
    hub.push(small_bundle, "someone/shapes-bundle", private=True, revision="v1", api=api)
    assert [c[0] for c in api.calls] == ["repo", "branch", "commit"] and api.calls[0][2]["private"]
    assert api.calls[2][2]["revision"] == "v1"
    manifest = json.loads((small_bundle / "manifest.json").read_text())
    uploaded = {op.path_in_repo: op.upload_info.sha256.hex() for op in api.operations}
    assert {k: v for k, v in uploaded.items() if k != "manifest.json"} == manifest["files"]
    assert "manifest.json" in uploaded and "README.md" in uploaded


def test_push_refuses_a_bundle_that_does_not_verify(small_bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(small_bundle, copy)
    (copy / "README.md").write_text("edited")
    with pytest.raises(hub.HubError, match="does not verify"):
        hub.push(copy, "someone/x", dry_run=True)


@pytest.mark.slow
def test_the_app_serves_hub_bundles_named_by_cmr_bundles_or_bundle(small_bundle, tmp_path):
    from harness.app_server import start_app, stop_app
    import httpx
    home = tmp_path / "hf"
    lay_out_cache(small_bundle, home)
    env = {"HF_HOME": str(home), "CMR_CACHE_DIR": str(tmp_path / "cmr" / "features")}
    for bundles, extra in (([], {"CMR_BUNDLES": "hf:someone/shapes-bundle"}), (["hf:someone/shapes-bundle"], {})):
        proc, url, _ = start_app(bundles, tmp_path / "app.log", env={**env, **extra})
        try:
            listed = httpx.get(url + "api/v1/bundles", timeout=30).json()
            assert [b["name"] for b in listed] == ["shapes-bundle"]
            item = json.loads((small_bundle / "gallery" / "items.jsonl").read_text().splitlines()[0])["id"]
            r = httpx.post(url + "api/v1/search/item", json={"id": item, "k": 3}, timeout=30)
            assert r.status_code == 200 and len(r.json()["hits"]) == 3
        finally:
            stop_app(proc)
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "app.py", "--bundle", "hf:someone/missing"], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, **env, "HF_HUB_OFFLINE": "1"}, timeout=60)
    assert run.returncode != 0 and "someone/missing" in run.stderr and "Traceback" not in run.stderr
    assert time.perf_counter() - start < 30
