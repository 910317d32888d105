"""UploadGate alone: which client-named files are opened, and what happens to them after."""
import pytest

from cmr_demo.serve.inputs import InputError
import os
import time

from cmr_demo.serve.uploads import NOT_UPLOADED, UploadGate, sweep


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "uploads" / "a").mkdir(parents=True)
    return tmp_path / "uploads"


def gate(folder, uploaded, examples=(), **kw):
    return UploadGate(folder, lambda: uploaded, lambda: frozenset(examples), **kw)


def test_only_files_the_app_received_are_read(folder, tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"secret")
    planted = folder / "a" / "planted.png"
    planted.write_bytes(b"planted")
    link = folder / "a" / "link.png"
    link.symlink_to(outside)
    g = gate(folder, {str(link), str(folder / "a" / ".." / ".." / "secret.png")})
    for path in (str(outside), str(planted), "secret.png"):  # not received: refused by name, never opened
        with pytest.raises(InputError, match="never opened"):
            g.read({"path": path})
    for path in (str(link), str(folder / "a" / ".." / ".." / "secret.png")):  # received names that leave the folder
        with pytest.raises(InputError, match="never opened"):
            g.read({"path": path})
    assert outside.read_bytes() == b"secret" and planted.exists()
    for bad in (None, 5, {"path": 5}, {"path": ""}, {"path": "a\x00b"}, ["x"]):
        with pytest.raises(InputError):
            g.read(bad)


def test_an_upload_is_deleted_once_read_and_kept_in_memory_for_repeats(folder):
    path = folder / "a" / "q.png"
    path.write_bytes(b"x" * 100)
    uploaded = {str(path)}
    g = gate(folder, uploaded, keep_bytes=150)
    assert g.read({"path": str(path)}) == b"x" * 100
    assert not path.exists() and str(path) not in uploaded
    assert path.parent.is_dir()  # gradio may be storing the same picture there right now (UploadGate._delete)
    assert g.read(str(path)) == b"x" * 100  # the page sends the same file again
    other = folder / "b.png"
    other.write_bytes(b"y" * 100)
    uploaded.add(str(other))
    g.read({"path": str(other)})  # 200 bytes > 150: the first one leaves the memory
    with pytest.raises(InputError, match="no longer on the server"):
        g.read({"path": str(path)})


def test_examples_are_read_but_never_deleted_and_size_is_capped(folder):
    example = folder / "a" / "example.png"
    example.write_bytes(b"e" * 10)
    g = gate(folder, set(), examples=[str(example)], keep_bytes=0)
    assert g.read({"path": str(example)}) == b"e" * 10 and example.exists()
    big = folder / "big.png"
    big.write_bytes(b"b" * 2000)
    with pytest.raises(InputError, match="more than the"):
        gate(folder, {str(big)}, max_bytes=1000).read({"path": str(big)})
    assert NOT_UPLOADED.endswith("upload the picture instead")


def test_sweep_deletes_old_files_except_kept_ones_and_empty_folders(folder):
    old, kept, fresh = folder / "a" / "old.png", folder / "keep" / "example.png", folder / "b" / "fresh.png"
    for path in (old, kept, fresh):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
    registry = {str(old), str(fresh)}
    time.sleep(1.1)
    fresh.write_bytes(b"y")
    os.utime(fresh)
    assert sweep(folder, 1.0, lambda: {str(kept)}, lambda: [registry]) == 1
    assert not old.exists() and not old.parent.exists() and kept.exists() and fresh.exists()
    assert registry == {str(fresh)}


def test_make_room_deletes_the_oldest_unkept_files_until_an_upload_fits(tmp_path):
    from cmr_demo.serve.uploads import make_room
    files = []
    for n in range(6):
        path = tmp_path / f"d{n}" / f"upload{n}.png"
        path.parent.mkdir()
        path.write_bytes(bytes(1000))
        os.utime(path, (time.time() - 100 + n, time.time() - 100 + n))
        files.append(str(path))
        time.sleep(0.01)  # ctime order = creation order
    registry = set(files)
    freed = make_room(tmp_path, incoming=2500, quota=5000, keep=lambda: {files[0]}, registries=lambda: [registry])
    left = sorted(str(p) for p in tmp_path.rglob("*.png"))
    # 6,000 bytes + 2,500 incoming must fit in 5,000: 4,000 go, the oldest first; the kept one stays
    assert freed == 4000 and left == sorted([files[0], files[5]])
    assert registry == set(left)
    assert make_room(tmp_path, incoming=100, quota=5000) == 0  # it fits: nothing goes


def test_a_client_over_its_share_loses_its_own_oldest_uploads(tmp_path):
    from cmr_demo.serve.uploads import UploadShares
    registry = set()
    shares = UploadShares(share=2500, keep=lambda: set(), registries=lambda: [registry])

    def upload(client: str, n: int) -> str:
        shares.before(client, 1000)
        path = tmp_path / f"{client}-{n}.png"
        path.write_bytes(bytes(1000))
        shares.received(client, [str(path)])
        registry.add(str(path))
        return str(path)
    other = upload("10.0.0.2", 0)
    flood = [upload("10.0.0.1", n) for n in range(6)]
    assert os.path.exists(other)  # another visitor's upload is not touched ...
    assert [os.path.exists(p) for p in flood] == [False] * 4 + [True] * 2  # ... the flooder's oldest go first
    assert shares.held("10.0.0.1") == 2000 and shares.held("10.0.0.2") == 1000
    assert registry == {other, *flood[4:]}
    shares.received("x", ["/no/such/file"])  # a path that is gone by then is ignored
    assert shares.held("x") == 0


def test_uploads_never_searched_stay_within_the_quota_and_the_clients_share(small_bundle, tmp_path, monkeypatch):
    """Distinct uploads nobody searches with: the app's upload folder never grows past its quota (here 12 MB), and
    one client's uploads past its share (here 7 MB) push out its own, not another visitor's."""
    import httpx

    from app_server import start_app, stop_app
    monkeypatch.setenv("CMR_UPLOAD_QUOTA_MB", "12")
    monkeypatch.setenv("CMR_UPLOAD_SHARE_MB", "7")
    monkeypatch.setenv("CMR_PROXY_HOPS", "1")
    uploads = tmp_path / "gradio"
    proc, url, _ = start_app(small_bundle, tmp_path / "app.log", temp_dir=uploads)

    def upload(client: str, n: int) -> str:
        body = os.urandom(3 * 2 ** 20)  # 3 MB each, all distinct
        r = httpx.post(f"{url}gradio_api/upload", files={"files": (f"p{n}.png", body, "image/png")}, timeout=60,
                       headers={"x-forwarded-for": client})
        assert r.status_code == 200, r.text
        return r.json()[0]
    try:
        other = upload("10.0.0.2", 0)
        biggest = 0
        for n in range(10):
            upload("10.0.0.1", n + 1)
            biggest = max(biggest, sum(p.stat().st_size for p in uploads.rglob("*") if p.is_file()))
        assert biggest <= 12 * 2 ** 20, biggest / 2 ** 20
        assert os.path.exists(other)  # the flooder stayed within its own share
        assert biggest <= 10 * 2 ** 20  # 7 MB share: two of its 3 MB uploads, plus the other visitor's
    finally:
        stop_app(proc)
