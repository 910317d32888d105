"""What the app does, in plain Python: search, compare objectives, leaderboards, disagreements, map data.

`RetrievalService` owns queries and search (encoding a text, a picture or a gallery item; ranking with the
index stage, `cmr_demo.serve.index`); what the stored metrics say across objectives is
`cmr_demo.serve.analytics`, and placing a query on a map is `cmr_demo.serve.placement`: the service hands
them its bundle.

Why no gradio here: every behaviour the app shows is testable as a function returning plain data
(dataclasses, lists, numpy arrays), and `app.py` keeps only layout and wiring. Read-only state
(bundle, indexes) is built once in `RetrievalService.__init__`; per-request work is one backbone
encoding (cached for repeated texts), one head pass per objective and one index search.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from threading import Lock
from urllib.parse import quote

import numpy as np
import torch

from cmr_demo.bundle.load import Bundle, ObjectiveView, load_bundle
from cmr_demo.metrics import ap_from_relevance
from cmr_demo.serve import analytics, placement
from cmr_demo.serve.index import BundleIndexes
from cmr_demo.serve.inputs import InputError, check_choice, check_class, check_k, clean_text, load_image, shown
from cmr_demo.serve.query_info import ClassScorer, QueryInfo, WorldCheck

MODALITIES = ("image", "text")
P_AT = (1, 5, 10)  # precision cut-offs reported per query
TEXT_CACHE = 512  # backbone features of recent text queries (compare and maps re-use them)


@dataclass
class Query:
    """A text, an uploaded image, or a gallery item (`item` index; its label is known)."""
    modality: str  # "image" | "text"
    text: str | None = None
    image: object | None = None  # PIL image
    item: int | None = None
    label: int | None = None  # class id when known (a gallery item, or stated by the user)
    notes: list[str] = field(default_factory=list)  # things the user should know (truncation, ...)

    def describe(self, bundle: Bundle) -> str:
        if self.item is not None:
            it = bundle.items[self.item]
            return f"gallery {self.modality} {it['id']}" + (f": \"{it['text']}\"" if self.modality == "text" and it["text"]
                                                              else "")
        return f"\"{self.text}\"" if self.modality == "text" else "uploaded image"


@dataclass
class Hit:
    rank: int
    index: int  # gallery row
    id: str
    modality: str
    score: float
    label: int
    class_name: str
    text: str
    image_url: str | None  # where the app serves this item's picture (/media/BUNDLE/ID): never a server path;
    # None when the bundle has no pictures (features only)
    relevant: bool | None  # same class as the query; None when the query's class is unknown


@dataclass
class SearchResult:
    objective: str
    query: str  # human-readable description
    query_label: int | None
    target: str  # modality searched
    hits: list[Hit]
    ap: float | None  # average precision over the whole gallery, when the query's class is known
    p_at_k: dict[str, float] | None
    first_relevant_rank: int | None
    exact: bool  # the index was exact (flat) rather than approximate
    notes: list[str]
    info: dict | None = None  # QueryInfo.to_dict(): predicted class, confidence, in/out-of-world

    def to_dict(self) -> dict:
        return asdict(self)


class RetrievalService:
    """Serving state of one bundle: indexes per (objective, modality), cached query features.

    A bundle without a backbone (features only, or loaded with load_backbone=False) serves everything
    that needs no new encoding: gallery items as queries, compare, leaderboards and maps; a new text
    or picture is refused with a message that says so (`encodes`)."""

    def __init__(self, bundle: Bundle, name: str | None = None):
        self.bundle = bundle
        self.encodes = bundle.backbone is not None  # new texts and pictures can be queries
        self.name = name or Path(bundle.folder).resolve().name  # the bundle's name in URLs (/media/NAME/ID)
        self.objectives = list(bundle.objectives)
        self.class_names = list(bundle.class_names)
        self.size = len(bundle.items)
        self.indexes = BundleIndexes({(name, m): self._gallery(name, m) for name in self.objectives for m in MODALITIES})
        for view in bundle.objectives.values():
            view.heads.eval()
        self._rows_by_id = {it["id"]: n for n, it in enumerate(bundle.items)}
        self.best = self.leaderboard()[0]["objective"]  # the default objective wherever none is named
        self.scorers = {name: ClassScorer(v.objective, v.image_emb, v.text_emb, bundle.labels, len(self.class_names))
                        for name, v in bundle.objectives.items()}
        self.world = WorldCheck([it["text"] for it in bundle.items], self.class_names, bundle.image_features)
        self._text_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = Lock()

    def with_objective(self, view: ObjectiveView) -> "RetrievalService":
        """This service plus one more objective (a lab run), as a new object: the bundle's own state is
        shared, not copied, and this service is unchanged (other users never see the run)."""
        other = copy.copy(self)
        other.bundle = copy.copy(self.bundle)
        other.bundle.objectives = {**self.bundle.objectives, view.name: view}
        other.objectives = [*self.objectives, view.name]
        other.indexes = self.indexes.with_objective(view.name, {"image": view.image_emb, "text": view.text_emb})
        other.scorers = {**self.scorers, view.name: ClassScorer(view.objective, view.image_emb, view.text_emb,
                                                                 self.bundle.labels, len(self.class_names))}
        view.heads.eval()
        return other

    # ---- queries ---------------------------------------------------------------------------------
    def capabilities(self) -> dict:
        """What this bundle can answer, for clients and the page (which inputs to show)."""
        return {"text_queries": self.encodes, "image_queries": self.encodes,
                "pictures": self.bundle.has_pictures, "texts": self.bundle.has_texts, "item_queries": True}

    def describe(self) -> dict:
        """The bundle for a client choosing among several: size, classes, backbone (as the bundle names it, not
        where it was built from), objectives best first, its own description and what it can answer."""
        backbone = self.bundle.manifest.get("backbone")
        return {"items": self.size, "classes": self.class_names,
                "backbone": backbone.get("spec") if isinstance(backbone, dict) else None,
                "objectives": [row["objective"] for row in self.leaderboard()],
                "description": (self.bundle.manifest.get("about") or {}).get("description"),
                "capabilities": self.capabilities(), "index": self.indexes.describe()}

    def no_encoding_reason(self) -> str:
        return (f"bundle '{self.name}' ships features only (no backbone), so it cannot encode a new text or "
                f"picture: query it with a gallery item instead (by id, e.g. '{self.bundle.items[0]['id']}', or "
                f"picked from the gallery list)")

    def require_encoder(self) -> None:
        if not self.encodes:
            raise InputError(self.no_encoding_reason())

    def text_query(self, text: object, class_name: object = None) -> Query:
        self.require_encoder()
        notes: list[str] = []
        return Query("text", text=clean_text(text, notes), label=check_class(class_name, self.class_names),
                     notes=notes)

    def image_query(self, image: object, class_name: object = None) -> Query:
        self.require_encoder()
        return Query("image", image=load_image(image), label=check_class(class_name, self.class_names))

    def item_query(self, item: object, modality: str = "image") -> Query:
        """A gallery item by row number or id; its class is known, so AP and P@k can be shown."""
        modality = check_choice(modality, MODALITIES, "modality")
        if isinstance(item, str) and not item.strip().lstrip("-").isdigit():
            row = self._rows_by_id.get(item.strip())
            if row is None:
                raise InputError(f"no gallery item has id {item[:60]!r}; ids look like '{self.bundle.items[0]['id']}'")
        else:
            try:
                row = int(item)
            except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
                raise InputError(f"a gallery item is a row number or an id; got {shown(item)}") from None
            if not 0 <= row < self.size:
                raise InputError(f"gallery row {shown(row, 30)} does not exist: rows go from 0 to {self.size - 1}")
        it = self.bundle.items[row]
        return Query(modality, text=it["text"], item=row, label=int(it["label"]))

    # ---- encoding --------------------------------------------------------------------------------
    def _gallery(self, objective: str, modality: str) -> np.ndarray:
        view = self.bundle.objectives[objective]
        return view.image_emb if modality == "image" else view.text_emb

    def _features(self, query: Query) -> np.ndarray:
        """Backbone features [1, F] of a live query (texts cached: compare/maps ask for them again)."""
        return self.image_features(query) if query.modality == "image" else self.text_features([query.text])

    def image_features(self, query: Query) -> np.ndarray:
        return self.bundle.backbone.encode_images([query.image], progress=False)

    def cached_text_features(self, text: str) -> np.ndarray | None:
        with self._lock:
            hit = self._text_cache.get(text)
            if hit is not None:
                self._text_cache.move_to_end(text)
            return hit

    def text_features(self, texts: Sequence[str]) -> np.ndarray:
        """[N, F] backbone features of cleaned texts: cached ones looked up, the rest encoded in one call."""
        found = {t: f for t in dict.fromkeys(texts) if (f := self.cached_text_features(t)) is not None}
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            feats = self.bundle.backbone.encode_texts(missing, progress=False)
            with self._lock:
                for n, text in enumerate(missing):  # copies: a slice would keep the whole batch alive in the cache
                    found[text] = self._text_cache[text] = feats[n:n + 1].copy()
                while len(self._text_cache) > TEXT_CACHE:
                    self._text_cache.popitem(last=False)
        return np.concatenate([found[t] for t in texts])

    def embed(self, query: Query, objective: str, features: np.ndarray | None = None) -> np.ndarray:
        """[D] common-space embedding of the query under `objective`."""
        if query.item is not None:
            return self._gallery(objective, query.modality)[query.item]
        feats = torch.from_numpy(self._features(query) if features is None else features)
        heads = self.bundle.objectives[objective].heads
        with torch.no_grad():
            emb = heads.encode_image(feats) if query.modality == "image" else heads.encode_text(feats)
        return emb.numpy()[0]

    # ---- search ----------------------------------------------------------------------------------
    def check_objective(self, objective: object) -> str:
        return check_choice(objective, self.objectives, "objective")

    def objective_or_best(self, objective: object) -> str:
        """A named objective (checked), or the bundle's best when none is named (None or "")."""
        return self.check_objective(objective or self.best)

    def search(self, query: Query, objective: object, k: object = 10, target: object = None,
               features: np.ndarray | None = None) -> SearchResult:
        """Top-k of the `target` modality (default: the other one) for `query` under `objective`."""
        objective = self.check_objective(objective)
        target = check_choice(target or ("text" if query.modality == "image" else "image"), MODALITIES, "target")
        notes = list(query.notes)
        k = check_k(k, self.size, notes)
        if features is None and query.item is None:
            features = self._features(query)  # once: the embedding and the out-of-world check share it
        emb = self.embed(query, objective, features)
        index = self.indexes[objective, target]
        scores, rows = index.search(emb[None], k + (1 if query.item is not None and target == query.modality else 0))
        pairs = [(float(s), int(r)) for s, r in zip(scores[0], rows[0]) if r >= 0]
        if query.item is not None and target == query.modality:  # the item itself is not a result
            pairs = [p for p in pairs if p[1] != query.item]
        hits = [self._hit(n + 1, r, s, target, query.label) for n, (s, r) in enumerate(pairs[:k])]
        ap, p_at, first = self._rank_metrics(emb, objective, target, query) if query.label is not None else (None,) * 3
        return SearchResult(objective, query.describe(self.bundle), query.label, target, hits, ap, p_at, first,
                            index.exact, notes, self._info(query, objective, emb, features).to_dict())

    def query_info(self, query: Query, objective: object = None, features: np.ndarray | None = None) -> QueryInfo:
        """The query's likely class under `objective` (default: the best on the leaderboard), its
        calibrated confidence, and whether it belongs to the bundle's world (see cmr_demo.serve.query_info)."""
        objective = self.objective_or_best(objective)
        if features is None and query.item is None:
            features = self._features(query)
        return self._info(query, objective, self.embed(query, objective, features), features)

    def _info(self, query: Query, objective: str, emb: np.ndarray, features: np.ndarray | None) -> QueryInfo:
        scorer = self.scorers[objective]
        probs = scorer.probabilities(emb)[0]
        best = int(np.argmax(probs))
        if query.item is not None:
            in_domain, reason = True, "a gallery item"
        elif query.modality == "text":
            in_domain, reason = self.world.text(query.text)
        else:
            in_domain, reason = self.world.image(features)
        return QueryInfo(self.class_names[best], float(probs[best]), in_domain, objective, scorer.source, reason)

    def _hit(self, rank: int, row: int, score: float, modality: str, label: int | None) -> Hit:
        it = self.bundle.items[row]
        item_label = int(it["label"])
        return Hit(rank, row, it["id"], modality, score, item_label, self.class_names[item_label], it["text"],
                   self.media_url(row), None if label is None else item_label == label)

    def media_url(self, row: int) -> str | None:
        """The URL path of a gallery item's picture, by bundle name and item id (see cmr_demo.webserver);
        None when the item has no picture."""
        if not self.bundle.items[row].get("image"):
            return None
        return f"/media/{quote(self.name, safe='')}/{quote(self.bundle.items[row]['id'], safe='')}"

    def items_page(self, class_name: object = None, contains: object = None, offset: object = 0,
                   limit: object = 60) -> tuple[list[int], int]:
        """(gallery rows of one page, how many rows match): items of a class and/or whose id contains a
        string, in gallery order. Browsing a gallery of any size sends one page at a time."""
        label = check_class(class_name, self.class_names)
        text = contains.strip().lower() if isinstance(contains, str) else ""
        rows = np.arange(self.size) if label is None else np.flatnonzero(self.bundle.labels == label)
        if text:
            rows = [r for r in rows.tolist() if text in self.bundle.items[r]["id"].lower()]
        offset = max(0, int(offset)) if isinstance(offset, (int, float)) and not isinstance(offset, bool) else 0
        limit = min(max(1, int(limit)), 500) if isinstance(limit, (int, float)) and not isinstance(limit, bool) else 60
        rows = list(rows)
        return [int(r) for r in rows[offset:offset + limit]], len(rows)

    def row_of(self, item_id: object) -> int | None:
        """The gallery row of an item id, or None when no item has it."""
        return self._rows_by_id.get(item_id) if isinstance(item_id, str) else None

    def _rank_metrics(self, emb: np.ndarray, objective: str, target: str, query: Query):
        """AP over the whole gallery, P@k and the rank of the first relevant item (exact scores)."""
        scores = self._gallery(objective, target) @ emb.astype(np.float32)
        if query.item is not None and target == query.modality:
            scores[query.item] = -np.inf
        order = np.argsort(-scores, kind="stable")
        if query.item is not None and target == query.modality:
            order = order[:-1]  # the item itself, ranked last above
        rel = (self.bundle.labels[order] == query.label).astype(np.float64)
        ap = float(ap_from_relevance(torch.from_numpy(rel[None]))[0])
        return ap, {str(k): float(rel[:k].mean()) for k in P_AT}, int(np.argmax(rel)) + 1 if rel.any() else None

    def compare(self, query: Query, objectives: Sequence[str] | None = None, k: object = 10,
                target: object = None, progress=None) -> dict[str, SearchResult]:
        """The same query under several objectives (all when none are given); one backbone pass."""
        if objectives is not None and (isinstance(objectives, str) or not isinstance(objectives, Sequence)):
            raise InputError(f"objectives must be a list of objective names; got {shown(objectives)}")
        chosen = [self.check_objective(o) for o in objectives] if objectives else list(self.objectives)
        feats = None if query.item is not None else self._features(query)
        out = {}
        for n, name in enumerate(dict.fromkeys(chosen)):
            if progress is not None:
                progress((n, len(chosen)), desc=f"searching with {name}")
            out[name] = self.search(query, name, k, target, features=feats)
        return out

    # ---- bundle-level views ----------------------------------------------------------------------
    def leaderboard(self) -> list[dict]:
        """One row per objective, best average mAP first (`analytics.leaderboard`)."""
        return analytics.leaderboard(self.bundle)

    def class_ap(self, direction: str = "avg") -> tuple[list[str], list[str], np.ndarray]:
        """(class names, objectives, [C, O] mean AP per class) (`analytics.class_ap`)."""
        return analytics.class_ap(self.bundle, direction)

    def disagreements(self, a: object, b: object, direction: str = "t2i", n: int = 20) -> list[dict]:
        """Gallery queries whose AP differs most between objectives a and b (`analytics.disagreements`)."""
        return analytics.disagreements(self.bundle, self.check_objective(a), self.check_objective(b), direction, n)

    def map_view(self, objective: object, query: Query | None = None, k: object = 10,
                 features: np.ndarray | None = None) -> dict:
        """Plain data for one objective's map: gallery points, and the query placed with its top-k."""
        objective = self.check_objective(objective)
        view = self.bundle.objectives[objective]
        out = placement.map_points(view, self.bundle.labels, self.class_names)
        if query is None:
            return out
        if features is None and query.item is None:
            features = self._features(query)  # once, for the search and the placement below
        result = self.search(query, objective, k, features=features)
        out["query"] = {"xy": placement.place_query(view, self.embed(query, objective, features)),
                        "modality": query.modality, "label": query.label, "description": result.query,
                        "target": result.target, "hits": [h.index for h in result.hits], "ap": result.ap,
                        "info": result.info}
        return out


def load(folder: str | Path, name: str | None = None, backbone: bool = True) -> RetrievalService:
    """A bundle folder, checked and loaded, ready to search: `cmr_demo.load("assets/demo")`. Without `backbone`
    only what needs no new encoding is served (gallery items as queries, Compare, leaderboard, maps)."""
    return RetrievalService(load_bundle(folder, load_backbone=backbone), name)
