"""Hostile requests against the running app (`python app.py`, via gradio_client): answers, never crashes.

Every named endpoint gets each of its arguments replaced, one at a time, by something hostile: empty,
100k-character, NUL, control, emoji, bidi and markup texts; broken, bomb, strip and unusual images;
k of 0, -1, 10**9, 2.5, "abc", None; unknown and path-like objective names; lists where strings
belong and the other way round. Each request must come back within 5 s, with a result or with an
error message (never a traceback); afterwards normal queries still work, and the server log holds
no exception from the app's own code (user errors are not logged as tracebacks).
"""
import io
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from test_inputs import bomb_png

gradio_client = pytest.importorskip("gradio_client")

# no request may hang: each must be answered well within this (a hostile request that makes the app work for
# long, e.g. k=1e9, is clamped at once). Generous on purpose: on this shared 2-core machine a normal request
# queued behind three others has taken 5 s while imports ran 2x slower than usual; a hang takes forever.
LIMIT_S = 20.0
WORKERS = 4  # the app serves 4 at a time (app.CONCURRENCY); more would only measure queueing
# one gradio_client.Client per worker thread: jobs of one Client shared by threads were seen to end in
# CancelledError on the client side while the server had answered
VALID = {"/search_text": ("a red star", "pcl", 5, "star", False),
         "/search_image": (None, "pcl", 5, "", False),  # the image is filled in per test
         "/compare": ("two hearts", ["pcl", "ce"], 3, "heart", "", "image"),
         "/embedding_map": ("pcl", "a star", ["ce"], [], True, 5, "", "class", "", ""),
         "/disagreements": ("pcl", "ce", "t2i"),
         "/search_item": ("3", "image", "pcl", 5, False),
         "/lab_train": ("ce", "", 1.0, 1.0, 0)}

TEXTS = ["", "   ", "\t\n\r", "x" * 100_000, "star " * 20_000, "\x00", "a\x00red\x00star",
         "".join(map(chr, range(32))), "🎉⭐💥" * 30, "👨‍👩‍👧‍👦 star", "\u202ea red star\u202c", "\u200f\u200e\u200b",
         "\ud800 star \udfff",
         "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "[x](javascript:alert(1)) **b** `c`",
         "{{7*7}} ${7*7} %s %n", "'; DROP TABLE items; --", "../../etc/passwd", None, 5, ["a", "star"], {"q": 1}]
KS = [0, -1, 10 ** 9, 2.5, "abc", None, True, float("nan"), float("inf"), [3], {"k": 3}, 10 ** 30, -10 ** 9]
OBJECTIVES = ["", "nope", "../../etc/passwd", "/etc/passwd", "PCL", "pcl\x00", " pcl", None, 5, ["pcl"], {"o": 1},
              "pcl+0.5*tl/../../x"]
CLASSES = ["dragon", "../x", "STAR", " star ", None, 3, ["star"], "\x00", "x" * 10_000]
BOOLS = ["yes", None, 5, [], "true"]
OBJECTIVE_LISTS = [[], None, "pcl", ["nope"], ["pcl", "pcl"], [5], [None], ["../../etc/passwd"], 5, {"pcl": 1},
                   ["pcl"] * 100]
CLASS_LISTS = ["star", [1], ["dragon"], None, [None], ["star"] * 100]
ITEM_IDS = ["no-such-id", "99999", "-1", "0", "  ", 12345, ["x"], None, "9" * 5000, "../../etc/passwd", "\x00",
            "<script>alert(1)</script>"]
MODALITIES = ["audio", None, "", 5, "IMAGE", ["image"]]
DIRECTIONS = ["sideways", None, 5, "", "avg", ["t2i"], "T2I"]
OPTIONS = ["margn=1", "scale", "scale=nan", "scale=1e309", "=", ",,,", None, 5, ["scale=2"], "scale=2," * 2000,
           "<script>=1"]
FRACTIONS = [0, -1, 2, "abc", None, float("nan"), float("inf"), [0.5], True, "0.5"]
SEEDS = [-1, 2 ** 40, "abc", None, 1.5, float("nan"), True]
BUNDLES = ["nope", None, 5, ["b"], "../../etc/passwd", " b", "B", {"b": 1}]
SELECTIONS = ["", "[]", "not json", '[["shapes-00001", "image"]]', '[["x", "image"]]', '[[1, 2]]', "[" * 5000,
              '{"a": 1}', None, 7, ["shapes-00001", "image"], '[["x", []]]', '[["x", {}]]']
PARAMETER_VALUES = {"query": TEXTS, "objective": OBJECTIVES, "k": KS, "query_class": CLASSES, "same_modality": BOOLS,
                    "objectives": OBJECTIVE_LISTS, "item_id": ITEM_IDS, "item_modality": MODALITIES,
                    "others": OBJECTIVE_LISTS, "classes": CLASS_LISTS, "lines": BOOLS, "selected": ITEM_IDS,
                    "a": OBJECTIVES, "b": OBJECTIVES, "direction": DIRECTIONS, "modality": MODALITIES,
                    "options": OPTIONS, "text_fraction": FRACTIONS, "image_fraction": FRACTIONS, "seed": SEEDS,
                    "colour_by": ["ap", "rank", "AP", "colour", None, 3, ["ap"], "../ap"],
                    "other": OBJECTIVES, "selection": SELECTIONS}
PARAMETERS = {"/search_text": ["query", "objective", "k", "query_class", "same_modality"],
              "/search_image": ["image", "objective", "k", "query_class", "same_modality"],
              "/compare": ["query", "objectives", "k", "query_class", "item_id", "item_modality"],
              "/embedding_map": ["objective", "query", "others", "classes", "lines", "k", "selected", "colour_by",
                                 "other", "selection"],
              "/disagreements": ["a", "b", "direction"],
              "/search_item": ["item_id", "modality", "objective", "k", "same_modality"],
              "/lab_train": ["objective", "options", "text_fraction", "image_fraction", "seed"]}
GENERIC = "has not enabled verbose error reporting"  # gradio's words for an error it does not show (show_error=False)
BY_GRADIO = re.compile(r"not in the list of choices|less than minimum|greater than maximum|Value .* is")


def encoded(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def hostile_images() -> dict[str, bytes]:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    frames = [Image.new("P", (16, 16), c) for c in (1, 2, 3)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    ramp16 = Image.fromarray(np.arange(0, 65536, 256, dtype=np.uint16).reshape(16, 16))
    return {"empty.png": b"", "text.png": b"this is not an image at all", "script.png": b"<script>alert(1)</script>",
            "random.png": np.random.default_rng(0).bytes(4096),
            "truncated.png": encoded(Image.new("RGB", (64, 64), "red"))[:60],
            "truncated.jpg": encoded(Image.new("RGB", (64, 64), "red"), "JPEG")[:200],
            "one.png": encoded(Image.new("RGB", (1, 1), "white")), "bomb.png": bomb_png(100_000, 100_000),
            "bomb8000.png": bomb_png(8_000, 8_000), "strip.png": encoded(Image.new("L", (1, 200_000), 128)),
            "animated.gif": gif.getvalue(), "cmyk.jpg": encoded(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"),
            "sixteen.png": encoded(ramp16), "palette.png": encoded(Image.new("P", (8, 8), 3), transparency=3),
            "la.png": encoded(Image.new("LA", (8, 8), (100, 0))), "clear.png": encoded(Image.new("RGBA", (8, 8))),
            "exif.jpg": encoded(Image.new("RGB", (40, 20), "blue"), "JPEG", exif=exif.tobytes()),
            "huge.png": b"\x89PNG\r\n\x1a\n" + bytes(20 * 2 ** 20)}  # over the 20 MB limit


@pytest.fixture(scope="module")
def client(app_url):
    return gradio_client.Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> dict[str, str]:
    """Each hostile image twice: under its own name (gradio's Image component opens it first) and as
    .svg (which gradio hands over unopened, so the app's own checks meet the bytes)."""
    folder = tmp_path_factory.mktemp("hostile-images")
    files = {}
    for name, data in hostile_images().items():
        for path in (folder / name, folder / (name.rsplit(".", 1)[0] + ".svg")):
            path.write_bytes(data)
            files[path.name if path.suffix == ".svg" else name] = str(path)
    return files


def hostile_requests(image_files: dict[str, str], server_image: str) -> list[tuple[str, tuple, str]]:
    """(endpoint, arguments, label): valid arguments with one of them replaced by something hostile."""
    valid_image = gradio_client.handle_file(image_files["one.png"])
    out = []
    for endpoint, names in PARAMETERS.items():
        base = list(VALID[endpoint])
        if endpoint == "/search_image":
            base[0] = valid_image
        for n, name in enumerate(names):
            if name == "image":
                values = [gradio_client.handle_file(p) for p in image_files.values()]
                values += [None, "not-a-file", {"path": "/etc/passwd"}, {"path": "../../app.py", "url": None}, 5,
                           ["a"], {"path": server_image}]  # a server file nobody uploaded
            else:
                values = PARAMETER_VALUES[name]
            for value in values:
                args = list(base)
                args[n] = value
                out.append((endpoint, tuple(args), f"{endpoint} {name}={str(value)[:40]!r}"))
        for bundle in BUNDLES:  # every endpoint's last, optional parameter
            out.append((endpoint, (*base, bundle), f"{endpoint} bundle={str(bundle)[:40]!r}"))
    return out


def send(clients: threading.local, url: str, endpoint: str, args: tuple) -> tuple[str, str, float]:
    """(outcome, message, seconds): 'ok', 'app message', 'gradio check', 'gradio generic' or 'client'."""
    if not hasattr(clients, "client"):
        clients.client = gradio_client.Client(url, verbose=False)
    client = clients.client
    start = time.perf_counter()
    try:
        result = client.submit(*args, api_name=endpoint).result(timeout=LIMIT_S + 5)
    except TimeoutError:
        return "timeout", "", time.perf_counter() - start
    except Exception as err:  # noqa: BLE001  (the kind is what we count)
        message = str(err)
        if type(err).__name__ == "ValidationError" and message.strip():  # refused at the queue's door, e.g. the
            kind = "app message"  # lab's cap per client (concurrent lab runs from this one client)
        elif type(err).__name__ != "AppError":
            kind = "client"
        elif GENERIC in message:
            kind = "gradio generic"
        elif BY_GRADIO.search(message):
            kind = "gradio check"
        else:
            kind = "app message"
        return kind, f"{type(err).__name__}: {message}", time.perf_counter() - start
    assert "root:x:0:0" not in str(result) and "import gradio" not in str(result)  # no server file leaked
    return "ok", "", time.perf_counter() - start


def test_hostile_requests_get_answers_not_crashes(app_url, image_files, app_log, small_bundle, capsys):
    server_image = str(small_bundle / "gallery" / "images" / "00003.png")
    requests = hostile_requests(image_files, server_image)
    assert len(requests) >= 200
    log_start = app_log.stat().st_size
    start = time.perf_counter()
    clients = threading.local()
    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(pool.map(lambda r: send(clients, app_url, r[0], r[1]), requests))
    took = time.perf_counter() - start

    counts = Counter(kind for kind, _, _ in outcomes)
    slow = [(label, round(s, 1)) for (_, _, label), (_, _, s) in zip(requests, outcomes) if s >= LIMIT_S]
    with capsys.disabled():
        print(f"\n{len(requests)} hostile requests in {took:.1f} s (slowest {max(s for *_, s in outcomes):.2f} s): "
              f"{dict(counts)}")
    assert not slow, slow
    assert counts["timeout"] == 0
    for (_, _, label), (kind, message, _) in zip(requests, outcomes):
        assert "Traceback" not in message and 'File "' not in message, (label, message[:2000])
        assert "failed inside the app" not in message, (label, message)  # app.user_errors' catch-all: a bug
        if kind == "app message":
            assert 0 < len(message) < 700, (label, message[:1000])
        if kind == "client":  # what gradio_client cannot put into JSON (lone surrogates, NaN, inf), and files
            # over the app's limit, which it refuses to send (it reads max_file_size from the app's config)
            assert re.search(r"surrogates not allowed|not JSON compliant|exceeds the maximum file size", message), \
                (label, message[:1000])
    assert counts["ok"] > 0 and counts["app message"] > 50
    # every refusal is the app's own: public endpoints take raw values and check them (issue 14)
    assert counts["gradio generic"] == 0 and counts["gradio check"] == 0, counts
    named = [kind for (_, args, _), (kind, _, _) in zip(requests, outcomes) if args[0] == {"path": server_image}]
    assert named == ["app message"]  # a server path named by the client is not searched with

    # the app's own code raised nothing unexpected, and user errors are not logged as tracebacks
    log = app_log.read_bytes()[log_start:].decode(errors="replace")
    assert "request failed in" not in log, log[log.index("request failed in"):][:3000]
    tracebacks = log.split("Traceback (most recent call last):")[1:]
    assert not tracebacks, tracebacks[0][:3000]  # a user error is never a traceback, in our code or gradio's


def test_unusual_images_are_read_by_the_app_as_by_the_service(client, image_files, small_bundle):
    """The upload path (gradio's Image component, then app.py) gives the same ranking as the service on the
    same file: 16-bit, transparent and palette images reach the app's own conversion, not a lossy one."""
    from cmr_demo.bundle.load import load_bundle
    from cmr_demo.serve.service import RetrievalService
    service = RetrievalService(load_bundle(small_bundle))
    for name in ["sixteen.png", "la.png", "clear.png", "palette.png", "cmyk.jpg", "exif.jpg", "animated.gif",
                 "strip.png"]:
        _, table, _ = client.predict(gradio_client.handle_file(image_files[name]), "pcl", 10,
                                     api_name="/search_image")
        expected = service.search(service.image_query(image_files[name]), "pcl", 10)
        assert [row[-1] for row in table["data"]] == [h.id for h in expected.hits], name


def test_normal_queries_still_work_after_the_barrage(client, image_files, small_bundle):
    gallery, _, summary = client.predict("a red star", "pcl", 5, "star", api_name="/search_text")
    assert len(gallery) == 5 and "AP" in summary
    image = gradio_client.handle_file(str(small_bundle / "gallery" / "images" / "00003.png"))
    _, table, _ = client.predict(image, "ce", 4, api_name="/search_image")
    assert len(table["data"]) == 4
    out = client.predict("two hearts", ["pcl", "ce"], 3, "heart", "", "image", api_name="/compare")
    assert list(out) == ["pcl", "ce"] and all(len(r["hits"]) == 3 for r in out.values())
    plot = client.predict("pcl", "a star", ["ce"], [], True, 5, "", api_name="/embedding_map")
    assert plot["type"] == "plotly"
    rows = client.predict("pcl", "ce", "t2i", api_name="/disagreements")
    assert len(rows["data"]) > 0
