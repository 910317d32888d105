"""Each user's lab runs: kept by session and bundle, bounded in number and bytes, each session's Stop."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from cmr_demo.bundle.load import ObjectiveView


@dataclass
class LabRun:
    """A finished (or stopped) lab run: what to show and what joins the user's compare/leaderboard/map."""
    name: str  # "lab 1: pcl" — never an objective name of the bundle
    objective: str
    settings: dict  # the train and head settings as run
    metrics: dict  # final_metrics(): test mAP per direction, per class, per query
    history: list[dict]
    seconds: float
    stopped: str | None  # why the run ended before early stopping ("stopped on request", "time cap ..."), else None
    view: ObjectiveView = field(repr=False)


class SessionRuns:
    """Each user's lab runs, by session and bundle, as that bundle's service with the runs added.

    Why keyed by session: a run is one user's experiment, so it joins that user's Compare, leaderboard and
    maps and nobody else's (a program using one gradio_client sees its own runs the same way). Bounded:
    the newest `per_bundle` runs per bundle, and at most `max_bytes` of runs in all (heads, embeddings and
    their indexes), the least recently active sessions' runs dropped first."""

    def __init__(self, max_bytes: int = 512 * 2 ** 20, per_bundle: int = 3):
        from collections import OrderedDict
        self.max_bytes, self.per_bundle = max_bytes, per_bundle
        self._runs: OrderedDict[str, dict[str, list[LabRun]]] = OrderedDict()
        self._services: dict[tuple[str, str], object] = {}
        self._stops: dict[str, threading.Event] = {}
        self._counts: dict[str | None, int] = {}
        self._lock = threading.Lock()

    def service(self, session: str | None, base):
        """`base` (a RetrievalService) with this session's runs on its bundle, or `base` itself."""
        with self._lock:
            return self._services.get((session, base.name), base) if session else base

    def next_name(self, session: str | None, objective: str, changed: str = "") -> str:
        """'lab N: objective (what changed)', N counting this session's runs (never reused: names stay unique)."""
        with self._lock:
            self._counts[session] = n = self._counts.get(session, 0) + 1
            while len(self._counts) > 4096:
                self._counts.pop(next(iter(self._counts)))
        return f"lab {n}: {objective}" + (f" ({changed[:48]})" if changed else "")

    def add(self, session: str | None, base, run: LabRun):
        """Keep `run` for this session (dropping its oldest beyond the limits); the service it now sees."""
        if not session:
            return base.with_objective(run.view)
        with self._lock:
            per_bundle = self._runs.setdefault(session, {})
            self._runs.move_to_end(session)
            per_bundle[base.name] = (per_bundle.get(base.name, []) + [run])[-self.per_bundle:]
            while self._bytes() > self.max_bytes and len(self._runs) > 1:
                old, _ = self._runs.popitem(last=False)
                for key in [k for k in self._services if k[0] == old]:
                    del self._services[key]
            service = base
            for r in per_bundle[base.name]:
                service = service.with_objective(r.view)
            self._services[(session, base.name)] = service
            return service

    def _bytes(self) -> int:
        return sum(run_bytes(r) for bundles in self._runs.values() for runs in bundles.values() for r in runs)

    def new_stop(self, session: str | None) -> threading.Event:
        """A fresh flag for a run about to start (a Stop meant for an earlier run never reaches this one)."""
        with self._lock:
            self._stops[session or ""] = event = threading.Event()
            return event

    def stop(self, session: str | None) -> bool:
        """Stop this session's run under way, if any (the Stop button): whether there was one."""
        with self._lock:
            event = self._stops.get(session or "")
        if event is not None:
            event.set()
        return event is not None

    def done(self, session: str | None, event: threading.Event) -> None:
        with self._lock:
            if self._stops.get(session or "") is event:
                del self._stops[session or ""]


def run_bytes(run: LabRun) -> int:
    """What a kept run holds in memory: its heads and objective, its gallery embeddings twice (the index copies)."""
    params = sum(t.numel() * t.element_size() for m in (run.view.heads, run.view.objective) if m is not None
                 for t in m.state_dict().values())
    return params + 2 * (run.view.image_emb.nbytes + run.view.text_emb.nbytes)
