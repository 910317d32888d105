"""A bounded soak on loopback: many clients mixing every endpoint and uploads; errors, memory and disk.

    python bench/soak.py [--bundle assets/demo] [--clients 32] [--minutes 5] [--uploads 100]

Starts `python app.py` with a private gradio cache folder (GRADIO_TEMP_DIR), then:
1. uploads: `--uploads` distinct 4 MB pictures, each uploaded and searched with, one after another;
   the cache folder's growth is compared with the gallery's own files (result galleries copy those);
2. soak: `--clients` asyncio clients (httpx, gradio's HTTP call protocol, no gradio_client threads) for
   `--minutes`, each looping over a mix of every named endpoint (text and image search with a fresh
   4 MB upload, compare, map, disagreements, query info for text and picture) and gallery pictures by
   URL. Every answer is counted: ok, documented busy refusal (gradio's queue full), or error.
   The server's RSS (VmRSS) and the cache folder's size are sampled every 5 s.
Writes bench/results/soak.json and .md with the targets beside the figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import struct
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from harness.app_server import start_app, stop_app  # noqa: E402
from cmr_demo.provenance import machine  # noqa: E402

TARGETS = {"errors": 0, "rss_growth_after_warmup": 0.10}
QUERIES = ["a red star", "two blue hearts on a striped background", "a shape with three corners", "a small ring",
           "an arrow pointing left", "a big hexagon in the centre", "a crescent moon on navy", "three crosses"]
# refusals when QUEUE_SIZE requests wait
BUSY = ("queue is full", "too many requests", "the app is busy", "the lab is busy")


def bmp(side: int, seed: int) -> bytes:
    """A distinct uncompressed 24-bit BMP of side x side (4 MB at 1155): cheap to make, a real picture to decode."""
    row = (side * 3 + 3) & ~3
    pixels = np.random.default_rng(seed).integers(0, 256, row * side, dtype=np.uint8).tobytes()
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + pixels


def folder_bytes(folder: Path) -> int:
    """Bytes under `folder`; files and folders deleted while walking (the app deletes uploads) are skipped."""
    total = 0
    for root, _, names in os.walk(folder):  # os.walk ignores folders that vanish under it
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Caller:
    """gradio's HTTP call protocol over one httpx.AsyncClient: POST call/NAME, then read its event stream."""

    def __init__(self, client, url: str):
        self.client, self.api = client, url + "gradio_api/"

    async def call(self, name: str, data: list) -> tuple[str, str]:
        r = await self.client.post(f"{self.api}call/{name}", json={"data": data})
        if r.status_code != 200:
            return "error", f"HTTP {r.status_code}: {r.text[:200]}"
        text = (await self.client.get(f"{self.api}call/{name}/{r.json()['event_id']}")).text
        kind, _, payload = text.split("event: ")[-1].partition("\ndata: ")
        return ("ok", "") if kind.strip() == "complete" else ("error", payload.strip()[:300])

    async def upload(self, data: bytes, name: str = "query.bmp") -> dict:
        r = await self.client.post(f"{self.api}upload", files={"files": (name, data, "image/bmp")})
        r.raise_for_status()
        return {"path": r.json()[0], "meta": {"_type": "gradio.FileData"}}


async def upload_phase(url: str, cache: Path, n: int) -> dict:
    import httpx
    async with httpx.AsyncClient(timeout=120) as client:
        caller = Caller(client, url)
        for q in QUERIES:  # warm: the first result galleries copy gallery pictures into the cache
            await caller.call("search_text", [q, "pcl", 20, "", False])
        start_bytes, start = folder_bytes(cache), time.perf_counter()
        errors, peak = 0, start_bytes
        for i in range(n):
            image = await caller.upload(bmp(1155, 10_000 + i))
            kind, _ = await caller.call("search_image", [image, "pcl", 10, "", i % 2 == 0])
            errors += kind != "ok"
            peak = max(peak, folder_bytes(cache)) if i % 10 == 0 else peak
        return {"uploads": n, "upload_mb": round(len(bmp(1155, 0)) / 2 ** 20, 2), "errors": errors,
                "seconds": round(time.perf_counter() - start, 1),
                "cache_growth_mb": round((folder_bytes(cache) - start_bytes) / 2 ** 20, 2),
                "cache_peak_growth_mb": round((peak - start_bytes) / 2 ** 20, 2)}


async def soak(url: str, pid: int, cache: Path, clients: int, seconds: float, bundle: Path) -> dict:
    import httpx
    manifest = json.loads((bundle / "manifest.json").read_text())
    ids = [json.loads(line)["id"] for line in (bundle / "gallery" / "items.jsonl").read_text().splitlines() if line]
    objectives = list(manifest["objectives"])
    counts: dict[str, dict[str, int]] = {}
    latency: dict[str, list[float]] = {}
    samples: list[tuple[float, float, float]] = []
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients * 2)

    async def client_loop(n: int):
        rng = random.Random(n)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            caller = Caller(client, url)
            i = 0
            while time.perf_counter() < stop_at:
                i += 1
                q, obj = rng.choice(QUERIES) + f" {n}-{i}", rng.choice(objectives)
                action = ["search_text", "search_image", "compare", "embedding_map", "disagreements",
                          "query_info", "query_info_image", "media", "search_text"][i % 9]
                start = time.perf_counter()
                try:
                    if action == "media":
                        r = await client.get(f"{url}media/{bundle.name}/{rng.choice(ids)}") if ids else None
                        kind, message = (
                            ("ok", "") if r is None or r.status_code == 200 else ("error", str(r.status_code))
                        )
                    elif action in ("search_image", "query_info_image"):
                        image = await caller.upload(bmp(1155 if i % 18 == 1 else 224, n * 100_000 + i))
                        args = [image, obj, 10, "", False] if action == "search_image" else [image, obj]
                        kind, message = await caller.call(action, args)
                    else:
                        args = {"search_text": [q, obj, 10, "", False], "compare": [q, [], 6, "", "", "image"],
                                "embedding_map": [obj, q, [], [], False, 10, ""],
                                "disagreements": [obj, objectives[0], "t2i"], "query_info": [q, obj]}[action]
                        kind, message = await caller.call(action, args)
                except httpx.HTTPError as err:
                    kind, message = "error", f"{type(err).__name__}: {err}"
                if kind == "error" and any(b in message.lower() for b in BUSY):
                    kind = "busy"
                row = counts.setdefault(action, {"ok": 0, "busy": 0, "error": 0})
                row[kind] += 1
                if kind == "error" and row["error"] <= 3:
                    print(f"error in {action}: {message}", flush=True)
                latency.setdefault(action, []).append(time.perf_counter() - start)

    async def sampler():
        t0 = time.perf_counter()
        while time.perf_counter() < stop_at:
            samples.append((time.perf_counter() - t0, rss_mb(pid), folder_bytes(cache) / 2 ** 20))
            await asyncio.sleep(5)
        samples.append((time.perf_counter() - t0, rss_mb(pid), folder_bytes(cache) / 2 ** 20))

    await asyncio.gather(sampler(), *(client_loop(n) for n in range(clients)))
    # growth = sustained level at the end (median of the last minute) over the level just after warm-up
    # (median of the minute after the first): 5-s samples swing with the pictures being decoded at that moment,
    # so single samples are reported (max) but not used as the level
    warmup, window = min(60.0, seconds / 5), min(60.0, seconds / 5)
    after = [s[1] for s in samples if warmup <= s[0] < warmup + window] or [samples[0][1]]
    last = [s[1] for s in samples if s[0] >= samples[-1][0] - window] or [samples[-1][1]]
    base, end = float(np.median(after)), float(np.median(last))
    return {
        "clients": clients,
        "seconds": seconds,
        "requests": {
            a: {
                **c,
                "p50_ms": round(1000 * statistics.median(latency[a]), 1),
                "p95_ms": round(1000 * float(np.percentile(latency[a], 95)), 1),
            }
            for a, c in counts.items()
        },
        "errors": sum(c["error"] for c in counts.values()),
        "busy": sum(c["busy"] for c in counts.values()),
        "total": sum(sum(v for k, v in c.items()) for c in counts.values()),
        "rss_mb_after_warmup": round(base, 1),
        "rss_mb_end": round(end, 1),
        "rss_mb_max": round(max(s[1] for s in samples), 1),
        "rss_growth_after_warmup": round(end / base - 1, 4),
        "rss_window_s": window,
        "cache_mb_max": round(max(s[2] for s in samples), 1),
        "cache_mb_end": round(samples[-1][2], 1),
        "samples": [[round(t, 1), round(r, 1), round(d, 2)] for t, r, d in samples],
    }


def markdown(result: dict) -> str:
    up, s = result["uploads"], result["soak"]
    lines = [f"Soak on loopback ({result['machine']}, {result['date']}; `{result['command']}`)", "",
             "| figure | target | measured |", "|---|---|---|",
             f"| cache growth after {up['uploads']} distinct {up['upload_mb']} MB uploads, each searched with | "
             f"<= the gallery's own files ({result['gallery_mb']} MB) | {up['cache_growth_mb']} MB "
             f"(peak during the run {up['cache_peak_growth_mb']} MB) |",
             f"| errors in {s['total']:,} requests, {s['clients']} clients x {s['seconds'] / 60:.0f} min | 0 "
             f"(busy refusals documented: {s['busy']}) | {s['errors']} |",
             f"| server RSS growth after warm-up (median of the minute after the first vs of the last minute) | "
             f"<= 10 % | {100 * s['rss_growth_after_warmup']:.1f} % ({s['rss_mb_after_warmup']:.0f} -> "
             f"{s['rss_mb_end']:.0f} MB; highest 5-s sample {s['rss_mb_max']:.0f} MB) |",
             f"| gradio cache folder during the soak | bounded | max {s['cache_mb_max']} MB, end {s['cache_mb_end']} "
             f"MB |",
             "", "| endpoint | ok | busy | errors | p50 ms | p95 ms |", "|---|---|---|---|---|---|"]
    lines += [f"| {a} | {c['ok']} | {c['busy']} | {c['error']} | {c['p50_ms']} | {c['p95_ms']} |"
              for a, c in sorted(s["requests"].items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", default=str(ROOT / "assets" / "demo"))
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--uploads", type=int, default=100)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "soak"))
    args = p.parse_args()
    import tempfile
    bundle = Path(args.bundle).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "gradio"
        proc, url, ready = start_app(bundle, Path(tmp) / "app.log", temp_dir=cache)
        try:
            uploads = asyncio.run(upload_phase(url, cache, args.uploads))
            print("uploads:", uploads, flush=True)
            result = asyncio.run(soak(url, proc.pid, cache, args.clients, args.minutes * 60, bundle))
        finally:
            stop_app(proc)
        log = (Path(tmp) / "app.log").read_text(errors="replace")
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(),
              "command": "python bench/soak.py " + " ".join(sys.argv[1:]), "ready_s": round(ready, 1),
              "gallery_mb": round(folder_bytes(bundle / "gallery" / "images") / 2 ** 20, 1),
              "tracebacks_in_log": log.count("Traceback"), "uploads": uploads, "soak": result}
    result["met"] = {
        "cache": uploads["cache_growth_mb"] <= result["gallery_mb"],
        "errors": result["soak"]["errors"] == 0,
        "rss": result["soak"]["rss_growth_after_warmup"] <= TARGETS["rss_growth_after_warmup"],
    }
    Path(args.out + ".json").write_text(json.dumps(result, indent=1))
    Path(args.out + ".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
