"""A mixed-abuse soak: every hostile load the public-hosting issue names, at once, for `--minutes`, while a normal
user searches through the page's queue and the JSON API. The normal user's latency and refusals, the app's
tracebacks, memory and upload folder.

    python bench/abuse.py [--minutes 5] [--slow 19000]
    python bench/abuse.py --probes      # round two's probes, each once beside its target (bench/abuse_probes.py)

At once, against `python app.py` on the default bundle (behind one trusted proxy, so X-Forwarded-For names the
client): 16 clients posting distinct 6300x6300 PNGs to the JSON API; one client queuing lab runs and never listening;
200 MB declared bodies and 3M-item lists; distinct 19 MB uploads never searched; `--slow` connections that never
finish their headers (held from a process of their own, re-opened when the app closes them); and the private-event
fuzz of harness/event_fuzz.py in a loop. Writes bench/results/abuse.json and .md.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from harness.app_server import start_app, stop_app  # noqa: E402
from harness.event_fuzz import fuzz  # noqa: E402
from flood import picture, rss_mb  # noqa: E402

from cmr_demo.provenance import save_result, stamp  # noqa: E402

TARGETS = {"normal_p95_s": 2.0, "normal_refused": 0, "tracebacks": 0, "upload_growth_mb": 400}


def hold_slow(host: str, port: int, n: int, stop, opened_out) -> None:
    """Keep `n` connections open that never finish their headers; re-open each one the app closes."""
    import selectors
    sel, opened = selectors.DefaultSelector(), 0

    def open_one():
        nonlocal opened
        try:
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(b"GET /config HTTP/1.1\r\nHost: x\r\n")
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            opened += 1
        except OSError:
            time.sleep(0.01)
    while len(sel.get_map()) < n and not stop.is_set():
        open_one()
    while not stop.is_set():
        for key, _ in sel.select(timeout=0.5):
            sel.unregister(key.fileobj)
            key.fileobj.close()
        while len(sel.get_map()) < n and not stop.is_set():
            open_one()
    opened_out.value = opened


def loop(stop: threading.Event, every_s: float, fn) -> None:
    while not stop.is_set():
        try:
            fn()
        except Exception:  # noqa: BLE001 (a refused or cut connection is what an abuser gets)
            pass
        stop.wait(every_s)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=5)
    p.add_argument("--slow", type=int, default=19000)
    p.add_argument("--probes", action="store_true", help="run round two's probes once each instead of the soak")
    args = p.parse_args()
    if args.probes:
        return probes()
    import httpx
    os.environ["CMR_PROXY_HOPS"] = "1"
    os.environ["CMR_TRUSTED_PROXIES"] = "127.0.0.1/32"  # the bench is the proxy: X-Forwarded-For names the clients
    temp = Path("/tmp/bench-abuse-gradio")
    proc, url, _ = start_app(ROOT / "assets" / "demo", Path("/tmp/bench-abuse.log"), temp_dir=temp)
    host, port = urlparse(url).hostname, urlparse(url).port
    config = httpx.get(url + "config").json()["dependencies"]
    names = {d.get("api_name"): i for i, d in enumerate(config)}
    pictures = [picture(6300, n) for n in range(16)]
    stop, threads, counts = threading.Event(), [], {}
    normal, refused = [], []

    def count(key: str) -> None:
        counts[key] = counts.get(key, 0) + 1

    def page_search(client, n):  # the page's own path: gradio's queue, then its event stream
        sh = uuid.uuid4().hex[:10]
        body = {"data": [f"a red star {n}", "pcl", 5, "", False, None, "demo"], "fn_index": names["search_text"],
                "session_hash": sh}
        r = client.post(url + "gradio_api/queue/join", json=body, headers={"x-forwarded-for": "10.1.0.1"})
        if r.status_code != 200:
            return r.text
        with client.stream("GET", url + "gradio_api/queue/data", params={"session_hash": sh}) as s:
            for line in s.iter_lines():
                if line.startswith("data:") and '"process_completed"' in line:
                    return None if json.loads(line[5:]).get("success") else line[:200]
        return "no answer"

    def api_search(client, n):
        r = client.post(url + "api/v1/search/text", json={"text": f"a blue heart {n}", "k": 5},
                        headers={"x-forwarded-for": "10.1.0.1"})
        return None if r.status_code == 200 else r.text[:200]

    def normal_user():
        with httpx.Client(timeout=60) as client:
            n = 0
            while not stop.is_set():
                for how in (page_search, api_search):
                    start = time.perf_counter()
                    try:
                        problem = how(client, n)
                    except httpx.HTTPError as err:
                        problem = f"{type(err).__name__}"
                    normal.append((how.__name__, time.perf_counter() - start))
                    if problem:
                        refused.append((how.__name__, problem))
                n += 1
                stop.wait(0.5)

    def pictures_flood(k: int):
        with httpx.Client(timeout=600) as client:
            while not stop.is_set():
                try:
                    r = client.post(url + "api/v1/search/image", files={"file": ("p.png", pictures[k], "image/png")},
                                    data={"k": "3"}, headers={"x-forwarded-for": "10.9.0.1"})
                    count(f"picture {r.status_code}")
                except httpx.HTTPError:
                    count("picture cut")

    def lab_flood():
        with httpx.Client(timeout=30) as client:
            body = {"data": ["pcl", "", 1, 1, 0, 1e-3, 64, 500, 100, 64, 64, "demo"], "fn_index": names["lab_page"],
                    "session_hash": uuid.uuid4().hex[:10]}
            r = client.post(url + "gradio_api/queue/join", json=body, headers={"x-forwarded-for": "10.9.0.2"})
            count(f"lab join {r.status_code}")

    def huge_bodies():
        for path in ("gradio_api/queue/join", "api/v1/search/text", "gradio_api/run/predict"):
            with socket.create_connection((host, port), timeout=10) as s:
                s.sendall(f"POST /{path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {200 * 2 ** 20}\r\n\r\n".encode() + b"[" + b"1," * 1000)
                count(f"200MB {s.recv(64).split(b' ')[1].decode(errors='replace')}")
        items = b'{"text": "x", "objectives": [' + b"1," * 3_000_000 + b'1]}'
        start = time.perf_counter()
        r = httpx.post(url + "api/v1/compare", content=items, headers={"content-type": "application/json"}, timeout=60)
        count(f"3M list {r.status_code}")
        counts["3M list max s"] = max(counts.get("3M list max s", 0), time.perf_counter() - start)

    def uploads():
        r = httpx.post(url + "gradio_api/upload", files={"files": ("u.png", os.urandom(19 * 2 ** 20), "image/png")},
                       headers={"x-forwarded-for": "10.9.0.3"}, timeout=60)
        count(f"upload {r.status_code}")

    def side_doors():  # round two: a direct lab run past the queue, junk /call/ names and streams, a stalled body
        r = httpx.post(url + "gradio_api/run/lab_train", timeout=30, json={
            "data": ["pcl", "", 1, 1, 0, "demo"], "fn_index": names["lab_train"], "session_hash": "x"})
        count(f"direct run {r.status_code}")
        junk = httpx.post(url + "gradio_api/call/" + "n" * 60_000, json={"data": []}, timeout=30)
        count(f"junk call {junk.status_code}")
        count(f"junk stream {httpx.get(url + 'gradio_api/queue/data?session_hash=nobody', timeout=30).status_code}")
        with socket.create_connection((host, port), timeout=60) as s:
            s.sendall(b"POST /api/v1/search/text HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
            start = time.perf_counter()
            s.recv(64)
            counts["stalled body cut after s"] = max(counts.get("stalled body cut after s", 0),
                                                     time.perf_counter() - start)

    fuzz_tallies = []

    def fuzzing():
        fuzz_tallies.append(fuzz(url, per_event=1, seed=len(fuzz_tallies), wait_s=5))

    slow_stop, opened = multiprocessing.Event(), multiprocessing.Value("q", 0)
    slow = multiprocessing.Process(target=hold_slow, args=(host, port, args.slow, slow_stop, opened))
    before = rss_mb(proc.pid)
    peak_rss, peak_disk = before, 0.0
    start = time.perf_counter()
    try:
        slow.start()
        threads += [threading.Thread(target=normal_user)]
        threads += [threading.Thread(target=pictures_flood, args=(k,)) for k in range(len(pictures))]
        threads += [threading.Thread(target=loop, args=(stop, 1.0, f)) for f in (lab_flood, uploads, side_doors)]
        threads += [threading.Thread(target=loop, args=(stop, 2.0, huge_bodies)),
                    threading.Thread(target=loop, args=(stop, 0.0, fuzzing))]
        for t in threads:
            t.start()
        while time.perf_counter() - start < args.minutes * 60:
            peak_rss = max(peak_rss, rss_mb(proc.pid))
            peak_disk = max(peak_disk, sum(f.stat().st_size for f in temp.rglob("*") if f.is_file()) / 2 ** 20)
            time.sleep(1)
        stop.set()
        for t in threads:
            t.join(120)
        slow_stop.set()
        slow.join(30)
        # after the abuse: a normal client is served, and SIGTERM stops the app promptly
        after = httpx.get(url + "api/v1/bundles", timeout=30).status_code
        import signal
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        stop_s = time.perf_counter() - t0
    finally:
        if proc.poll() is None:
            stop_app(proc)
        if slow.is_alive():
            slow.kill()
    log = Path("/tmp/bench-abuse.log").read_text(errors="replace")
    times = sorted(t for _, t in normal)
    fuzz_sent = sum(t.sent for t in fuzz_tallies)
    fuzz_bare = sum(len(t.bare) for t in fuzz_tallies)
    row = {"minutes": args.minutes, "slow_connections": args.slow, "normal_requests": len(normal),
           "normal_p50_s": statistics.median(times), "normal_p95_s": times[int(0.95 * (len(times) - 1))],
           "normal_refused": len(refused), "refusals": refused[:5], "tracebacks": log.count("Traceback"),
           "rss_before_mb": before, "rss_peak_mb": peak_rss, "upload_folder_peak_mb": peak_disk,
           "fuzz_sent": fuzz_sent, "fuzz_bare": fuzz_bare, "served_after": after, "sigterm_stop_s": stop_s,
           "slow_opened": opened.value,
           "abuse": counts}
    met = {"normal_p95_s": row["normal_p95_s"] <= TARGETS["normal_p95_s"],
           "normal_refused": row["normal_refused"] == 0, "tracebacks": row["tracebacks"] == 0,
           "upload": peak_disk <= TARGETS["upload_growth_mb"], "sigterm": stop_s <= 5, "fuzz_bare": fuzz_bare == 0}
    ok = lambda k: "met" if met[k] else "**missed**"  # noqa: E731
    got = ", ".join(f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}" for k, v in sorted(counts.items()))
    body = (
        f"{args.minutes:g} minutes of every abuse at once (`python bench/abuse.py`), on the default bundle:\n\n"
        "| figure | measured | target |\n|---|---|---|\n"
        f"| normal user's searches (page queue + JSON API), p95 | {row['normal_p95_s']:.2f} s "
        f"(p50 {row['normal_p50_s']:.2f} s, {len(normal)} searches) | <= 2 s: {ok('normal_p95_s')} |\n"
        f"| normal user's searches refused | {row['normal_refused']} | 0: {ok('normal_refused')} |\n"
        f"| tracebacks in the app's log | {row['tracebacks']} | 0: {ok('tracebacks')} |\n"
        f"| private-event fuzz sends, bare 'Error' replies | {fuzz_sent}, {fuzz_bare} | 0 bare: {ok('fuzz_bare')} "
        f"|\n"
        f"| upload folder, peak | {peak_disk:.0f} MB | <= 400 MB quota: {ok('upload')} |\n"
        f"| app RSS before / peak | {before:.0f} / {peak_rss:.0f} MB | (48 pictures alone: <= +500 MB) |\n"
        f"| slow connections an abuser keeps open (re-opened each time the app cuts one) | {args.slow} at once, "
        f"{opened.value:,} opened in all | a normal client still served: {'yes' if after == 200 else '**no**'} |\n"
        f"| SIGTERM after the soak: stopped in | {stop_s:.1f} s | <= 5 s: {ok('sigterm')} |\n\n"
        f"What the abusers got: {got}."
    )
    print(save_result(ROOT / "bench" / "results" / "abuse", {**stamp(["python", "bench/abuse.py", *sys.argv[1:]]),
                                                              "row": row, "targets": TARGETS}, body))


def probes() -> None:
    """Round two's probes (bench/abuse_probes.py), each once beside its target: bench/results/abuse_probes.*"""
    import shutil
    from abuse_probes import run_probes, table
    tmp = Path("/tmp/bench-abuse-probes")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    raw, rows = run_probes(tmp)
    body = ("Each hostile probe of the public-host issue's second round, once, against `python app.py` on the default "
            "bundle (`python bench/abuse.py --probes`; the JSON has every figure):\n\n" + table(rows))
    print(save_result(ROOT / "bench" / "results" / "abuse_probes", {**stamp(["python", "bench/abuse.py", "--probes"]),
                                                                     "raw": raw, "rows": rows}, body))


if __name__ == "__main__":
    main()
