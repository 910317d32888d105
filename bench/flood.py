"""One client floods the JSON API with large pictures at once: the app's memory, and another user's text search
meanwhile, beside the same search with nobody flooding (measured in the same run).

    python bench/flood.py [--pictures 48] [--side 6300]

Each picture is a distinct side x side PNG of ~130 kB (a flat colour with a few shapes: legal, well under the 20 MB
upload limit, ~120 MB once decoded). Writes bench/results/flood.json and .md.
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from harness.app_server import start_app, stop_app  # noqa: E402
from cmr_demo.provenance import save_result, stamp  # noqa: E402

TARGETS = {"rss_growth_mb": 500.0, "search_p50_s": 1.0}


def picture(side: int, n: int) -> bytes:
    from PIL import Image, ImageDraw
    im = Image.new("RGB", (side, side), (230, 230, 220))
    draw = ImageDraw.Draw(im)
    for k in range(4):  # distinct pictures: nothing can be answered from a cache
        x, y = (n * 97 + k * 1331) % (side - 400), (n * 61 + k * 977) % (side - 400)
        draw.ellipse([x, y, x + 300, y + 300], fill=((n * 40) % 255, 80, 160))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def searches(url: str, stop: threading.Event, out: list[float], tag: str) -> None:
    import httpx
    with httpx.Client(base_url=url + "api/v1/", timeout=120) as client:
        n = 0
        while not stop.is_set():
            start = time.perf_counter()
            client.post("search/text", json={"text": f"a red star number {tag}{n}", "k": 5}).raise_for_status()
            out.append(time.perf_counter() - start)
            n += 1
            time.sleep(0.2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pictures", type=int, default=48)
    p.add_argument("--side", type=int, default=6300)
    args = p.parse_args()
    import httpx
    pictures = [picture(args.side, n) for n in range(args.pictures)]
    proc, url, _ = start_app(ROOT / "assets" / "demo", Path("/tmp/bench-flood.log"))
    try:
        idle, stop = [], threading.Event()
        thread = threading.Thread(target=searches, args=(url, stop, idle, "idle"))
        thread.start()
        time.sleep(6)
        stop.set()
        thread.join()
        before, peak, flood, codes = rss_mb(proc.pid), 0.0, [], []
        stop = threading.Event()
        watcher = threading.Thread(target=searches, args=(url, stop, flood, "flood"))

        def send(data: bytes) -> int:
            with httpx.Client(timeout=600) as client:
                return client.post(url + "api/v1/search/image", files={"file": ("p.png", data, "image/png")},
                                   data={"k": "3"}).status_code
        watcher.start()
        with ThreadPoolExecutor(len(pictures)) as pool:
            futures = [pool.submit(send, d) for d in pictures]
            while not all(f.done() for f in futures):
                peak = max(peak, rss_mb(proc.pid))
                time.sleep(0.05)
            codes = [f.result() for f in futures]
        stop.set()
        watcher.join()
    finally:
        stop_app(proc)
    row = {"pictures": args.pictures, "side": args.side, "png_kb": statistics.mean(len(d) for d in pictures) / 1024,
           "rss_before_mb": before, "rss_peak_mb": peak, "rss_growth_mb": peak - before,
           "answered_200": codes.count(200), "search_p50_idle_s": statistics.median(idle),
           "search_p50_flood_s": statistics.median(flood) if flood else None, "searches_during_flood": len(flood)}
    met = {k: row[k] is not None and row[k] <= v for k, v in
           (("rss_growth_mb", TARGETS["rss_growth_mb"]), ("search_p50_flood_s", TARGETS["search_p50_s"]))}
    body = (f"{row['pictures']} concurrent {row['side']}x{row['side']} PNGs ({row['png_kb']:.0f} kB each) to "
            f"`/api/v1/search/image`, {row['answered_200']} answered 200:\n\n"
            "| figure | measured | nobody flooding (same run) | target |\n|---|---|---|---|\n"
            f"| app RSS growth (peak - before) | {row['rss_growth_mb']:.0f} MB | (before: {row['rss_before_mb']:.0f} "
            f"MB) "
            f"| <= {TARGETS['rss_growth_mb']:.0f} MB: {'met' if met['rss_growth_mb'] else '**missed**'} |\n"
            f"| another user's text search p50 ({row['searches_during_flood']} searches) | "
            f"{row['search_p50_flood_s']:.2f} s | {row['search_p50_idle_s']:.3f} s | <= {TARGETS['search_p50_s']:.0f} "
            f"s: "
            f"{'met' if met['search_p50_flood_s'] else '**missed**'} |")
    print(save_result(ROOT / "bench" / "results" / "flood", {**stamp(["python", "bench/flood.py", *sys.argv[1:]]),
                                                              "row": row, "targets": TARGETS}, body))


if __name__ == "__main__":
    main()
