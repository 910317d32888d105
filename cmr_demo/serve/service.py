"""What the app does, in plain Python: search, compare objectives, read a query, and the bundle-level views.

`RetrievalService` composes one part per concern and adds no logic of its own beyond putting them together:
`Encoder` (a query's backbone features, `cmr_demo.serve.encoder`), `Catalog` (items by id, pages, picture
URLs, `cmr_demo.serve.catalog`), the index stage and one ranking per query (`index`, `ranking`), the query
reading (`query_info`: likely class, confidence, in or out of the world), the stored metrics across objectives
(`analytics`) and map placement (`placement`). A request is checked once, in `request` (`SearchRequest.check`),
and trusted below.

Why no gradio here: every behaviour the app shows is testable as a function returning plain data, and the UI
(`cmr_demo.ui`) and the JSON API (`cmr_demo.serve.api`) are two thin edges over the same calls.
"""
from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np
import torch

from cmr_demo.bundle.load import Bundle, ObjectiveView, load_bundle
from cmr_demo.serve import analytics, comparison, map_colours, placement
from cmr_demo.serve.catalog import Catalog
from cmr_demo.serve.encoder import Encoder
from cmr_demo.serve.index import BundleIndexes
from cmr_demo.serve.inputs import InputError, check_choice, check_class, clean_text, load_image
from cmr_demo.serve.query_info import ClassGroups, NeighbourScorer, WorldCheck
from cmr_demo.serve.ranking import SERVED_AP_MAX_ITEMS, rank, served_ap
from cmr_demo.serve.schema import (MODALITIES, BundleSummary, Hit, MapView, Query, QueryInfo, SearchRequest,
                                   SearchResult, check_objectives)


class RetrievalService:
    """Serving state of one bundle: its parts (see the module docstring), built once.

    A bundle without a backbone (features only, or loaded with backbone=False) serves everything that needs no
    new encoding: gallery items as queries, compare, leaderboards and maps; a new text or picture is refused
    with a message that says so."""

    def __init__(self, bundle: Bundle, name: str | None = None):
        self.bundle = bundle
        self.name = name or Path(bundle.folder).resolve().name  # the bundle's name in URLs (/media/NAME/ID)
        self.catalog = Catalog(bundle, self.name)
        self.encoder = Encoder(bundle.backbone, self.name, bundle.items[0]["id"])
        self.encodes = self.encoder.encodes
        self.objectives = list(bundle.objectives)
        self.class_names = list(bundle.class_names)
        self.size = len(bundle.items)
        self.indexes = BundleIndexes({(o, m): self._gallery(o, m) for o in self.objectives for m in MODALITIES})
        for view in bundle.objectives.values():
            view.heads.eval()
        # tables that depend on the bundle alone, made once (the page asks for them at every start and bundle switch)
        self.tables = Lazy(self._table)
        # the default objective wherever none is named: the best trained one (the backbone alone is the baseline)
        board = self.leaderboard()
        self.best = next((r["objective"] for r in board if r["kind"] != "zero-shot"), board[0]["objective"])
        self.scorers = Lazy(self._scorer)  # fitted on an objective's first query: start-up does not wait
        self.item_aps = Lazy(self._item_ap)  # (objective, direction) -> [N] AP of each gallery item as a query
        self.groups = ClassGroups((bundle.manifest.get("about") or {}).get("class_groups"), self.class_names)
        self.world = WorldCheck([it["text"] for it in bundle.items], self.class_names, bundle.image_features,
                                bundle.picture_check)

    def with_objective(self, view: ObjectiveView) -> RetrievalService:
        """This service plus one more objective (a lab run), as a new object: the bundle's own state is shared,
        not copied, and this service is unchanged (other users never see the run)."""
        other = copy.copy(self)
        other.bundle = copy.copy(self.bundle)
        other.bundle.objectives = {**self.bundle.objectives, view.name: view}
        other.objectives = [*self.objectives, view.name]
        other.indexes = self.indexes.with_objective(view.name, {"image": view.image_emb, "text": view.text_emb})
        other.scorers = Lazy(other._scorer, self.scorers)
        other.item_aps = Lazy(other._item_ap, self.item_aps)
        other.tables = Lazy(other._table)
        view.heads.eval()
        return other

    def _scorer(self, objective: str) -> NeighbourScorer:
        """Calibrated class reads for `objective`: its gallery, and the bundle's labelled related pictures through its
        heads (the image temperature is fitted on both)."""
        view, related = self.bundle.objectives[objective], None
        if self.bundle.calibration is not None:
            with torch.no_grad():
                related = (view.heads.encode_image(torch.from_numpy(self.bundle.calibration[0])).numpy(),
                           self.bundle.calibration[1])
        return NeighbourScorer(lambda emb, modality, k: self.indexes[objective, modality].search(emb, k),
                               self.bundle.labels, len(self.class_names), view.image_emb, view.text_emb, related)

    def _gallery(self, objective: str, modality: str) -> np.ndarray:
        view = self.bundle.objectives[objective]
        return view.image_emb if modality == "image" else view.text_emb

    # ---- queries: each checked once, where it is made -------------------------------------------
    def text_query(self, text: object, class_name: object = None) -> Query:
        self.encoder.require()
        notes: list[str] = []
        return Query("text", text=clean_text(text, notes), label=check_class(class_name, self.class_names),
                     notes=notes)

    def image_query(self, image: object, class_name: object = None, source: str = "uploaded picture") -> Query:
        self.encoder.require()
        return Query("image", image=load_image(image), label=check_class(class_name, self.class_names),
                     source=source)

    def item_query(self, item: object, modality: object = "image") -> Query:
        return self.catalog.item_query(item, modality)

    def request(self, query: Query, objective: object = None, k: object = 10, target: object = None) -> SearchRequest:
        return SearchRequest.check(query, objective, k, target, self.objectives, self.best, self.size)

    # ---- search -----------------------------------------------------------------------------------
    def embed(self, query: Query, objective: str, features: np.ndarray | None = None) -> np.ndarray:
        """[D] common-space embedding of the query under `objective` (a name the caller checked)."""
        if query.item is not None:
            return self._gallery(objective, query.modality)[query.item]
        feats = torch.from_numpy(self.encoder.features(query) if features is None else features)
        heads = self.bundle.objectives[objective].heads
        with torch.no_grad():
            emb = heads.encode_image(feats) if query.modality == "image" else heads.encode_text(feats)
        return emb.numpy()[0]

    def search(self, query: Query | SearchRequest, objective: object = None, k: object = 10, target: object = None,
               features: np.ndarray | None = None) -> SearchResult:
        """Top-k of the target modality (default: the other one) under `objective` (default: the best); a
        SearchRequest is trusted as checked. With the query's class known: AP, P@k and the first relevant rank."""
        req = query if isinstance(query, SearchRequest) else self.request(query, objective, k, target)
        return self._run(req, features)[0]

    def _run(self, req: SearchRequest, features: np.ndarray | None) -> tuple[SearchResult, np.ndarray]:
        """The search and the query's embedding (the map places the query with the same one)."""
        query = req.query
        if features is None and query.item is None:
            features = self.encoder.features(query)  # once: the embedding and the out-of-world check share it
        emb = self.embed(query, req.objective, features)
        pairs, metrics, exact = rank(self.indexes, self._gallery(req.objective, req.target), self.bundle.labels,
                                     req.objective, req.target, query, emb, req.k)
        hits = [self._hit(n + 1, row, score, req.target, query.label) for n, (row, score) in enumerate(pairs)]
        metrics = metrics or {"ap": None, "p_at_k": None, "first_relevant_rank": None}
        info = self._info(query, req.objective, emb, features)
        spread = None
        if query.item is not None and req.target != query.modality and req.objective in self.bundle.objectives:
            direction = "i2t" if query.modality == "image" else "t2i"
            spread = comparison.query_ap_range(self.bundle, req.objective, direction, query.item)
        return SearchResult(self.name, req.objective, query.describe(self.bundle.items), query.label, req.target, hits,
                            exact=exact, notes=list(req.notes), info=info, ap_over_seeds=spread, **metrics), emb

    def _hit(self, rank_: int, row: int, score: float, modality: str, label: int | None) -> Hit:
        it = self.bundle.items[row]
        item_label = int(it["label"])
        return Hit(rank_, row, it["id"], modality, score, item_label, self.class_names[item_label], it["text"],
                   self.catalog.media_url(row), None if label is None else item_label == label)

    def compare(self, query: Query, objectives: object = None, k: object = 10, target: object = None,
                progress=None, features: np.ndarray | None = None) -> dict[str, SearchResult]:
        """The same query under several objectives (all when none are given); one backbone pass (or `features`)."""
        chosen = check_objectives(objectives, self.objectives)
        feats = features if features is not None or query.item is not None else self.encoder.features(query)
        out = {}
        for n, name in enumerate(chosen):
            if progress is not None:
                progress((n, len(chosen)), desc=f"searching with {name}")
            out[name] = self.search(self.request(query, name, k, target), features=feats)
        return out

    # ---- what the bundle can say about a query ---------------------------------------------------
    def query_info(self, query: Query, objective: object = None, features: np.ndarray | None = None) -> QueryInfo:
        """The query's likely class under `objective` (default: the best on the leaderboard), its calibrated
        confidence, and whether it belongs to the bundle's world (see cmr_demo.serve.query_info)."""
        objective = self.request(query, objective, 1).objective
        if features is None and query.item is None:
            features = self.encoder.features(query)
        return self._info(query, objective, self.embed(query, objective, features), features)

    def _info(self, query: Query, objective: str, emb: np.ndarray, features: np.ndarray | None) -> QueryInfo:
        scorer = self.scorers[objective]
        probs = scorer.probabilities(emb, query.modality)[0]
        best, groups = self.groups.read(probs)
        if query.item is not None:
            in_domain, reason = True, "a gallery item"
        elif query.modality == "text":
            in_domain, reason = self.world.text(query.text)
        else:
            in_domain, reason = self.world.image(features)
        unknown = self.groups.unknown(query.text) if query.modality == "text" and query.item is None else {}
        return QueryInfo(self.class_names[best], float(probs[best]), in_domain, objective, scorer.source, reason,
                         groups, unknown)

    # ---- bundle-level views ----------------------------------------------------------------------
    def describe(self, default: bool = False) -> BundleSummary:
        """The bundle for a client choosing among several: size, classes, backbone (as the bundle names it, not
        where it was built from), objectives best first, its own description and what it can answer."""
        backbone = self.bundle.manifest.get("backbone")
        return BundleSummary(self.name, self.size, self.class_names,
                             backbone.get("spec") if isinstance(backbone, dict) else None,
                             [row["objective"] for row in self.leaderboard()],
                             (self.bundle.manifest.get("about") or {}).get("description"),
                             self.catalog.capabilities(self.encodes), self.indexes.describe(), default)

    def leaderboard(self, with_paper: bool = False) -> list[dict]:
        """One row per objective, best mean over seeds first, with its interval and paired test against the best
        (`comparison.leaderboard`); with `with_paper`, also each objective at the paper's setting where tuning
        changed it (what the page and /api/v1/leaderboard show)."""
        return copy.deepcopy(self.tables["leaderboard", bool(with_paper)])

    def class_ap(self, direction: str = "avg", intervals: bool = False) -> tuple:
        """(class names, objectives, [C, O] AP per class, the mean over training seeds) (`comparison.class_ap`), with
        `intervals` also the [C, O] half-width of each cell's 95 % interval over seeds."""
        direction = check_choice(direction, [*analytics.DIRECTIONS, "avg"], "direction")
        return self.tables["class_ap", direction][:4 if intervals else 3]

    def _table(self, key: tuple):
        """("leaderboard", with_paper) or ("class_ap", direction), from the bundle (see `tables`)."""
        which, option = key
        return {"leaderboard": comparison.leaderboard, "class_ap": comparison.class_ap}[which](self.bundle, option)

    def disagreements(self, a: object, b: object, direction: str = "t2i", n: int = 20) -> list[dict]:
        """Gallery queries whose AP differs most between objectives a and b (`analytics.disagreements`), with the
        AP Compare shows for each (`item_ap`)."""
        a, b = check_objectives([a], self.objectives)[0], check_objectives([b], self.objectives)[0]
        direction = check_choice(direction, list(analytics.DIRECTIONS), "direction")
        rows = analytics.disagreements(self.bundle, a, self.item_ap(a, direction), b, self.item_ap(b, direction),
                                       direction, n)
        spread = comparison.query_spread(self.bundle, a, b, direction, np.array([r["row"] for r in rows], int))
        return [{**r, "within_seed_spread": w} for r, w in zip(rows, spread)]

    def item_ap(self, objective: str, direction: str) -> np.ndarray:
        """[N] AP of each gallery item as a query in `direction` ('i2t': its image over the texts) under a checked
        objective: computed once from the served embeddings by the ranking Compare uses, so both say the same
        number (the build's stored values come from the float32 embeddings, before float16 storage); from the
        build for galleries over SERVED_AP_MAX_ITEMS, where that costs minutes."""
        return self.item_aps[objective, direction]

    def _item_ap(self, key: tuple[str, str]) -> np.ndarray:
        objective, direction = key
        if self.size > SERVED_AP_MAX_ITEMS:
            return np.asarray(self.bundle.objectives[objective].metrics["per_query_ap"][direction])
        source, target = ("image", "text") if direction == "i2t" else ("text", "image")
        return served_ap(self._gallery(objective, source), self._gallery(objective, target), self.bundle.labels)

    def map_view(self, objective: object, query: Query | None = None, k: object = 10,
                 features: np.ndarray | None = None, colour_by: object = "class", other: object = None,
                 base: object = None) -> MapView:
        """Plain data for one objective's map: gallery points, the query placed with its top-k, and what the points
        are coloured by (`map_colours`: class, modality, each point's AP under this objective, the AP difference
        `base` minus `other`, each point's rank for the query under this objective). `objective` defaults to the
        best; `base` to `objective` (maps side by side share one: one colour bar means one thing on all of them);
        `other` to the best objective besides `base`. Under `rank`, the rings are the exact top-k of those ranks."""
        objective = check_objectives([self.best if objective in (None, "") else objective], self.objectives)[0]
        colour = map_colours.check_colour_by(colour_by)
        if colour.needs == "other":
            base = objective if base in (None, "") else check_objectives([base], self.objectives)[0]
            other = check_objectives([other], self.objectives)[0] if other not in (None, "") else None
            if other in (None, base):
                other = next((r["objective"] for r in self.leaderboard() if r["objective"] != base), base)
        else:
            base = other = None
        if colour.needs == "query" and query is None:
            raise InputError(f"colouring by {colour.name} needs a query: give a text or a gallery item")
        view = self.bundle.objectives[objective]
        out = placement.map_points(view, self.bundle.labels, self.class_names)
        ranks = None
        if query is not None:
            if features is None and query.item is None:
                features = self.encoder.features(query)  # once, for the search and the placement below
            result, emb = self._run(self.request(query, objective, k), features)
            hits = [h.index for h in result.hits]
            if colour.needs == "query":
                ranks = map_colours.query_ranks(self, objective, emb, query.item, query.modality)
                hits = np.argsort(ranks[result.target], kind="stable")[:len(hits)].tolist()  # exact, as coloured
            out["query"] = {"xy": placement.place_query(view, emb), "modality": query.modality, "label": query.label,
                            "description": result.query, "target": result.target, "hits": hits, "ap": result.ap,
                            "info": result.info.to_dict() if result.info else None}
        out["colour"] = {"by": colour.name, "scale": colour.scale, "base": base, "other": other,
                         "title": colour.title(base or objective, other),
                         "values": map_colours.values(self, colour, objective, base, other, ranks)}
        return out


class Lazy(dict):
    """A dict whose missing values are made on first use by `make(key)` (and kept), each once: a request and the
    maps' background warm-up asking for the same key wait for one computation instead of running two."""

    def __init__(self, make, known: dict | None = None):
        super().__init__(known or {})
        self.make = make
        self._guard, self._making = threading.Lock(), {}

    def __missing__(self, key):
        with self._guard:
            lock = self._making.setdefault(key, threading.Lock())
        with lock:
            if dict.__contains__(self, key):  # made while this caller waited
                return dict.__getitem__(self, key)
            value = self[key] = self.make(key)
            return value


def load(folder: str | Path, name: str | None = None, backbone: bool = True) -> RetrievalService:
    """A bundle folder, or a Hub bundle `hf:ORG/NAME[@REVISION]`, checked and loaded, ready to search:
    `cmr_demo.load("assets/demo")`. Without `backbone` only what needs no new encoding is served (gallery items as
    queries, Compare, leaderboard, maps)."""
    from cmr_demo.bundle.hub import resolve
    folder, hub_name = resolve(folder)
    return RetrievalService(load_bundle(folder, load_backbone=backbone), name or hub_name)


__all__ = ["Hit", "Query", "RetrievalService", "SearchRequest", "SearchResult", "load"]
