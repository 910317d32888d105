"""Each click as a visitor feels it, beside gradio's own floor measured in the same run.

    python bench/clicks.py [--runs 3] [--busy 4] [--only search compare ...]

Starts the app as shipped (`python app.py`: every bundle in assets/, the default first) and a one-button gradio app
(the floor: a click that writes one text, gradio's own minimal round trip, served the same way), drives headless
Chromium at 1366x768 through each click and times it from the click until its final answer is on the page
(pictures loaded, the plot drawn) and no request of the page is pending (network watched by the browser's own
timings); medians of --runs, each run a held-out query. Then the same clicks while --busy other visitors run Compare
back to back (gradio_client sessions in threads: their browsers would otherwise share these 2 cores with the one
measured). Apart from the page: `POST /api/v1/map` (ap_diff) as the first request after a fresh app answers, and
searches asking for k = 1e9 through both APIs. Writes bench/results/clicks.json and .md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from harness.app_server import free_port, start_app, stop_app  # noqa: E402
from cmr_demo.provenance import machine  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]
# the targets, seconds (quiet; busy: while --busy visitors run Compare back to back)
TARGETS = {"search": (0.15, 0.5), "compare": (0.3, 0.6), "first_map": (0.5, None), "colour": (0.25, None)}
# held-out queries: none is an example of the app's default bundle
QUERIES = ["a yellow hexagon", "two green stars", "a small blue heart", "a red cross in the corner",
           "three yellow rings", "a big green crescent", "a blue arrow", "a red pentagon on stripes",
           "one yellow square"]
SETTLE_S = 0.25  # no request of the page for this long after the answer: nothing else was chained to the click
FLOOR_APP = '''
import sys, gradio as gr
with gr.Blocks() as demo:
    n = gr.Number(0, visible=False)
    out = gr.Textbox(elem_id="out")
    btn = gr.Button("go", elem_id="go")
    btn.click(lambda k: (k + 1, f"answer {int(k) + 1}"), n, [n, out])
demo.launch(server_port=int(sys.argv[1]), show_error=False)
'''


class Watch:
    """The page's requests to the app (its API, files and media), as the browser timed them."""

    def __init__(self, page):
        self.pending, self.ends = {}, []
        page.on("request", self._start)
        page.on("requestfinished", self._end)
        page.on("requestfailed", self._end)

    @staticmethod
    def _tracked(url: str) -> bool:
        return ("/gradio_api/" in url or "/media/" in url or "/file=" in url) and "heartbeat" not in url

    def _start(self, request) -> None:
        if self._tracked(request.url):
            self.pending[request] = time.time()

    def _end(self, request) -> None:
        if self.pending.pop(request, None) is None:
            return
        timing = request.timing
        ended = timing["startTime"] + timing["responseEnd"] if timing.get("responseEnd", -1) >= 0 else 1e3 * time.time()
        self.ends.append(ended)

    def settle(self, page, timeout_s: float = 60.0) -> None:
        """Until no tracked request is pending, and none started, for SETTLE_S."""
        quiet_since, start = None, time.time()
        while time.time() - start < timeout_s:
            page.wait_for_timeout(20)
            if self.pending:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.time()
            elif time.time() - quiet_since >= SETTLE_S:
                return
        raise TimeoutError(f"still pending after {timeout_s} s: {[r.url for r in self.pending]}")


CLICK = """(sel) => { const t = Date.now(); document.querySelector(sel).click(); return t; }"""
CLICK_TAB = """(name) => { const t = Date.now();
  [...document.querySelectorAll('[role=tab]')].find((b) => b.innerText.trim() === name).click(); return t; }"""
CLICK_RADIO = """(label) => { const t = Date.now();
  [...document.querySelectorAll('#map-colour-by label')].find((l) => l.innerText.trim() === label).click();
  return t; }"""
PICTURES_IN = """(sel) => { const imgs = [...document.querySelectorAll(sel)];
  return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0); }"""
SEARCHED = """(q) => document.querySelector('#search-summary').innerText.includes(q) &&
  (%s)('#results-gallery img') && document.querySelectorAll('#results-gallery img').length >= 12""" % PICTURES_IN
COMPARED = """(q) => document.querySelector('#compare-notice').innerText.includes(q) &&
  (%s)('#compare-columns img')""" % PICTURES_IN
# the map drawn, coloured as asked: the figure says its colouring in layout.meta.colour_by
MAPPED = """(by) => { const p = document.querySelector('#map-plot .js-plotly-plot');
  return !!(p && p._fullLayout && p.querySelector('.main-svg') && p.layout && p.layout.meta &&
            p.layout.meta.colour_by === by); }"""
COLOURS = [("AP as a query", "ap"), ("modality", "modality"), ("class", "class")]


def new_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    watch = Watch(page)
    page.goto(url)
    page.wait_for_selector("#search-text-btn", timeout=60_000)
    watch.settle(page)
    return page, watch


def timed(page, watch: Watch, click_js: str, click_arg, done_js: str, done_arg) -> float:
    """Seconds from a click (made by `click_js(click_arg)` in the page, which returns the browser's time of it) until
    `done_js(done_arg)` holds and every request started since has ended."""
    watch.settle(page)
    watch.ends.clear()
    t0 = page.evaluate(click_js, click_arg)
    done = page.wait_for_function(f"(arg) => ({done_js})(arg) && Date.now()", arg=done_arg, polling="raf",
                                  timeout=60_000).json_value()
    watch.settle(page)
    return (max([done, *watch.ends]) - t0) / 1e3


def app_clicks(browser, url: str, runs: int, only: set[str], offset: int) -> dict:
    """{click: [seconds per run]} on the shipped app, each run with another held-out query."""
    out = {name: [] for name in TARGETS if name in only}
    page, watch = new_page(browser, url)
    for n in range(runs if "search" in out else 0):
        q = QUERIES[(offset + n) % len(QUERIES)]
        page.fill("#text-query textarea, #text-query input", q)
        out["search"].append(timed(page, watch, CLICK, "#search-text-btn", SEARCHED, q))
    if "compare" in out:
        page.evaluate(CLICK_TAB, "Compare")  # the tab arrives filled: wait for that first
        page.wait_for_function("() => document.querySelector('#compare-notice').innerText.length > 0 && "
                               f"({PICTURES_IN})('#compare-columns img')", timeout=60_000)
        box = page.get_by_label("Text query").nth(1)
        for n in range(runs):
            q = QUERIES[(offset + n + 4) % len(QUERIES)]
            box.fill(q)
            out["compare"].append(timed(page, watch, CLICK, "#compare-btn", COMPARED, q))
    if "first_map" in out or "colour" in out:
        for n in range(runs if "first_map" in out else 1):  # a fresh page each time: the tab's first map
            page.close()
            page, watch = new_page(browser, url)
            t = timed(page, watch, CLICK_TAB, "Map", MAPPED, "class")
            if "first_map" in out:
                out["first_map"].append(t)
        for n in range(runs if "colour" in out else 0):
            for label, by in COLOURS:
                out["colour"].append(timed(page, watch, CLICK_RADIO, label, MAPPED, by))
    page.close()
    return out


def floor_clicks(browser, url: str, runs: int) -> list[float]:
    """gradio's own minimal round trip: a one-button app writing one text."""
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    watch = Watch(page)
    page.goto(url)
    page.wait_for_selector("#go")
    out = []
    for n in range(runs):
        out.append(timed(page, watch, CLICK, "#go", """(want) => {
          const box = document.querySelector('#out textarea, #out input'); return box && box.value === want; }""",
                         f"answer {n + 1}"))
    page.close()
    return out


class Busy:
    """`n` visitors running Compare back to back (gradio_client sessions in threads) until stopped."""

    def __init__(self, url: str, n: int):
        self.url, self.n, self.stop, self.done = url, n, threading.Event(), 0
        self.threads = [threading.Thread(target=self._visit, args=(i,), daemon=True) for i in range(n)]

    def _visit(self, i: int) -> None:
        from gradio_client import Client
        client = Client(self.url, verbose=False, download_files=False)
        while not self.stop.is_set():
            client.predict(QUERIES[(i + self.done) % len(QUERIES)], [], 6, api_name="/compare")
            self.done += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        time.sleep(3.0)  # every visitor connected and comparing
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def api_checks(url: str) -> dict:
    """Seconds for requests outside the page: the JSON API's ap_diff map and k = 1e9 through both APIs."""
    from gradio_client import Client
    out = {}
    start = time.perf_counter()
    r = httpx.post(url + "api/v1/map", json={"color_by": "ap_diff"}, timeout=120)
    out["api_map_first_s"] = time.perf_counter() - start
    assert r.status_code == 200, r.text[:300]
    start = time.perf_counter()
    httpx.post(url + "api/v1/map", json={"color_by": "ap_diff"}, timeout=120).raise_for_status()
    out["api_map_next_s"] = time.perf_counter() - start
    start = time.perf_counter()
    r = httpx.post(url + "api/v1/search/text", json={"text": "a blue star", "k": 10 ** 9}, timeout=120)
    out["api_search_huge_k_s"], out["api_search_huge_k_status"] = time.perf_counter() - start, r.status_code
    client = Client(url, verbose=False, download_files=False)
    start = time.perf_counter()
    try:
        client.predict("a blue star", "", 10 ** 9, api_name="/search_text")
        out["page_search_huge_k"] = "answered"
    except Exception as err:  # noqa: BLE001 - an answer that refuses is an answer: its message is kept
        out["page_search_huge_k"] = str(err)[:200]
    out["page_search_huge_k_s"] = time.perf_counter() - start
    return out


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--busy", type=int, default=4)
    p.add_argument("--only", nargs="*", default=list(TARGETS))
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "clicks"))
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright
    tmp = Path(tempfile.mkdtemp(prefix="clicks-"))
    proc, url, ready_s = start_app([ROOT / "assets"], tmp / "app.log")
    floor_port = free_port()
    (tmp / "floor.py").write_text(FLOOR_APP)
    import subprocess
    floor = subprocess.Popen([sys.executable, str(tmp / "floor.py"), str(floor_port)], cwd=tmp,
                             stdout=open(tmp / "floor.log", "wb"), stderr=subprocess.STDOUT)
    floor_url = f"http://127.0.0.1:{floor_port}/"
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "command": " ".join(
        ["python", "bench/clicks.py", *(argv if argv is not None else sys.argv[1:])]), "runs": args.runs,
        "busy_visitors": args.busy, "ready_s": ready_s}
    try:
        result["api"] = api_checks(url)  # first: the map request is the first after the app answers
        for _ in range(300):
            try:
                httpx.get(floor_url, timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            only = set(args.only)
            floor_quiet = floor_clicks(browser, floor_url, args.runs)
            quiet = app_clicks(browser, url, args.runs, only, 0)
            with Busy(url, args.busy) as busy:
                floor_busy = floor_clicks(browser, floor_url, args.runs)
                loaded = app_clicks(browser, url, args.runs, only & {"search", "compare"}, 5)
            result["busy_compares"] = busy.done
            browser.close()
    finally:
        stop_app(proc)
        floor.terminate()
    result["floor"] = {"quiet": floor_quiet, "busy": floor_busy}
    result["clicks"] = {name: {"quiet": quiet.get(name, []), "busy": loaded.get(name, [])} for name in quiet}
    write(result, Path(args.out))
    return result


LABELS = {"search": "Search (text)", "compare": "Compare, every objective", "first_map": "the map tab's first map",
          "colour": "a change of the map's colouring"}


def table(result: dict) -> str:
    fq, fb = median(result["floor"]["quiet"]), median(result["floor"]["busy"])
    lines = [f"gradio's floor (a one-button app writing one text, same browser, same run): {fq:.3f} s quiet, "
             f"{fb:.3f} s while the visitors compare.", "",
             "| click | quiet | target | x floor | busy | target |", "|---|---|---|---|---|---|"]
    for name, r in result["clicks"].items():
        q, b = median(r["quiet"]), median(r["busy"])
        tq, tb = TARGETS[name]
        lines.append(f"| {LABELS[name]} | {q:.3f} s{verdict(q, tq)} | <= {tq} s | {q / fq:.1f}x | "
                     + (f"{b:.3f} s{verdict(b, tb)} | <= {tb} s |" if b is not None else "- | - |"))
    a = result["api"]
    lines += ["", f"Outside the page: `POST /api/v1/map` (ap_diff) as the first request after the app answered "
              f"{a['api_map_first_s']:.2f} s (target <= 1 s), the next {a['api_map_next_s']:.3f} s; k = 1e9: JSON API "
              f"{a['api_search_huge_k_s']:.3f} s (HTTP {a['api_search_huge_k_status']}), `/search_text` "
              f"{a['page_search_huge_k_s']:.3f} s ({a['page_search_huge_k']}); target <= 1 s. Busy: "
              f"{result['busy_visitors']} gradio_client sessions ran {result['busy_compares']} comparisons meanwhile."]
    return "\n".join(lines)


def verdict(value: float | None, target: float | None) -> str:
    return "" if value is None or target is None else (" ✅" if value <= target else " ❌")


def write(result: dict, out: Path) -> None:
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    head = (f"*{result['date']}, {result['machine']}; `{result['command']}`*\n\nMedians of {result['runs']} "
            f"held-out clicks, headless Chromium at 1366x768, from the click until the answer is on the page (pictures "
            f"loaded, the plot drawn) and no request of the page is pending; the app as shipped (`python app.py`), "
            f"ready after {result['ready_s']:.1f} s (its backbones loaded).\n\n")
    out.with_suffix(".md").write_text(head + table(result) + "\n")
    print(head + table(result))


if __name__ == "__main__":
    main()
