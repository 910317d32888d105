"""Safe to host in public, checked over raw HTTP against `python app.py` (no gradio_client in between).

What a hostile client tries: name server files as its query picture (every spelling: absolute, relative,
`..`, a link planted in the upload folder, a file put there without the upload route, with and without
gradio's "meta"); upload more than the limit (with and without Content-Length); fill the disk with
uploads; send values of the wrong type. Each gets the app's own message, nothing is read or stored that
should not be, and the log holds no traceback.
"""
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

httpx = pytest.importorskip("httpx")

NOT_UPLOADED = "a path on the server is never opened"
GENERIC = "has not enabled verbose error reporting"


def call(url: str, api: str, data: list) -> tuple[str, object]:
    """('complete', output data) or ('error', message) for one queued call of a named endpoint."""
    r = httpx.post(f"{url}gradio_api/call/{api}", json={"data": data}, timeout=30)
    r.raise_for_status()
    text = httpx.get(f"{url}gradio_api/call/{api}/{r.json()['event_id']}", timeout=60).text
    event = text.split("event: ")[-1]
    kind, _, payload = event.partition("\ndata: ")
    payload = json.loads(payload.strip()) if payload.strip() not in ("", "null") else None
    return (kind.strip(), payload["error"] if kind.strip() == "error" and isinstance(payload, dict) else payload)


def upload(url: str, data: bytes, name: str = "q.png") -> str:
    r = httpx.post(f"{url}gradio_api/upload", files={"files": (name, data, "image/png")}, timeout=60)
    r.raise_for_status()
    return r.json()[0]


def files_in(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in folder.rglob("*") if p.is_file()} if folder.exists() else {}


def noise_png(seed: int, side: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def meta(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def test_server_files_named_by_a_client_are_never_opened(app_url, app_cache, small_bundle, tmp_path):
    gallery_file = small_bundle / "gallery" / "images" / "00005.png"
    app_cache.mkdir(parents=True, exist_ok=True)
    planted = app_cache / "planted" / "00005.png"  # inside the upload folder, but not received by the app
    planted.parent.mkdir(exist_ok=True)
    planted.write_bytes(gallery_file.read_bytes())
    link = app_cache / "planted" / "link.png"
    link.symlink_to(gallery_file)
    uploaded = upload(app_url, gallery_file.read_bytes())
    sneaky = str(Path(uploaded).parent / ".." / "planted" / "00005.png")  # starts like an upload, leaves it
    paths = [str(gallery_file), os.path.relpath(gallery_file, Path(__file__).resolve().parents[1]), "/etc/passwd",
             str(planted), str(link), sneaky, str(tmp_path / "missing.png"), "app.py", ""]
    before = files_in(app_cache)
    for path in paths:
        for payload in (meta(path), {"path": path}):
            for api, args in (("search_image", [payload, "pcl", 3, "", False]), ("query_info_image", [payload, "pcl"])):
                kind, message = call(app_url, api, args)
                assert kind == "error" and NOT_UPLOADED in message, (api, payload, kind, message)
    assert files_in(app_cache) == before  # gradio copies a file into its cache when it reads one: none was read
    kind, out = call(app_url, "search_image", [meta(uploaded), "pcl", 3, "", False])  # a real upload still works
    assert kind == "complete" and len(out[1]["data"]) == 3


def test_uploads_over_the_limit_are_refused_before_they_are_stored(app_url, app_cache):
    from cmr_demo.serve.inputs import MAX_IMAGE_BYTES
    before = files_in(app_cache)
    big = b"\x89PNG\r\n\x1a\n" + bytes(MAX_IMAGE_BYTES + 1024)
    r = httpx.post(f"{app_url}gradio_api/upload", files={"files": ("big.png", big, "image/png")}, timeout=60)
    assert r.status_code == 413 and "larger than the 20 MB this app accepts" in r.json()["error"]

    def chunks():  # no Content-Length: refused before a byte is read (it could be any size)
        body = (b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
                b"Content-Type: image/png\r\n\r\n")
        yield body
        for _ in range(MAX_IMAGE_BYTES // 2 ** 20 + 2):
            yield bytes(2 ** 20)
        yield b"\r\n--b--\r\n"
    for route in ("gradio_api/upload", "api/v1/search/image"):
        r = httpx.post(f"{app_url}{route}", content=chunks(), timeout=60,
                       headers={"Content-Type": "multipart/form-data; boundary=b"})
        assert r.status_code == 411 and "Content-Length" in r.json()["error"], (route, r.text)
    assert not any(size > MAX_IMAGE_BYTES for size in files_in(app_cache).values())
    assert sum(files_in(app_cache).values()) <= sum(before.values()) + 2 ** 20  # nothing big kept


@pytest.mark.parametrize(
    "route", ["gradio_api/queue/join", "api/v1/search/text", "api/v1/compare", "gradio_api/run/predict"]
)
def test_a_huge_body_to_any_route_is_refused_before_it_is_read(app_url, app_log, route):
    """Not only uploads: a 200 MB JSON body (or 3 million list items) to gradio's event routes or the JSON API is
    refused from its Content-Length, in the app's words, and the error quotes none of it."""
    from cmr_demo.serve.webserver import BODY_MAX_BYTES
    start = app_log.stat().st_size
    import socket
    from urllib.parse import urlparse
    host = urlparse(app_url)
    with socket.create_connection((host.hostname, host.port), timeout=30) as sock:  # says 200 MB, sends 1 kB: an app
        sock.sendall(f"POST /{route} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"  # that read it all
                     f"Content-Length: {200 * 2 ** 20}\r\n\r\n".encode() + b'{"data": ["' + b"x" * 1000)  # would hang
        answer = b""
        while chunk := sock.recv(65536):  # the app answers and closes: read to the end (headers and body may
            answer += chunk               # arrive in separate packets)
        answer = answer.decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413") and "larger than the 1 MB" in answer, (route, answer[:300])
    many = b'{"text": "a", "objectives": [' + b",".join([b"1"] * 3_000_000) + b"]}"
    assert len(many) > BODY_MAX_BYTES
    start_s = time.perf_counter()
    r = httpx.post(f"{app_url}{route}", content=many, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413 and time.perf_counter() - start_s < 5 and len(r.content) < 500
    assert app_log.stat().st_size - start < 10_000  # nothing of the body echoed into the log


def test_a_server_file_nested_deep_in_any_argument_is_never_read(app_url, app_cache, small_bundle):
    target = meta(str(small_bundle / "gallery" / "images" / "00009.png"))
    nested = target
    for _ in range(40):  # deeper than any fixed walk would go
        nested = [nested]
    before = files_in(app_cache)
    for api, args in (
        ("search_text", [nested, "pcl", 5, "", False]),
        ("compare", ["a star", nested, 3, "", "", "image"]),
        ("disagreements", ["pcl", "ce", {"x": nested}]),
    ):
        kind, message = call(app_url, api, args)
        assert kind == "error" and NOT_UPLOADED in message, (api, message)
    assert files_in(app_cache) == before


def test_the_same_picture_uploaded_again_is_deleted_again(app_url, app_cache):
    data = noise_png(99, 96)
    for _ in range(3):  # same bytes and name: gradio puts it on the same path each time
        path = upload(app_url, data, "same.png")
        assert Path(path).exists()
        kind, _ = call(app_url, "search_image", [meta(path), "pcl", 3, "", False])
        assert kind == "complete" and not Path(path).exists()


def test_uploads_are_deleted_once_read_and_repeat_searches_still_work(app_url, app_cache, small_bundle):
    gallery_bytes = sum(p.stat().st_size for p in (small_bundle / "gallery").rglob("*") if p.is_file())
    for path in [upload(app_url, noise_png(0, 64))]:  # warm: result galleries copy gallery pictures once
        call(app_url, "search_text", ["a red star", "pcl", 40, "", False])
    start = sum(files_in(app_cache).values())
    paths = []
    for seed in range(12):
        path = upload(app_url, noise_png(seed + 1, 320))  # ~300 kB each, all distinct
        kind, out = call(app_url, "search_image", [meta(path), "pcl", 5, "", True])
        assert kind == "complete", out
        assert not Path(path).exists()  # deleted once read
        paths.append(path)
    kind, out = call(app_url, "search_image", [meta(paths[-1]), "ce", 4, "", False])  # the page sends it again
    assert kind == "complete" and len(out[1]["data"]) == 4
    grown = sum(files_in(app_cache).values()) - start
    assert grown <= gallery_bytes, (grown, gallery_bytes)


@pytest.mark.parametrize("api,args,words", [
    ("search_text", ["a red star", "pcl", "5", "", False], "k (number of results) must be a whole number"),
    ("search_text", ["a red star", "pcl", None, "", False], "got None"),
    ("search_text", ["a red star", ["pcl"], 5, "", False], "unknown objective"),
    ("search_text", [{"text": 1}, "pcl", 5, "", False], "the query must be text"),
    ("search_image", ["/etc/passwd", "pcl", 5, "", False], "an image is sent as an uploaded file"),
    ("search_image", [{"path": 5, "meta": {"_type": "gradio.FileData"}}, "pcl", 5, "", False],
     "an image is sent as an uploaded file"),
    ("search_image", [None, "pcl", 5, "", False], "no image was given"),
    ("compare", ["two hearts", "pcl", 3, "", "", "image"], "objectives must be a list"),
    ("search_item", [3, "image", "pcl", 5, False], "a gallery item id is text"),  # never read as a gallery row
    ("compare", ["", ["pcl"], 3, "", 3, "image"], "a gallery item id is text"),
    ("embedding_map", ["pcl", "a star", ["ce"], [], True, "ten", ""], "k (number of results)"),
    ("disagreements", ["pcl", "ce", 5], "unknown direction"),
])
def test_user_errors_get_the_apps_message_and_no_traceback(app_url, app_log, api, args, words):
    start = app_log.stat().st_size
    kind, message = call(app_url, api, args)
    assert kind == "error" and words in message and GENERIC not in message, message
    assert "Traceback" not in app_log.read_bytes()[start:].decode(errors="replace")


def test_a_text_file_sent_as_an_image_is_named_as_such(app_url):
    path = upload(app_url, b"just some text, not a picture", "notes.png")
    kind, message = call(app_url, "search_image", [meta(path), "pcl", 5, "", False])
    assert kind == "error" and "not an image this app can read" in message


def test_answers_carry_urls_never_server_paths(app_url, small_bundle):
    kind, out = call(app_url, "compare", ["two hearts", ["pcl", "ce"], 3, "heart", "", "image"])
    assert kind == "complete"
    text = json.dumps(out)
    assert str(small_bundle) not in text and "/tmp/" not in text and "gallery/images" not in text
    hits = [h for r in out[0].values() for h in r["hits"]]
    assert all(set(h) >= {"id", "image_url"} and "image" not in h for h in hits)
    r = httpx.get(app_url.rstrip("/") + hits[0]["image_url"], timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.size[0] > 0
    for bad in ("/media/b/no-such-id", "/media/nope/" + hits[0]["id"], "/media/b/..%2F..%2Fapp.py"):
        assert httpx.get(app_url.rstrip("/") + bad, timeout=10).status_code == 404


def test_gradio_file_route_serves_no_server_file(app_url, small_bundle):
    """Only the gallery's pictures (allowed_paths) and gradio's own cache are served by /gradio_api/file=."""
    root = Path(__file__).resolve().parents[1]
    for path in ("/etc/passwd", str(root / "app.py"), str(small_bundle / "manifest.json"), str(root / "README.md"),
                 str(small_bundle / "gallery" / "images" / ".." / ".." / "manifest.json")):
        r = httpx.get(f"{app_url}gradio_api/file={path}", timeout=10)
        assert r.status_code in (403, 404) and "root:x:0" not in r.text and "import" not in r.text, (
            path,
            r.status_code,
        )
    picture = small_bundle / "gallery" / "images" / "00001.png"
    assert httpx.get(f"{app_url}gradio_api/file={picture}", timeout=10).status_code == 200  # what the UI shows


@pytest.mark.slow  # starts an app of its own
def test_slow_clients_are_cut_off_and_sigterm_stops_the_app_promptly(small_bundle, tmp_path, monkeypatch):
    """A client that never finishes its request headers, or whose body stalls or trickles, loses its connection
    after the deadline (slow clients held 20,000 sockets open until new ones were refused), a normal client is served
    meanwhile, a body at a usable pace is not cut, and SIGTERM stops the app within 5 s even while slow connections
    are open."""
    import signal
    import socket
    from urllib.parse import urlparse

    from harness.app_server import start_app, stop_app
    monkeypatch.setenv("CMR_HEADER_TIMEOUT_S", "2")
    monkeypatch.setenv("CMR_BODY_TIMEOUT_S", "2")
    monkeypatch.setenv("CMR_BODY_MIN_RATE_KB", "1")
    proc, url, _ = start_app(small_bundle, tmp_path / "app.log")
    where = urlparse(url)

    def slow_connections(n: int, start: bytes = b"GET /api/v1/bundles HTTP/1.1\r\nHost: x\r\n") -> list:
        out = []  # by default the blank line that ends headers never comes
        for _ in range(n):
            sock = socket.create_connection((where.hostname, where.port), timeout=10)
            sock.sendall(start)
            out.append(sock)
        return out
    stalled = (b"POST /api/v1/search/text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 1000\r\n\r\n{")  # one byte of a 1000-byte body, then silence
    try:
        slow = slow_connections(150) + slow_connections(150, stalled)
        assert httpx.get(url + "api/v1/bundles", timeout=10).status_code == 200  # served beside them
        trickle = slow_connections(1, stalled.replace(b"1000", b"30"))[0]
        for _ in range(8):  # 8 bytes in 4 s, well under 1 kB/s: cut at 2 s + 8 bytes' worth
            time.sleep(0.5)
            try:
                trickle.sendall(b" ")
            except OSError:
                break
        time.sleep(1)
        assert all(sock.recv(1) == b"" for sock in slow + [trickle])  # every one closed by the app (EOF), none answered
        paced = socket.create_connection((where.hostname, where.port), timeout=10)
        body = b'{"text": "a red star", "k": 3}' + b" " * 6000  # 6 kB in 3 s, past the 2 s but above 1 kB/s: served
        paced.sendall(stalled.replace(b"1000", str(len(body)).encode())[:-1])
        for i in range(0, len(body), 200):
            paced.sendall(body[i:i + 200])
            time.sleep(0.1)
        assert paced.recv(12).startswith(b"HTTP/1.1 200"), "a body sent at a usable pace was cut"
        for sock in slow + [trickle, paced]:
            sock.close()
        held = slow_connections(100)
        start = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        assert time.perf_counter() - start <= 5.0
        for sock in held:
            sock.close()
    finally:
        stop_app(proc)
