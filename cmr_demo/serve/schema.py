"""The shapes of a request and of its answers, one of each for every way in: the page, the JSON API and Python.
Answers: `SearchResult` (with its `Hit`s and the query's `QueryInfo`), `BundleSummary` (/bundles), `LabAnswer` (a
finished lab run), `MapView` (one objective's map: arrays the page draws and the API lists, `map_colours.answer`).

Why one module: a request is checked once, where it enters (`SearchRequest.check`), into a typed value every
layer below trusts; an answer is one `SearchResult` from the service to both the page and the JSON API, which
serialises it as it is (`SearchResult.to_json`, the same fields the API documents) instead of copying it.
`Hit` and `SearchResult` are pydantic dataclasses: plain dataclasses to the service, a documented schema to
FastAPI, with the public names (`class`) and the internal fields (`index`, `label`) kept apart.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, TypedDict

from pydantic import ConfigDict, Field, TypeAdapter
from pydantic.dataclasses import dataclass as pydantic_dataclass

from cmr_demo.serve.inputs import InputError, check_choice, check_k, shown

MODALITIES = ("image", "text")


@dataclass
class Query:
    """A text, a picture, or a gallery item (`item` row; its class is known)."""
    modality: str  # "image" | "text"
    text: str | None = None
    image: object | None = None  # PIL image
    item: int | None = None
    label: int | None = None  # class id when known (a gallery item, or stated by the user)
    notes: list[str] = field(default_factory=list)  # things the user should know (truncation, ...)
    source: str = "uploaded picture"  # what a picture query is, in words ("example picture", ...)

    def describe(self, items: Sequence[dict]) -> str:
        if self.item is not None:
            it = items[self.item]
            return f"gallery {self.modality} {it['id']}" + (f": \"{cut(it['text'])}\"" if self.modality == "text" and
                                                              it["text"] else "")
        return f"\"{cut(self.text)}\"" if self.modality == "text" else self.source


def cut(text: str, limit: int = 120) -> str:
    """A text as a description repeats it: its first `limit` characters, '…' where it goes on."""
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class SearchRequest:
    """What one search asks, checked: a query, an objective the bundle has, a whole k in range, a modality."""
    query: Query
    objective: str
    k: int
    target: str
    notes: tuple[str, ...] = ()

    @classmethod
    def check(cls, query: Query, objective: object, k: object, target: object, objectives: Sequence[str],
              best: str, size: int) -> SearchRequest:
        """The one place a search's settings are checked (InputError names the problem and the valid values).
        `objective` None or "" means the bundle's best; `target` None means the other modality."""
        notes = list(query.notes)
        objective = check_choice(objective or best, list(objectives), "objective")
        target = check_choice(target or ("text" if query.modality == "image" else "image"), MODALITIES, "target")
        return cls(query, objective, check_k(k, size, notes), target, tuple(notes))


def check_objectives(names: object, objectives: Sequence[str]) -> list[str]:
    """A list of the bundle's objective names (None or empty: all of them), duplicates dropped, order kept."""
    if names is None or (isinstance(names, (list, tuple)) and not names):
        return list(objectives)
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise InputError(f"objectives must be a list of objective names; got {shown(names)}")
    return list(dict.fromkeys(check_choice(o, list(objectives), "objective") for o in names))


CONFIG = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)


@pydantic_dataclass(config=CONFIG)
class QueryInfo:
    """A query's likely class under one objective, and whether it belongs to the gallery's world."""
    predicted_class: str
    confidence: float  # calibrated probability of predicted_class under the objective
    in_domain: bool | None  # None: the bundle cannot tell (no captions or no stored features)
    objective: str
    class_source: str  # where the read comes from: "nearest gallery items" (the ranking's own neighbours)
    reason: str  # one line for people: why in or out of the world
    # per grouping of the classes the bundle declares (e.g. "shape"): the most probable group and its probability,
    # the sum of its classes' ({"shape": {"name": "star", "confidence": 0.97}}); empty when it declares none
    groups: dict[str, Any] = field(default_factory=dict)
    # words of the query naming a colour or a shape no class has, by grouping ({"colour": ["purple"]}); a text only
    unknown: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@pydantic_dataclass(config=CONFIG)
class Hit:
    rank: int
    index: Annotated[int, Field(exclude=True)]  # gallery row: the service's, never sent
    id: str
    modality: str
    score: float
    label: Annotated[int, Field(exclude=True)]
    class_name: Annotated[str, Field(serialization_alias="class")]
    text: str
    image_url: str | None = Field(None, description="/media/BUNDLE/ID; null when the bundle has no pictures")
    relevant: bool | None = Field(None, description="same class as the query; null when its class is unknown")


@pydantic_dataclass(config=CONFIG)
class SearchResult:
    bundle: str
    objective: str
    query: str  # human-readable description
    query_label: Annotated[int | None, Field(exclude=True)]
    target: str  # modality searched
    hits: list[Hit]
    ap: float | None  # average precision over the whole gallery, when the query's class is known
    p_at_k: dict[str, float] | None
    first_relevant_rank: int | None
    exact: bool  # the ranking was exact (a flat scan or the whole gallery scored) rather than approximate
    notes: list[str]
    info: QueryInfo | None = None  # predicted class, confidence, in/out-of-world
    # a gallery item's cross-modal query: (lowest, highest) AP the build measured for it over the objective's training
    # seeds, so a reader tells a difference between objectives from seed noise; None otherwise
    ap_over_seeds: tuple[float, float] | None = None

    def to_json(self) -> dict:
        """The answer as the JSON API sends it (public field names, no gallery rows)."""
        return RESULT.dump_python(self, mode="json", by_alias=True)

    def to_dict(self) -> dict:
        """Every field, internal ones included (what a page's state keeps to draw the result again)."""
        return asdict(self)


RESULT = TypeAdapter(SearchResult)


@pydantic_dataclass(config=CONFIG)
class BundleSummary:
    """One served bundle for a client choosing among several (/bundles on the page and the JSON API alike)."""
    name: str
    items: int
    classes: list[str]
    backbone: str | None  # the spec the bundle names (not where it was built from); None: features only
    objectives: list[str]  # best first
    description: str | None
    capabilities: dict[str, Any]
    index: dict[str, Any]
    default: bool

    def to_json(self) -> dict:
        return asdict(self)


@pydantic_dataclass(config=CONFIG)
class LabAnswer:
    """A finished lab run (the /lab_train answer): its test metrics, its settings, how long it ran and how it ended,
    beside the bundle's own run of the same objective (`bundle_run`: its i2t, t2i and average mAP; None without)."""
    name: str
    objective: str
    options: dict[str, Any]
    i2t_map: float
    t2i_map: float
    avg_map: float
    best_epoch: int
    epochs: int
    seconds: float
    stopped: str | None
    settings: dict[str, Any]
    bundle_run: dict[str, float] | None

    @classmethod
    def of(cls, run, stored: dict | None) -> LabAnswer:
        """From a lab run (cmr_demo.serve.lab.LabRun) and the bundle's manifest entry of its objective."""
        m, train = run.metrics, run.settings["train"]
        return cls(run.name, run.objective, train["objective_options"], m["i2t_map"], m["t2i_map"], m["avg_map"],
                   m["best_epoch"], m["epochs_run"], run.seconds, run.stopped,
                   {**{k: train[k] for k in ("lr", "batch_size", "epochs", "patience", "seed", "text_fraction",
                                             "image_fraction")},
                    **{k: run.settings["heads"][k] for k in ("embed_dim", "hidden_dim")}},
                   None if stored is None else {k: stored[k] for k in ("i2t_map", "t2i_map", "avg_map")})

    def to_json(self) -> dict:
        return asdict(self)


class MapQuery(TypedDict):
    """A query placed on a map: where, what it is, its top hits (gallery rows), its AP and class read."""
    xy: Any  # [2] map position
    modality: str
    label: int | None
    description: str
    target: str
    hits: list[int]
    ap: float | None
    info: dict | None  # QueryInfo.to_dict()


class MapColour(TypedDict):
    """What a map's points are coloured by (cmr_demo.serve.map_colours)."""
    by: str  # class, modality, ap, ap_diff, rank
    scale: str
    base: str | None
    other: str | None
    title: str
    values: Any  # {"image": [N], "text": [N]} per-point values, or None when coloured by class or modality


class MapView(TypedDict):
    """One objective's map (RetrievalService.map_view): every gallery item's place for both modalities, the query
    placed with its top hits, and the colouring. Arrays stay numpy here; the API's answer lists them."""
    objective: str
    image_xy: Any  # [N, 2]
    text_xy: Any  # [N, 2]
    labels: Any  # [N] class ids
    class_names: list[str]
    query: MapQuery | None
    colour: MapColour
