"""The shapes of a request and of its answer, one of each for every way in: the page, the JSON API and Python.

Why one module: a request is checked once, where it enters (`SearchRequest.check`), into a typed value every
layer below trusts; an answer is one `SearchResult` from the service to both the page and the JSON API, which
serialises it as it is (`SearchResult.to_json`, the same fields the API documents) instead of copying it.
`Hit` and `SearchResult` are pydantic dataclasses: plain dataclasses to the service, a documented schema to
FastAPI, with the public names (`class`) and the internal fields (`index`, `label`) kept apart.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

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
    info: dict[str, Any] | None = None  # QueryInfo.to_dict(): predicted class, confidence, in/out-of-world
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


def result_from_dict(data: object) -> SearchResult:
    """A SearchResult back from `to_dict` (a page's state), or InputError when it is not one."""
    try:
        return SearchResult(**{**data, "hits": [Hit(**h) for h in data["hits"]]})  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        raise InputError("the page sent results this app cannot show: run the search again") from None
