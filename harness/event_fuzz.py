"""Fuzz every event of a running app through gradio's private routes (the ones its page uses): `/queue/join` plus
the event stream for queued events, `/run/predict` for the rest, with junk of every JSON type in the inputs, the
event data and the trigger id, and with event indexes that name nothing.

    python -m harness.event_fuzz URL [SENDS_PER_EVENT]

Each answer is tallied: ok, refused with a message (the message counted), refused bare (no message, or just
"Error": what the issue calls a bare Error), or no answer within the wait (a lab run that trains). Used by
tests/test_private_events.py and bench/soak.py."""
from __future__ import annotations

import json
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

BARE = {None, "", "Error", "error"}
BAD_INDEXES = [-1, 9999, float("nan"), "x", 2 ** 70, 1e308, None, [1], True]


def junk(rng: random.Random, depth: int = 0):
    """One value of any JSON type, hostile ones over-represented."""
    kinds = [lambda: rng.randint(-10, 10), lambda: 2 ** 70, lambda: -2 ** 70, lambda: 1e308, lambda: -0.0,
             lambda: float("nan"), lambda: float("inf"), lambda: "", lambda: "x" * rng.randint(1, 5000),
             lambda: "<img src=http://127.0.0.1:9/x>", lambda: "٣", lambda: "１２", lambda: "NaN", lambda: "\x00",
             lambda: "../../../../etc/passwd", lambda: None, lambda: True,
             lambda: {"path": "/etc/passwd"}, lambda: {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}},
             lambda: {"url": "http://127.0.0.1:9/x"}, lambda: [], lambda: {}, lambda: {"index": 2 ** 70, "value": None},
             lambda: [junk(rng, depth + 1) for _ in range(3)] if depth < 2 else 1,
             lambda: {"a": junk(rng, depth + 1)} if depth < 2 else 2]
    return rng.choice(kinds)()


@dataclass
class Tally:
    sent: int = 0
    outcomes: Counter = field(default_factory=Counter)  # "ok", "refused", "bare", "no answer", "HTTP <code>", ...
    messages: Counter = field(default_factory=Counter)
    bare: list = field(default_factory=list)  # the bodies that got a bare refusal

    def add(self, outcome: str, message=None, body=None) -> None:
        self.outcomes[outcome] += 1
        if message is not None:
            self.messages[str(message)[:100]] += 1
        if outcome == "bare":
            self.bare.append(body)


def body_for(rng: random.Random, index, inputs: int) -> dict:
    data = [junk(rng) for _ in range(max(0, inputs + rng.choice([0, 0, 0, -1, 1])))]
    return {"data": data, "fn_index": index, "session_hash": uuid.uuid4().hex[:10],
            "trigger_id": rng.choice([None] * 8 + [1, -5, 2 ** 70, "x"]),
            "event_data": rng.choice([None, junk(rng), {"index": 2 ** 70}, {"index": [1, 2], "value": "x"}])}


def refusal(response: httpx.Response) -> str | None:
    try:
        answer = response.json()
    except ValueError:
        return response.text[:200] or None
    if isinstance(answer, dict):
        told = answer.get("error") or answer.get("detail")
        if isinstance(told, list):  # gradio's validation answer (422): one message per input
            told = " ".join(str(v.get("message")) for v in told if isinstance(v, dict) and v.get("message")) or None
        return told
    return str(answer)


def send(client: httpx.Client, url: str, body: dict, queued: bool, tally: Tally, wait_s: float,
         headers: dict | None = None) -> None:
    """One event request and its answer, tallied."""
    tally.sent += 1
    route = "/gradio_api/queue/join" if queued else "/gradio_api/run/predict"
    try:
        r = client.post(url + route, content=json.dumps(body),
                        headers={"content-type": "application/json", **(headers or {})})
    except httpx.HTTPError as err:
        return tally.add(f"connection {type(err).__name__}")
    if r.status_code != 200:
        message = refusal(r)
        # 503 is the queue's "busy" (with the app's message); /run/predict answers any failed event with 500
        told = r.status_code < 500 or r.status_code == 503 or not queued
        outcome = "bare" if message in BARE else "refused" if told else f"HTTP {r.status_code}"
        return tally.add(outcome, message, body)
    if not queued:
        return tally.add("ok")
    if wait_s <= 0:  # a client that never listens for its answer (its event still waits in the queue)
        return tally.add("joined")
    deadline = time.monotonic() + wait_s
    with client.stream("GET", url + "/gradio_api/queue/data", params={"session_hash": body["session_hash"]}) as s:
        for line in s.iter_lines():
            if time.monotonic() > deadline:
                return tally.add("no answer")
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("msg") == "process_completed":
                if message.get("success"):
                    return tally.add("ok")
                error = (message.get("output") or {}).get("error")
                return tally.add("bare" if error in BARE else "refused", error, body)
            if message.get("msg") in ("close_stream", "unexpected_error"):
                return tally.add("bare" if not message.get("message") else "refused", message.get("message"), body)
    tally.add("no answer")


def fuzz(url: str, per_event: int = 6, seed: int = 0, wait_s: float = 10.0) -> Tally:
    """Send `per_event` junk requests to every event of the app at `url`, then the bad indexes to both routes."""
    url, rng, tally = url.rstrip("/"), random.Random(seed), Tally()
    with httpx.Client(timeout=30) as client:
        events = client.get(url + "/config").json()["dependencies"]
        for index, event in enumerate(events):
            for _ in range(per_event):
                send(client, url, body_for(rng, index, len(event["inputs"])), event.get("queue") is not False,
                     tally, wait_s)
        for index in BAD_INDEXES:
            for queued in (True, False):
                send(client, url, {"data": [], "fn_index": index, "session_hash": "fuzz"}, queued, tally, wait_s)
    return tally


if __name__ == "__main__":
    start = time.perf_counter()
    result = fuzz(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 6)
    print(f"{result.sent} sends in {time.perf_counter() - start:.0f} s: {dict(result.outcomes)}")
    for message, n in result.messages.most_common(25):
        print(f"{n:5d}  {message}")
