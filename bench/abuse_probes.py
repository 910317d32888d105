"""The public-host probes of round two, each once with its target: `python bench/abuse.py --probes`.

Direct /run/ calls to the lab, stalled bodies, a burst of uploads from one address, high-bit-depth pictures at the
pixel cap, junk to gradio's /call/ and stream routes, forged X-Forwarded-For and many addresses of one network
against the lab's caps, bundle tools on hostile files, and the API's offsets and k. Every probe runs against a real
`python app.py` on the default bundle; its figure is printed beside its target.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import httpx

from flood import rss_mb  # bench/ is on sys.path (bench/abuse.py imports this module)

ROOT = Path(__file__).resolve().parents[1]
MB = 2 ** 20
PROXY = {"CMR_PROXY_HOPS": "1", "CMR_TRUSTED_PROXIES": "127.0.0.1/32"}  # the probe is the proxy: XFF names clients


class Peak:
    """The app's RSS sampled every 50 ms while a `with` block runs: `.mb` the most above `.start`."""

    def __init__(self, pid: int):
        self.pid, self.mb, self._stop = pid, 0.0, threading.Event()

    def __enter__(self):
        self.start = rss_mb(self.pid)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.is_set():
            self.mb = max(self.mb, rss_mb(self.pid) - self.start)
            time.sleep(0.05)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def page_search(url: str, path: str, headers: dict | None = None) -> str:
    """The page's picture search with an uploaded file (`path`, from /gradio_api/upload): its event stream's text."""
    event = httpx.post(url + "gradio_api/call/search_image", timeout=60, headers=headers,
                       json={"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, "pcl", 3]}).json()
    return httpx.get(url + f"gradio_api/call/search_image/{event['event_id']}", timeout=300).text


def search(url: str, client: str = "10.7.0.1") -> float:
    """A normal user's text search through the JSON API: seconds (inf when refused)."""
    seconds, r = timed(lambda: httpx.post(url + "api/v1/search/text", json={"text": "a red star", "k": 5},
                                          headers={"x-forwarded-for": client}, timeout=120))
    return seconds if r.status_code == 200 else float("inf")


def direct_runs(url: str, names: dict) -> dict:
    """45 direct POST /gradio_api/run/lab_train at once, while a visitor loads the page and searches."""
    body = {"data": ["pcl", "", 1, 1, 0, "demo"], "fn_index": names["lab_train"], "session_hash": "x"}
    with ThreadPoolExecutor(45) as pool:
        calls = [pool.submit(httpx.post, url + "gradio_api/run/lab_train", json=body, timeout=120) for _ in range(45)]
        time.sleep(0.5)
        page_s, _ = timed(lambda: httpx.get(url, timeout=60))
        search_s = search(url)
        codes = sorted({c.result().status_code for c in calls})
    return {"page_s": page_s, "search_s": search_s, "codes": codes}


def stalled_bodies(url: str, n: int = 300) -> dict:
    """`n` connections sending headers and 1 byte of a 1000-byte body, then nothing: how many the app closes in
    45 s, and a normal search meanwhile."""
    import selectors
    where = urlparse(url)
    sel, start = selectors.DefaultSelector(), time.perf_counter()
    for _ in range(n):
        s = socket.create_connection((where.hostname, where.port), timeout=10)
        s.sendall(b"POST /api/v1/search/text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    search_s = search(url)
    closed = []
    while len(closed) < n and time.perf_counter() - start < 45:
        for key, _ in sel.select(timeout=0.5):
            try:
                key.fileobj.recv(64)
            except OSError:
                pass
            sel.unregister(key.fileobj)
            key.fileobj.close()
            closed.append(time.perf_counter() - start)
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    return {"closed": len(closed), "of": n, "last_s": max(closed, default=None), "search_s": search_s}


def upload_burst(url: str, folder: Path, n: int = 30) -> dict:
    """Another visitor uploads a picture; then `n` distinct 19 MB uploads at once from one address: the upload
    folder's growth, and whether the other visitor's picture still searches."""
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buf, "PNG")
    other = httpx.post(url + "gradio_api/upload", files={"files": ("mine.png", buf.getvalue(), "image/png")},
                       headers={"x-forwarded-for": "10.8.1.1"}, timeout=60).json()[0]
    before = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())

    def one(k):
        return httpx.post(url + "gradio_api/upload", files={"files": (f"u{k}.png", os.urandom(19 * MB), "image/png")},
                          headers={"x-forwarded-for": "10.8.2.2"}, timeout=120).status_code
    with ThreadPoolExecutor(n) as pool:
        codes = list(pool.map(one, range(n)))
    growth = (sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) - before) / MB
    answer = page_search(url, other, {"x-forwarded-for": "10.8.1.1"})
    return {"growth_mb": growth, "codes": {c: codes.count(c) for c in sorted(set(codes))},
            "other_searches": "event: complete" in answer}


def deep_pictures() -> dict[str, bytes]:
    """A 6324 x 6324 (40 Mpx) 16-bit PNG and int32 TIFF, each a few hundred kB."""
    import numpy as np
    from PIL import Image
    side = 6324
    ramp = np.arange(side, dtype=np.int32) // 64
    out = {}
    for name, arr, kw in (("16-bit PNG", (ramp[None, :] * 97 + ramp[:, None] * 3).astype(np.uint16), {"format": "PNG"}),
                          ("int32 TIFF", ramp[None, :] * 100_000 + ramp[:, None] * 7,
                           {"format": "TIFF", "compression": "tiff_deflate"})):
        buf = io.BytesIO()
        Image.fromarray(arr, "I" if arr.dtype == np.int32 else None).save(buf, **kw)
        out[name] = buf.getvalue()
    return out


def picture_memory(url: str, pid: int) -> dict:
    """RSS above the start while the app searches with each deep picture alone, then 4 through the JSON API and 4
    through the page's route at once."""
    pictures, out = deep_pictures(), {}

    def api(data: bytes) -> int:
        return httpx.post(url + "api/v1/search/image", files={"file": ("p.png", data, "application/octet-stream")},
                          data={"k": "3"}, timeout=300).status_code

    def page(data: bytes) -> str:
        path = httpx.post(url + "gradio_api/upload", files={"files": (f"{uuid.uuid4().hex}.png", data, "image/png")},
                          timeout=60).json()[0]
        return page_search(url, path)[:30]
    for name, data in pictures.items():
        with Peak(pid) as peak:
            seconds, code = timed(lambda: api(data))
        out[name] = {"rss_mb": peak.mb, "seconds": seconds, "status": code, "bytes": len(data)}
    with Peak(pid) as peak, ThreadPoolExecutor(8) as pool:
        jobs = [pool.submit(api, data) for data in list(pictures.values()) * 2] + \
               [pool.submit(page, data) for data in list(pictures.values()) * 2]
        seconds, results = timed(lambda: [j.result() for j in jobs])
    out["4 + 4 at once"] = {"rss_mb": peak.mb, "seconds": seconds, "status": sorted({str(r)[:20] for r in results})}
    return out


def log_junk(url: str, log: Path) -> dict:
    """Requests outside the app's body checks once: unknown and 60k-character /call/ names, unknown streams, a
    100,000-character session hash. The log's growth and tracebacks."""
    before, long = log.stat().st_size, "a" * 60_000
    answers = [httpx.post(url + "gradio_api/call/nonexistent", json={"data": []}, timeout=30).status_code,
               httpx.post(url + f"gradio_api/call/{long}", json={"data": []}, timeout=30).status_code,
               httpx.get(url + f"gradio_api/call/x/{long}", timeout=30).status_code,
               httpx.get(url + f"gradio_api/call/search_text/{long}", timeout=30).status_code,
               httpx.get(url + "gradio_api/queue/data", params={"session_hash": "nobody"}, timeout=30).status_code,
               httpx.post(url + "gradio_api/call/search_text", json={"data": ["x"], "session_hash": "s" * 100_000},
                          timeout=30).status_code]
    time.sleep(1)
    text = log.read_text(errors="replace")[before:]
    return {"log_bytes": log.stat().st_size - before, "tracebacks": text.count("Traceback"), "codes": answers}


def api_limits(url: str) -> dict:
    k_s, k = timed(lambda: httpx.post(url + "api/v1/search/text", json={"text": "a red star", "k": 10 ** 9},
                                      timeout=60))
    return {"offset 2^63": httpx.get(url + "api/v1/items", params={"offset": 2 ** 63}, timeout=30).status_code,
            "offset -1": httpx.get(url + "api/v1/items", params={"offset": -1}, timeout=30).status_code,
            "k 10^9": k.status_code, "k 10^9 s": k_s,
            "monitoring summary": httpx.get(url + "monitoring/summary", timeout=30).status_code}


def lab_caps(url: str, names: dict, proxy_trusted: bool) -> dict:
    """Lab joins: 8 with forged X-Forwarded-For values from one socket (the app not trusting it as a proxy), or
    4 addresses of one /24 x 2 runs and one visitor from elsewhere (the app behind a trusted proxy)."""
    def join(xff: str) -> int:
        body = {"data": ["pcl", "", 1, 1, 0, 1e-3, 16, 500, 100, 32, 32, "demo"], "fn_index": names["lab_page"],
                "session_hash": uuid.uuid4().hex[:10]}
        return httpx.post(url + "gradio_api/queue/join", json=body, headers={"x-forwarded-for": xff},
                          timeout=30).status_code
    if not proxy_trusted:
        return {"forged, admitted": sum(join(f"198.51.100.{n}") == 200 for n in range(8))}
    same = [join(f"10.9.5.{n // 2}") for n in range(8)]
    return {"one /24, admitted": same.count(200), "elsewhere": join("10.9.6.1")}


def bundle_tools(tmp: Path) -> dict:
    """verify of the default bundle with one listed file made a sparse 3 GB file; migrate of a list manifest and of
    a format-1 bundle that fails verification."""
    folder = tmp / "hostile-bundle"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(ROOT / "assets" / "demo", folder, ignore=shutil.ignore_patterns("images"))
    manifest = json.loads((folder / "manifest.json").read_text())
    rel = max((r for r in manifest["files"] if (folder / r).is_file()), key=lambda r: (folder / r).stat().st_size)
    os.truncate(folder / rel, 3 * 2 ** 30)
    code = ("import sys, time; from cmr_demo.bundle.verify import verify; t = time.time(); p = verify(sys.argv[1]); "
            "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
            "print(round(time.time() - t, 2), int(peak) // 1024, any('GB, more than' in x for x in p))")
    seconds, out = timed(lambda: subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True,
                                                text=True, cwd=ROOT, timeout=300).stdout.split())
    (folder / "manifest.json").write_text("[1, 2]")
    listed = subprocess.run([sys.executable, "-m", "cmr_demo.bundle", "migrate", str(folder)], capture_output=True,
                            text=True, cwd=ROOT)
    old = {**{k: v for k, v in manifest.items() if k != "job"}, "format": "cmr_demo.bundle/1"}
    (folder / "manifest.json").write_text(text := json.dumps(old))
    bad = subprocess.run([sys.executable, "-m", "cmr_demo.bundle", "migrate", str(folder)], capture_output=True,
                         text=True, cwd=ROOT)
    unchanged = (folder / "manifest.json").read_text() == text
    shutil.rmtree(folder, ignore_errors=True)
    return {"verify_s": seconds, "verify_peak_mb": int(out[1]) if len(out) > 1 else None,
            "verify_refused": out[-1:] == ["True"], "list manifest": (listed.returncode, listed.stderr.strip()[-160:]),
            "failing format-1": (bad.returncode, "Traceback" in bad.stderr), "format-1 left unchanged": unchanged}


def run_probes(tmp: Path) -> tuple[dict, list[tuple[str, str, str, bool]]]:
    """Every probe: (raw figures, rows of (figure, measured, target, met))."""
    from harness.app_server import start_app, stop_app
    raw, rows = {}, []
    log = tmp / "probes.log"
    proc, url, _ = start_app(ROOT / "assets" / "demo", log, temp_dir=tmp / "gradio", env=PROXY)
    try:
        names = {d.get("api_name"): i for i, d in enumerate(httpx.get(url + "config").json()["dependencies"])}
        raw["direct /run/"] = d = direct_runs(url, names)
        rows.append(("45 direct /run/lab_train calls: GET / / a search meanwhile",
                     f"{d['page_s']:.2f} s / {d['search_s']:.2f} s (answers {d['codes']})", "<= 3 s / <= 6 s",
                     d["page_s"] <= 3 and d["search_s"] <= 6))
        raw["stalled bodies"] = d = stalled_bodies(url)
        rows.append(("300 stalled bodies closed within 45 s (a search meanwhile)",
                     f"{d['closed']} / {d['of']}, the last at {d['last_s'] or 0:.1f} s ({d['search_s']:.2f} s)",
                     ">= 95 %", d["closed"] >= 0.95 * d["of"]))
        raw["upload burst"] = d = upload_burst(url, tmp / "gradio")
        rows.append(("30 concurrent 19 MB uploads from one address: folder growth; another's picture searches",
                     f"{d['growth_mb']:.0f} MB {d['codes']}; {'yes' if d['other_searches'] else '**no**'}",
                     "<= 120 MB; yes", d["growth_mb"] <= 120 and d["other_searches"]))
        raw["pictures"] = d = picture_memory(url, proc.pid)
        for name, v in d.items():
            limit = 1000 if "at once" in name else 400
            rows.append((f"40 Mpx {name}: app RSS above its start" if "at once" not in name else
                         "4 JSON-API + 4 page searches of both at once: RSS above start",
                         f"{v['rss_mb']:.0f} MB ({v['seconds']:.1f} s)", f"<= {limit} MB", v["rss_mb"] <= limit))
        raw["log"] = d = log_junk(url, log)
        rows.append(("unknown / 60k-character /call/ names, unknown streams: log growth, tracebacks",
                     f"{d['log_bytes']} B, {d['tracebacks']} (answers {d['codes']})", "<= 4 kB, 0",
                     d["log_bytes"] <= 4096 and d["tracebacks"] == 0))
        raw["api"] = d = api_limits(url)
        rows.append(("offset 2^63 / -1, k = 10^9, /monitoring/summary",
                     f"{d['offset 2^63']} / {d['offset -1']}, {d['k 10^9']} in {d['k 10^9 s']:.2f} s, "
                     f"{d['monitoring summary']}", "refused; <= 1 s", d["offset 2^63"] >= 400 and d["k 10^9 s"] <= 1))
        raw["lab, one network"] = d = lab_caps(url, names, True)
        rows.append(("lab: 4 addresses of one /24 x 2 runs; a visitor from elsewhere",
                     f"{d['one /24, admitted']} admitted; {d['elsewhere']}", "4; 200",
                     d["one /24, admitted"] == 4 and d["elsewhere"] == 200))
    finally:
        stop_app(proc)
    proc, url, _ = start_app(ROOT / "assets" / "demo", tmp / "probes-space.log", temp_dir=tmp / "gradio-space",
                             env={"CMR_PROXY_HOPS": "1"})  # as on a Space, reached directly: loopback is no proxy
    try:
        names = {d.get("api_name"): i for i, d in enumerate(httpx.get(url + "config").json()["dependencies"])}
        raw["lab, forged"] = d = lab_caps(url, names, False)
        rows.append(("lab: 8 forged X-Forwarded-For values from one socket", f"{d['forged, admitted']} admitted",
                     "2 (one client)", d["forged, admitted"] == 2))
    finally:
        stop_app(proc)
    raw["bundle tools"] = d = bundle_tools(tmp)
    rows.append(("verify of a listed sparse 3 GB file", f"refused: {d['verify_refused']}, {d['verify_s']:.1f} s, "
                 f"peak {d['verify_peak_mb']} MB", "refused, <= 20 s, <= 600 MB",
                 d["verify_refused"] and d["verify_s"] <= 20 and (d["verify_peak_mb"] or 10 ** 9) <= 600))
    rows.append(("migrate: a list manifest; a format-1 bundle that fails verification",
                 f"exit {d['list manifest'][0]} `{d['list manifest'][1][-70:]}`; exit {d['failing format-1'][0]}, "
                 f"traceback {d['failing format-1'][1]}, unchanged {d['format-1 left unchanged']}",
                 "a message; unchanged", d["list manifest"][0] != 0 and not d["failing format-1"][1]
                 and d["format-1 left unchanged"]))
    return raw, rows


def table(rows) -> str:
    lines = ["| probe | measured | target | |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {'met' if ok else '**missed**'} |" for a, b, c, ok in rows]
    return "\n".join(lines)
