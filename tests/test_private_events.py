"""The page's private events are as hardened as the named endpoints, and the lab has a queue of its own.

The tests run apps of their own (on the small bundle, behind the test as a trusted proxy): the fuzz starts lab runs
with whatever junk happens to be valid, and the lab tests fill the lab on purpose; none may slow the session's shared
app."""
from __future__ import annotations

import json
import statistics
import threading
import time
import uuid

import httpx
import pytest

from harness.event_fuzz import BARE, Tally, fuzz, send

pytestmark = pytest.mark.slow


def proxied_app(small_bundle, folder):
    """(process, url) of an app behind one trusted proxy, the test: X-Forwarded-For names the client."""
    from harness.app_server import start_app
    proc, url, _ = start_app(small_bundle, folder / "app.log",
                             env={"CMR_PROXY_HOPS": "1", "CMR_TRUSTED_PROXIES": "127.0.0.1/32"})
    return proc, url


@pytest.fixture(scope="module")
def own_app(small_bundle, tmp_path_factory):
    """(url, log path) of an app of its own for the fuzz and the flood."""
    from harness.app_server import stop_app
    folder = tmp_path_factory.mktemp("private-events")
    proc, url = proxied_app(small_bundle, folder)
    yield url, folder / "app.log"
    stop_app(proc)


@pytest.fixture(scope="module")
def lab_app(small_bundle, tmp_path_factory):
    """An app of its own whose lab nothing else has used (the fuzz may leave runs training in `own_app`'s): the lab
    tests below count its slots exactly."""
    from harness.app_server import stop_app
    proc, url = proxied_app(small_bundle, tmp_path_factory.mktemp("lab-caps"))
    yield url
    stop_app(proc)


def events_by_name(url: str) -> dict:
    return {e.get("api_name"): i for i, e in enumerate(httpx.get(url + "config").json()["dependencies"])}


def test_fuzzing_every_private_event_gets_the_apps_words_and_no_traceback(own_app):
    """>= 700 junk requests over every event (queued and not), and event indexes that name nothing (-1, 9999, NaN,
    2^70, ...): every answer is ok or a refusal with a message; none bare, no 5xx without one, no traceback."""
    url, log = own_app
    tally = fuzz(url, per_event=6, seed=1, wait_s=5)
    assert tally.sent >= 700
    assert not tally.bare, tally.bare[:3]
    unexpected = {k: n for k, n in tally.outcomes.items() if k not in ("ok", "refused", "no answer")}
    assert not unexpected, (unexpected, tally.messages.most_common(5))
    assert tally.outcomes["refused"] >= 300 and tally.outcomes["ok"] >= 50  # junk refused, some still valid
    assert not any(m in BARE for m in tally.messages)
    assert all(len(m) <= 100 for m in tally.messages)  # (cut by the tally) ...
    text = log.read_text()
    assert "Traceback" not in text, text[text.find("Traceback") - 200:][:3000]
    assert "x" * 400 not in text  # ... and the log never echoes a long input back


def lab_body(index: int, bundle: str) -> dict:
    """A lab run of the page's Train button that trains for seconds at least (1,000 epochs, early stopping after
    the most patience the lab allows)."""
    return {"data": ["pcl", "", 1, 1, 0, 1e-3, 16, 1000, 100, 32, 32, bundle], "fn_index": index,
            "session_hash": uuid.uuid4().hex[:10]}


def stream_answer(url: str, session: str, wait_s: float) -> str | None:
    """The message type that ended `session`'s event stream within `wait_s`, or None."""
    deadline = time.monotonic() + wait_s
    with httpx.stream("GET", url + "gradio_api/queue/data", params={"session_hash": session}, timeout=wait_s) as s:
        for line in s.iter_lines():
            if time.monotonic() > deadline:
                return None
            if line.startswith("data:") and json.loads(line[5:]).get("msg") in ("process_completed", "close_stream"):
                return json.loads(line[5:])["msg"]
    return None


def stop_event(config: dict) -> int:
    """The index of the lab's Stop button's event in the app's `config`."""
    stop_id = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "lab-stop-btn")
    return next(i for i, d in enumerate(config["dependencies"]) if [stop_id, "click"] in d["targets"])


def test_stop_takes_a_waiting_lab_run_out_of_the_queue(lab_app):
    """The Stop button could not remove a run still waiting for its turn: it kept the client's slot until it had
    trained. Now Stop withdraws it at once (its page stops waiting) and the client may start another."""
    url = lab_app
    config = httpx.get(url + "config").json()
    names, stop = {d.get("api_name"): i for i, d in enumerate(config["dependencies"])}, stop_event(config)
    bundle = httpx.get(url + "api/v1/bundles").json()[0]["name"]
    client = {"x-forwarded-for": "10.0.50.1"}
    first, waiting = lab_body(names["lab_page"], bundle), lab_body(names["lab_page"], bundle)
    for body in (first, waiting):  # the second waits behind the first (one run trains at a time)
        assert httpx.post(url + "gradio_api/queue/join", json=body, headers=client, timeout=30).status_code == 200
    third = lab_body(names["lab_page"], bundle)
    assert httpx.post(url + "gradio_api/queue/join", json=third, headers=client, timeout=30).status_code == 422
    r = httpx.post(url + "gradio_api/run/predict", headers=client, timeout=30,
                   json={"data": [], "fn_index": stop, "session_hash": waiting["session_hash"]})
    assert r.status_code == 200 and "taken out of the lab's queue" in r.text, r.text[:300]
    assert stream_answer(url, waiting["session_hash"], 10) == "process_completed"
    # its slot is free again: the same client may start another run
    assert httpx.post(url + "gradio_api/queue/join", json=third, headers=client, timeout=30).status_code == 200
    for body in (first, third):  # leave the lab empty for the tests after this one
        httpx.post(url + "gradio_api/run/predict", headers=client, timeout=30,
                   json={"data": [], "fn_index": stop, "session_hash": body["session_hash"]})


def test_one_network_holds_at_most_four_lab_runs_however_many_addresses_it_uses(lab_app):
    """4 addresses x 2 runs held all 8 lab slots and a fifth visitor was refused: one network (IPv4 /24, IPv6 /64)
    now holds at most 4, and a visitor from elsewhere still gets a run."""
    url = lab_app
    config = httpx.get(url + "config").json()
    names, stop = {d.get("api_name"): i for i, d in enumerate(config["dependencies"])}, stop_event(config)
    bundle = httpx.get(url + "api/v1/bundles").json()[0]["name"]
    tally, bodies = Tally(), []
    with httpx.Client(timeout=30) as client:
        for n in range(8):
            bodies.append(lab_body(names["lab_page"], bundle))
            send(client, url.rstrip("/"), bodies[-1], True, tally, 0, headers={"x-forwarded-for": f"10.0.60.{n // 2}"})
        elsewhere = lab_body(names["lab_page"], bundle)
        send(client, url.rstrip("/"), elsewhere, True, tally, 0, headers={"x-forwarded-for": "10.0.61.1"})
    assert tally.outcomes == {"joined": 5, "refused": 4}, tally
    assert sum(n for m, n in tally.messages.items() if "your network already has 4 lab runs" in m) == 4, tally
    for body in bodies + [elsewhere]:  # leave the lab empty for the tests after this one
        httpx.post(url + "gradio_api/run/predict", timeout=30,
                   json={"data": [], "fn_index": stop, "session_hash": body["session_hash"]})


def test_one_client_queuing_70_lab_runs_holds_two_and_searches_never_wait(own_app):
    """One client asks for 70 lab runs at once: two are queued (one trains), the rest are refused with the app's
    message; meanwhile another user's searches are all answered, quickly; another client still gets a lab run; and
    the lab as a whole holds at most eight."""
    url, _ = own_app
    names = events_by_name(url)
    lab, search = names["lab_page"], names["search_text"]
    bundle = httpx.get(url + "api/v1/bundles").json()[0]["name"]
    flood, searches, times = Tally(), Tally(), []

    def one_client_floods():
        with httpx.Client(timeout=30) as client:
            for _ in range(70):
                send(client, url.rstrip("/"), lab_body(lab, bundle), True, flood, 0,
                     headers={"x-forwarded-for": "10.0.0.1"})

    def another_user_searches():
        with httpx.Client(timeout=30) as client:
            for i in range(20):
                body = {"data": [f"a red star {i}", "pcl", 5, "", False, None, bundle], "fn_index": search,
                        "session_hash": uuid.uuid4().hex[:10]}
                start = time.perf_counter()
                send(client, url.rstrip("/"), body, True, searches, 30, headers={"x-forwarded-for": "10.0.0.2"})
                times.append(time.perf_counter() - start)
    threads = [threading.Thread(target=one_client_floods), threading.Thread(target=another_user_searches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    busy_one = [m for m in flood.messages if "you already have 2 lab runs" in m]
    assert (
        flood.outcomes["joined"] == 2
        and flood.outcomes["refused"] == 68
        and sum(flood.messages[m] for m in busy_one) == 68
    ), flood
    assert searches.outcomes == {"ok": 20}, (searches.outcomes, searches.messages)
    assert statistics.median(times) <= 2.0, times
    # other clients still get lab runs, until the lab holds eight in all
    others = Tally()
    with httpx.Client(timeout=30) as client:
        for n in range(3, 12):  # each from a network of its own (one network holds at most 4)
            send(client, url.rstrip("/"), lab_body(lab, bundle), True, others, 0,
                 headers={"x-forwarded-for": f"10.0.{n}.1"})
    refused = [m for m in others.messages if "the lab is busy" in m]
    assert refused and sum(others.messages[m] for m in refused) == others.outcomes["refused"] >= 1, others
    assert others.outcomes["joined"] >= 1 and others.outcomes["joined"] + 2 <= 8


def test_a_queued_event_cannot_be_run_directly_past_the_queue(own_app):
    """POST /gradio_api/run/<name> of a queued event (the lab, a search) would run it outside the queue and its caps
    (44 such lab calls once held every worker thread): refused, and nothing trains; the queue still answers."""
    url, _ = own_app
    names = events_by_name(url)
    bundle = httpx.get(url + "api/v1/bundles").json()[0]["name"]
    threads_before = httpx.get(url + "api/v1/bundles").status_code
    for name in ("lab_train", "lab_page"):
        body = {**lab_body(names[name], bundle)}
        r = httpx.post(url + f"gradio_api/run/{name}", json=body, timeout=30)
        assert r.status_code == 404 and "queue" in r.text, (name, r.status_code, r.text[:200])
    r = httpx.post(url + "gradio_api/run/search_text", json={"data": ["a red star"], "session_hash": "x"}, timeout=30)
    assert r.status_code == 404
    assert threads_before == httpx.get(url, timeout=10).status_code == 200  # the page is still served
