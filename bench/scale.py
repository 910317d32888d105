"""Galleries of growing size: build time per stage, start-up, search, the first gallery page, maps, memory.

    python bench/scale.py BUNDLE [BUNDLE ...]      (e.g. assets/demo and bundles built from shapes:25000 / :250000)

For each bundle: the build's seconds per stage (recorded in its manifest by `bundle build`), then against
`python app.py --bundle BUNDLE`: seconds until it answers, JSON API text-search p50 / p95 (a new text each
time, one client, once the search indexes are final: HNSW graphs past 15,000 items are built after start-up), the first
page of "Browse the gallery" in headless Chromium (click to thumbnails shown),
one map with a query and a selected item through gradio_client (seconds and JSON size), and the server's
RSS (peak and after). Writes bench/results/scale.json and .md with the targets beside the figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from harness.app_server import start_app, stop_app  # noqa: E402
from cmr_demo.provenance import save_result, stamp  # noqa: E402

TARGETS = {"ready_s": 10.0, "first_page_s": 1.0, "map_s": 1.0, "map_mb": 5.0, "rss_mb": 2048.0, "build_min": 20.0}
QUERIES = ["a red star", "two blue hearts", "a shape with three corners", "a small ring", "an arrow pointing left"]


def rss_mb(pid: int) -> dict:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmHWM", "VmRSS")}


def first_page_s(url: str) -> float:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(url)
        page.locator("#search-item-btn").wait_for()
        start = time.perf_counter()
        page.get_by_text("Browse the gallery").click()
        page.locator("#browse-where").get_by_text("page 1 of", exact=False).wait_for()  # the page's rows arrived
        if page.locator("#browse-gallery").is_visible():  # and, for a bundle with pictures, they are drawn
            page.locator("#browse-gallery .thumbnail-item img").first.wait_for(state="visible")
        took = time.perf_counter() - start
        browser.close()
    return took


def measure(folder: Path, log: Path) -> dict:
    import httpx
    from gradio_client import Client
    manifest = json.loads((folder / "manifest.json").read_text())
    row = {"bundle": folder.name, "items": manifest["data"]["gallery_items"], "data": manifest["data"]["spec"],
           "build_seconds": manifest.get("build_seconds")}
    proc, url, ready = start_app([folder], log, timeout_s=300)
    try:
        row["ready_s"] = ready
        encodes = manifest.get("backbone") is not None
        lat = []
        with httpx.Client(base_url=url + "api/v1/", timeout=120) as http:
            # searches are measured on the index they will use from then on: past 15,000 items the HNSW graphs
            # are built in the background after start-up (exact flat search meanwhile); how long that takes is
            # reported beside the ready time
            start = time.perf_counter()
            while http.get("bundles").json()[0]["index"]["building"]:
                time.sleep(0.5)
            row["index_ready_s"] = ready + time.perf_counter() - start
            row["index"] = http.get("bundles").json()[0]["index"]["kinds"]
            for i in range(60):
                body = {"text": f"{QUERIES[i % len(QUERIES)]} {i}", "k": 10} if encodes else {"id": f"{i}", "k": 10}
                start = time.perf_counter()
                r = http.post("search/text" if encodes else "search/item", json=body)
                lat.append((time.perf_counter() - start) * 1000)
                assert r.status_code == 200, r.text
        row["search_p50_ms"], row["search_p95_ms"] = (
            float(np.percentile(lat[10:], 50)),
            float(np.percentile(lat[10:], 95)),
        )
        row["first_page_s"] = first_page_s(url)
        client = Client(url, verbose=False)
        objective = next(iter(manifest["objectives"]))
        selected = json.loads((folder / "gallery" / "items.jsonl").open().readline())["id"]
        start = time.perf_counter()
        fig = client.predict(objective, QUERIES[0] if encodes else "", [], [], False, 10, selected,
                             api_name="/embedding_map")
        row["map_s"], row["map_mb"] = time.perf_counter() - start, len(fig["plot"]) / 1e6
        row.update({f"{k.lower()}_mb": v for k, v in rss_mb(proc.pid).items()})
    finally:
        stop_app(proc)
    print(row, flush=True)
    return row


def table(rows: list[dict]) -> str:
    t = TARGETS
    lines = ["| gallery items | build (stages, min) | ready | index (ready) | search p50 / p95 | first gallery page "
             "| one map | peak RSS |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        stages = r.get("build_seconds") or {}
        build = (f"{sum(stages.values()) / 60:.1f} min ("
                 + ", ".join(f"{k} {v / 60:.1f}" for k, v in stages.items()) + ")") if stages else "-"
        lines.append(f"| {r['items']:,} (`{r['data']}`) | {build} | {r['ready_s']:.1f} s | {'+'.join(r['index'])} "
                     f"({r['index_ready_s']:.1f} s) | {r['search_p50_ms']:.1f} / "
                     f"{r['search_p95_ms']:.1f} ms | {r['first_page_s']:.2f} s | {r['map_s']:.2f} s, {r['map_mb']:.2f} "
                     f"MB | "
                     f"{r['vmhwm_mb']:,.0f} MB |")
    big = max(rows, key=lambda r: r["items"])
    stages = big.get("build_seconds") or {}
    verdicts = [("ready", big["ready_s"] <= t["ready_s"], f"{big['ready_s']:.1f} s (<= {t['ready_s']:.0f} s)"),
                ("first page", big["first_page_s"] <= t["first_page_s"], f"{big['first_page_s']:.2f} s (<= 1 s)"),
                ("map", big["map_s"] <= t["map_s"] and big["map_mb"] <= t["map_mb"],
                 f"{big['map_s']:.2f} s, {big['map_mb']:.2f} MB (<= 1 s, <= 5 MB)"),
                ("RSS", big["vmhwm_mb"] <= t["rss_mb"], f"{big['vmhwm_mb']:,.0f} MB (<= 2 GB)")]
    if stages:
        verdicts.append(("build", sum(stages.values()) / 60 <= t["build_min"],
                         f"{sum(stages.values()) / 60:.1f} min (<= 20 min)"))
    lines += ["", f"At {big['items']:,} items: " + "; ".join(f"{name} {text} {'met' if ok else '**missed**'}"
                                                            for name, ok, text in verdicts) + "."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundles", nargs="+")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "scale"))
    args = p.parse_args()
    rows = [measure(Path(b), Path(args.out + f".{Path(b).name}.log")) for b in args.bundles]
    result = {**stamp(["python", "bench/scale.py", *sys.argv[1:]]), "rows": rows}
    print(save_result(args.out, result, table(rows)))


if __name__ == "__main__":
    main()
