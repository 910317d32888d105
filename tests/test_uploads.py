"""UploadGate alone: which client-named files are opened, and what happens to them after."""
import pytest

from cmr_demo.serve.inputs import InputError
import os
import time

from cmr_demo.serve.messages import NOT_UPLOADED
from cmr_demo.serve.uploads import UploadGate, sweep


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
    forgotten = []
    time.sleep(1.1)
    fresh.write_bytes(b"y")
    os.utime(fresh)
    assert sweep(folder, 1.0, lambda: {str(kept)}, forgotten.append) == 1
    assert not old.exists() and not old.parent.exists() and kept.exists() and fresh.exists()
    assert forgotten == [{str(old)}]


def test_an_upload_deleted_to_make_room_asks_to_be_uploaded_again(folder):
    """A search with an upload the budget or the sweeper deleted says so ("upload it again"), not that the path was
    never uploaded (the server-path message a visitor got when another's upload made room)."""
    path = folder / "a" / "p.png"
    path.write_bytes(b"p")
    uploaded = {str(path)}
    g = UploadGate(folder, lambda: uploaded, registries=lambda: [uploaded])
    path.unlink()
    g.evicted({str(path)})
    assert uploaded == set()
    with pytest.raises(InputError, match="no longer on the server.*upload it again"):
        g.read({"path": str(path)})


def budget(tmp_path, **kw) -> tuple:
    from cmr_demo.serve.upload_budget import UploadBudget
    forgotten = set()
    return UploadBudget(str(tmp_path), forget=forgotten.update, **kw), forgotten


def stored(tmp_path, name: str, size: int = 1000) -> str:
    path = tmp_path / name
    path.write_bytes(bytes(size))
    time.sleep(0.01)  # ctime order = creation order
    return str(path)


def test_a_client_over_its_share_loses_its_own_oldest_uploads(tmp_path):
    b, forgotten = budget(tmp_path, share=2500, network_share=10 ** 9, quota=10 ** 9)

    def upload(client: str, n: int) -> str:
        finish = b.admit(client, 1000)
        path = stored(tmp_path, f"{client}-{n}.png")
        finish([path])
        return path
    other = upload("10.0.1.2", 0)
    flood = [upload("10.0.0.1", n) for n in range(6)]
    assert os.path.exists(other)  # another visitor's upload is not touched ...
    assert [os.path.exists(p) for p in flood] == [False] * 4 + [True] * 2  # ... the flooder's oldest go first
    assert b.held("10.0.0.1") == 2000 and b.held("10.0.1.2") == 1000
    assert forgotten == set(flood[:4])  # ... and their searches will say "upload it again"
    b.admit("x", 10)(["/no/such/file"])  # a path that is gone by then is ignored
    assert b.held("x") == 0


def test_uploads_still_arriving_count_against_the_share_even_when_sent_at_once(tmp_path):
    """40 uploads of 19 MB sent at once from one address were all admitted (761 MB) when only files on disk
    counted: each now reserves its size at the door, under one lock, until its route answers."""
    from concurrent.futures import ThreadPoolExecutor

    from cmr_demo.serve.upload_budget import UploadRefused
    b, _ = budget(tmp_path, share=60 * 2 ** 20, network_share=120 * 2 ** 20, quota=400 * 2 ** 20)

    def try_one(_):
        try:
            return b.admit("10.0.0.1", 19 * 2 ** 20)
        except UploadRefused as refused:
            return refused
    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(try_one, range(30)))
    admitted = [a for a in answers if callable(a)]
    refused = [a for a in answers if isinstance(a, UploadRefused)]
    assert len(admitted) == 3 and len(refused) == 27 and {r.status for r in refused} == {429}
    assert "at most 60 MB" in refused[0].message and b.held("10.0.0.1") == 57 * 2 ** 20
    for finish in admitted:  # answered without storing (a failed upload): the reservation is released
        finish([])
    assert b.held("10.0.0.1") == 0 and callable(try_one(0))


def test_a_picture_read_into_memory_counts_against_the_share_not_the_folders_quota(tmp_path):
    """The JSON API's image routes read a picture into memory: a full upload folder does not refuse them, but a
    client's pictures still arriving count against its share."""
    from cmr_demo.serve.upload_budget import UploadRefused
    b, _ = budget(tmp_path, share=2500, network_share=10 ** 9, quota=100)
    stored(tmp_path, "fresh.png")  # the folder is over its quota with a fresh upload nobody may delete
    with pytest.raises(UploadRefused, match="full right now"):
        b.admit("10.0.0.1", 1000)
    finish = b.admit("10.0.0.1", 2000, to_disk=False)
    with pytest.raises(UploadRefused, match="you already have"):
        b.admit("10.0.0.1", 1000, to_disk=False)
    finish([])
    b.admit("10.0.0.1", 1000, to_disk=False)


def test_one_network_shares_an_allowance_however_many_addresses_it_uses(tmp_path):
    from cmr_demo.serve.upload_budget import UploadRefused
    b, _ = budget(tmp_path, share=1500, network_share=2500, quota=10 ** 9)
    b.admit("10.0.0.1", 1000)
    b.admit("10.0.0.2", 1000)
    with pytest.raises(UploadRefused, match=r"your network \(10.0.0.0/24\)"):
        b.admit("10.0.0.3", 1000)
    b.admit("10.0.1.1", 1000)  # another network is not affected
    b.admit("2001:db8::1", 1000)
    b.admit("2001:db8::2", 1000)
    with pytest.raises(UploadRefused, match="2001:db8::/64"):
        b.admit("2001:db8::3", 1000)


def test_the_folders_quota_deletes_only_files_past_their_grace(tmp_path):
    """When the folder is full, files older than the grace period make room, oldest first; a visitor's fresh upload
    is never deleted for someone else: the newcomer is refused (503) instead."""
    from cmr_demo.serve.upload_budget import UploadRefused
    b, forgotten = budget(tmp_path, share=10 ** 9, network_share=10 ** 9, quota=5000, grace_s=1.0)
    old = [stored(tmp_path, f"old{n}.png") for n in range(3)]
    time.sleep(1.1)  # (ctime cannot be set: the old files are made old by waiting)
    fresh = [stored(tmp_path, f"fresh{n}.png") for n in range(2)]
    b.admit("10.0.0.8", 500)  # 5,000 on disk + 500 must fit 5,000: the oldest goes
    assert forgotten == {old[0]} and os.path.exists(old[1])
    b.admit("10.0.0.9", 2000)  # 4,000 + 500 arriving + 2,000: the two other old ones go, the fresh ones stay
    assert forgotten == set(old) and all(os.path.exists(p) for p in fresh)
    with pytest.raises(UploadRefused, match="full right now") as refused:
        b.admit("10.0.0.7", 2500)  # only fresh files and reservations left: nothing of theirs goes
    assert refused.value.status == 503 and all(os.path.exists(p) for p in fresh)


@pytest.mark.slow  # starts an app of its own
def test_uploads_never_searched_stay_within_the_quota_and_the_clients_share(small_bundle, tmp_path, monkeypatch):
    """Distinct uploads nobody searches with: the app's upload folder never grows past its quota (here 16 MB), one
    client's uploads past its share (here 7 MB) push out its own, not another visitor's, and 30 sent at once are not
    all admitted (uploads in flight count): the other visitor's earlier picture still searches."""
    import io
    import json
    from concurrent.futures import ThreadPoolExecutor

    import httpx
    from PIL import Image

    from harness.app_server import start_app, stop_app
    monkeypatch.setenv("CMR_UPLOAD_QUOTA_MB", "16")
    monkeypatch.setenv("CMR_UPLOAD_SHARE_MB", "7")
    monkeypatch.setenv("CMR_PROXY_HOPS", "1")
    monkeypatch.setenv("CMR_TRUSTED_PROXIES", "127.0.0.1/32")  # the test is the proxy: X-Forwarded-For names clients
    uploads = tmp_path / "gradio"
    proc, url, _ = start_app(small_bundle, tmp_path / "app.log", temp_dir=uploads)

    def upload(client: str, n: int, body: bytes | None = None) -> httpx.Response:
        body = body or os.urandom(3 * 2 ** 20)  # 3 MB each, all distinct
        return httpx.post(f"{url}gradio_api/upload", files={"files": (f"p{n}.png", body, "image/png")}, timeout=60,
                          headers={"x-forwarded-for": client})

    def folder_mb() -> float:
        return sum(p.stat().st_size for p in uploads.rglob("*") if p.is_file()) / 2 ** 20
    try:
        picture = io.BytesIO()
        Image.new("RGB", (64, 64), "red").save(picture, "PNG")
        other = upload("10.0.1.2", 0, picture.getvalue()).json()[0]
        biggest = 0.0
        for n in range(10):
            assert upload("10.0.0.1", n + 1).status_code == 200
            biggest = max(biggest, folder_mb())
        assert os.path.exists(other)  # the flooder stayed within its own share
        assert biggest <= 10  # 7 MB share: two of its 3 MB uploads, plus the other visitor's
        with ThreadPoolExecutor(30) as pool:  # 30 at once from a third client: its share holds them in flight too
            answers = list(pool.map(lambda n: upload("10.0.2.3", 100 + n), range(30)))
        codes = sorted(r.status_code for r in answers)
        assert set(codes) <= {200, 429}, codes  # (uploads that finish before others start make room for them)
        assert all("at most 7 MB" in r.json()["error"] for r in answers if r.status_code == 429)
        kept = [r.json()[0] for r in answers if r.status_code == 200 and os.path.exists(r.json()[0])]
        assert len(kept) <= 2, kept  # at most its 7 MB share is left
        assert folder_mb() <= 16
        event = httpx.post(f"{url}gradio_api/call/search_image", timeout=30, json={
            "data": [{"path": other, "meta": {"_type": "gradio.FileData"}}, "pcl", 3]}).json()["event_id"]
        stream = httpx.get(f"{url}gradio_api/call/search_image/{event}", timeout=60).text
        assert "event: complete" in stream, stream[:500]
        assert "no longer on the server" not in stream and json.dumps(other)[1:-1] not in stream.split("event:")[0]
    finally:
        stop_app(proc)
