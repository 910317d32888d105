"""The app as clients see it: cold start to ready, end-to-end latency of every endpoint under concurrency, peak RSS.

    python bench/app.py [--bundle assets/demo] [--clients 1 8 32] [--requests 20]

Starts `python app.py` in a subprocess (offline), times it until it answers, then for each level of
concurrency runs that many gradio_client sessions in threads, each sending `--requests` requests per
endpoint, and records p50/p95 wall latency per endpoint, errors, and the server's peak RSS (VmHWM).
Writes bench/results/app.json and .md with the goals beside the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from harness.app_server import start_app, stop_app  # noqa: E402
from cmr_demo.provenance import machine  # noqa: E402

GOALS = {"ready_s": 8.0, "search_text_p50_ms_at_8": 100.0, "search_text_p95_ms_at_8": 250.0, "rss_mb": 1536.0,
         "api_rps_at_8": 400.0, "api_p50_ms_at_8": 20.0, "api_p95_ms_at_32": 100.0}
QUERIES = ["a red star", "two blue hearts on a striped background", "a shape with three corners", "a small ring",
           "an arrow pointing left", "a big hexagon in the centre", "a crescent moon on navy", "three crosses"]


def endpoints(bundle: Path) -> dict:
    from gradio_client import handle_file
    images = sorted((bundle / "gallery" / "images").glob("*.png"))[:16]
    return {
        "search_text": lambda c, i: c.predict(QUERIES[i % len(QUERIES)] + f" {i}", "pcl", 10, api_name="/search_text"),
        "search_image": lambda c, i: c.predict(handle_file(str(images[i % len(images)])), "pcl", 10,
                                               api_name="/search_image"),
        "compare": lambda c, i: c.predict(QUERIES[i % len(QUERIES)], [], 6, api_name="/compare"),
        "embedding_map": lambda c, i: c.predict("pcl", QUERIES[i % len(QUERIES)], [], api_name="/embedding_map"),
    }


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def session(url: str, calls: dict, n: int, seed: int) -> dict:
    from gradio_client import Client
    client = Client(url, verbose=False, download_files=False)  # like a browser: images fetched lazily by URL
    out = {name: [] for name in calls}
    errors = {name: 0 for name in calls}
    for i in range(n):
        for name, call in calls.items():
            start = time.perf_counter()
            try:
                call(client, seed * 1000 + i)
                out[name].append(time.perf_counter() - start)
            except Exception:  # noqa: BLE001 (counted: the benchmark reports errors instead of stopping)
                errors[name] += 1
    return {"times": out, "errors": errors}


def rest_peer(url: str, n: int = 50, clients: int = 1) -> dict:
    """search_text through gradio's plain REST route (POST, then GET the event's result), `clients` at once.

    Why: measured beside gradio_client in the same run, it separates what the server costs from what
    the client library's queue protocol adds (clients here are threads of this process too)."""
    import httpx

    def one_client(seed: int) -> list[float]:
        times = []
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in range(n + 3):  # three warm-up calls
                start = time.perf_counter()
                query = QUERIES[(seed + i) % len(QUERIES)] + f" {seed * 1000 + i}"
                event = http.post("gradio_api/call/search_text", json={"data": [query, "pcl", 10, None, False]}).json()
                body = http.get(f"gradio_api/call/search_text/{event['event_id']}").text
                if "event: complete" not in body:
                    raise RuntimeError(f"REST search_text failed: {body[:300]}")
                if i >= 3:
                    times.append((time.perf_counter() - start) * 1000)
        return times

    with ThreadPoolExecutor(clients) as pool:
        times = np.concatenate(list(pool.map(one_client, range(clients))))
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
            "requests": int(len(times)), "clients": clients}


def api_level(url: str, clients: int, seconds: float) -> dict:
    """POST /api/v1/search/text from `clients` asyncio clients (one httpx.AsyncClient each, keep-alive) for
    `seconds`, every query a new text (no cache hits): requests/s, p50/p95 latency, errors."""
    import asyncio

    import httpx

    async def one(n: int, stop: float, times: list, errors: list):
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            i = 0
            while time.perf_counter() < stop:
                i += 1
                body = {"text": f"{QUERIES[(n + i) % len(QUERIES)]} {n}-{i}-{stop}", "objective": "pcl", "k": 10}
                start = time.perf_counter()
                try:
                    r = await http.post("api/v1/search/text", json=body)
                    ok = r.status_code == 200 and len(r.json()["hits"]) == 10
                except httpx.HTTPError:
                    ok = False
                (times if ok else errors).append(time.perf_counter() - start)

    async def run():
        times, errors = [], []
        await asyncio.gather(*(one(n, time.perf_counter() + 1.0, [], []) for n in range(clients)))  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*(one(n, start + seconds, times, errors) for n in range(clients)))
        took = time.perf_counter() - start
        ms = np.array(times) * 1000
        return {"clients": clients, "requests": len(times), "errors": len(errors), "rps": len(times) / took,
                "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}
    return asyncio.run(run())


def service_floor(bundle: Path, n: int = 300) -> dict:
    """The work itself, in this process: a new text's search through RetrievalService (encode, head, index,
    query info), one at a time; and the same for a batch of 8 new texts encoded in one backbone call."""
    from cmr_demo.bundle.load import load_bundle
    from cmr_demo.serve.service import RetrievalService
    service = RetrievalService(load_bundle(bundle))
    texts = [f"{QUERIES[i % len(QUERIES)]} floor {i}" for i in range(n + 8 * (n // 8) + 20)]
    for t in texts[:20]:  # warm-up
        service.search(service.text_query(t), "pcl", 10)
    start = time.perf_counter()
    for t in texts[20:20 + n]:
        service.search(service.text_query(t), "pcl", 10)
    single = (time.perf_counter() - start) / n
    rest = texts[20 + n:]
    start = time.perf_counter()
    for b in range(0, len(rest) - 7, 8):
        feats = service.encoder.text_features(rest[b:b + 8])
        for j, t in enumerate(rest[b:b + 8]):
            service.search(service.text_query(t), "pcl", 10, features=feats[j:j + 1])
    batched = (time.perf_counter() - start) / (len(rest) // 8 * 8)
    return {"ms_per_search": single * 1000, "ms_per_search_batched_8": batched * 1000}


def level(url: str, calls: dict, clients: int, n: int) -> dict:
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda s: session(url, calls, n, s), range(clients)))
    row = {}
    for name in calls:
        times = np.concatenate([r["times"][name] for r in results]) * 1000
        row[name] = {"p50_ms": float(np.percentile(times, 50)) if len(times) else None,
                     "p95_ms": float(np.percentile(times, 95)) if len(times) else None,
                     "requests": int(len(times)), "errors": int(sum(r["errors"][name] for r in results))}
    return row


def markdown(result: dict) -> str:
    lines = [f"App benchmark, {result['date']}, {result['machine']}", "",
             f"- cold start to ready: **{result['ready_s']:.2f} s** (goal <= {GOALS['ready_s']} s)",
             f"- server peak RSS: **{result['peak_rss_mb']:.0f} MB** (goal <= {GOALS['rss_mb']:.0f} MB)", "",
             "| clients | endpoint | requests | errors | p50 ms | p95 ms |", "|---|---|---|---|---|---|"]
    for clients, row in result["levels"].items():
        for name, r in row.items():
            lines.append(f"| {clients} | {name} | {r['requests']} | {r['errors']} | {r['p50_ms']:.0f} | "
                         f"{r['p95_ms']:.0f} |")
    at8 = result["levels"].get("8", {}).get("search_text")
    if at8:
        lines += ["", f"search_text at 8 clients: p50 {at8['p50_ms']:.0f} ms (goal <= "
                      f"{GOALS['search_text_p50_ms_at_8']:.0f}),"
                      f" p95 {at8['p95_ms']:.0f} ms (goal <= {GOALS['search_text_p95_ms_at_8']:.0f})"]
    for clients, rest in result.get("rest_search_text", {}).items():
        lines += ["", f"Peer, same run: search_text through gradio's REST route (httpx, {clients} client(s)): p50 "
                      f"{rest['p50_ms']:.0f} ms, p95 {rest['p95_ms']:.0f} ms"]
    floor = result.get("service_floor")
    if floor:
        lines += ["", "JSON API, POST /api/v1/search/text, every text new (asyncio httpx clients, keep-alive):", "",
                  "| clients | requests/s | p50 ms | p95 ms | errors |", "|---|---|---|---|---|"]
        lines += [f"| {c} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['errors']} |"
                  for c, r in result["api_search_text"].items()]
        lines += ["", f"Floor, same run, in-process: {floor['ms_per_search']:.2f} ms per new-text search one at a time "
                      f"({1000 / floor['ms_per_search']:.0f}/s on one thread), {floor['ms_per_search_batched_8']:.2f} "
                      f"ms "
                      f"with 8 texts per backbone call"]
    return "\n".join(lines + ["", f"command: `{result['command']}`"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=str(ROOT / "assets" / "demo"))
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--requests", type=int, default=20, help="requests per endpoint per client")
    p.add_argument("--api-seconds", type=float, default=10.0, help="seconds of JSON API load per level")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "app"))
    args = p.parse_args()
    os.environ.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    log = Path(args.out + ".log")
    floor = service_floor(Path(args.bundle))  # before the server starts: the work alone, on quiet cores
    proc, url, ready = start_app(Path(args.bundle), log)
    try:
        api = {str(c): api_level(url, c, args.api_seconds) for c in args.clients}
        calls = endpoints(Path(args.bundle))
        session(url, calls, 1, 999)  # warm-up: first-request imports and caches
        rest = {str(c): rest_peer(url, clients=c, n=50 if c == 1 else 20) for c in (1, 8)}
        levels = {str(c): level(url, calls, c, args.requests) for c in args.clients}
        rss = peak_rss_mb(proc.pid)
    finally:
        stop_app(proc)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "command": " ".join(["python", "bench/app.py", *sys.argv[1:]]),
        "ready_s": ready,
        "peak_rss_mb": rss,
        "levels": levels,
        "rest_search_text": rest,
        "api_search_text": api,
        "service_floor": floor,
        "goals": GOALS,
    }
    Path(args.out + ".json").write_text(json.dumps(result, indent=2))
    Path(args.out + ".md").write_text(markdown(result) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
