"""What the page decides without gradio: which bundle a request means, each bundle's starting values, whose
class a stated class is, page arithmetic. Plain Python, tested without a browser.

Why these rules exist:
- gradio_client sends every parameter it is not given with the page's starting value, which is the first
  bundle's; for another bundle such a value may name an objective it lacks or a text it cannot encode, so a
  value equal to the first bundle's default means the picked bundle's default (`Context.resolve`);
- a class stated for one text must never give ✓/✗ and AP to another text (`class_for`): the page records which
  text the class was stated for, and a search with another text ignores the class.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cmr_demo.serve import lab
from cmr_demo.serve.analytics import showcase, showcase_reason, spread
from cmr_demo.serve.inputs import InputError, check_choice, shown
from cmr_demo.serve.service import RetrievalService
from cmr_demo.serve.upload_store import UploadStore
from cmr_demo.ui.bundle_texts import text_examples

PAGE = 60  # gallery items per page when browsing


@dataclass
class Defaults:
    """The values the page starts with for one bundle (and sets when a user switches to it)."""
    objective: str
    objectives: list[str]
    others: list[str]
    query: str
    query_class: str
    a: str
    b: str
    seed: int
    why: str = ""  # why Compare opens on `query` ("" when it is just the bundle's first example)

    @classmethod
    def of(cls, s: RetrievalService) -> Defaults:
        """Compare and the maps open on the gallery caption that shows the objectives apart (`showcase`), with its
        class; else on the bundle's first example."""
        example = (text_examples(s) or [("", "")])[0]
        row = showcase(s.bundle) if s.encodes else None
        why = ""
        if row is not None:
            example = (s.bundle.items[row]["text"], s.class_names[int(s.bundle.labels[row])])
            why = showcase_reason(s.bundle, row)
        last = s.objectives[-1]
        seed = lab.base_settings(s.bundle, s.best)[0].seed if lab.has_lab(s.bundle) else 0
        paper = spread(s.bundle)  # the disagreement explorer opens on the best and the worst of the paper's six
        b = paper["worst"] if paper and paper["worst"] != s.best else (last if last != s.best else s.objectives[0])
        # the map beside the best one: the objective its AP difference is taken against, so both terms are on screen
        others = others_than(s.best, s)
        side = [b] if b in others else others[:1]
        return cls(s.best, list(s.objectives), side, example[0], example[1], s.best, b, seed, why)


def others_than(objective: str, s: RetrievalService) -> list[str]:
    return [o for o in s.objectives if o != objective]


@dataclass
class Context:
    """The served bundles ({name: service}, the first is the default), their defaults, and each session's lab runs."""
    services: dict[str, RetrievalService]
    lab_runs: lab.SessionRuns = field(default_factory=lab.SessionRuns)
    # gradio's upload folder (cmr_demo.serve.upload_store; the app factory makes it first): None, no pictures taken
    uploads: UploadStore | None = None

    def __post_init__(self) -> None:
        self.names = list(self.services)
        self.first = self.services[self.names[0]]
        # every objective of any bundle, in order of first appearance: Compare has one column per name
        self.all_objectives = list(dict.fromkeys(o for s in self.services.values() for o in s.objectives))
        self.defaults = {name: Defaults.of(s) for name, s in self.services.items()}

    def service(self, bundle: object, session: str | None = None) -> RetrievalService:
        """The served bundle named `bundle` ("" or None: the first), with the lab runs of `session` added."""
        base = self.first if not given(bundle) else self.services[check_choice(bundle, self.names, "bundle")]
        return self.lab_runs.service(session, base)

    def for_request(self, bundle: object, request: object = None) -> RetrievalService:
        """The request's edge: the service a page event or endpoint call means, the bundle it names (default the
        first) with its session's lab runs (a call without a session sees the bundle alone)."""
        return self.service(bundle, session_of(request))

    def base(self, bundle: object) -> RetrievalService:
        """The bundle's own service, whatever a session added (what the lab trains on)."""
        return self.service(bundle, None)

    def resolve(self, s: RetrievalService, key: str, value):
        """A parameter a program left at its default means the picked bundle's default (see the module docstring).
        Only a value equal to the first bundle's default is replaced, and only where it would not fit `s` (a
        whole objective list: always, so "all" stays all)."""
        first = getattr(self.defaults[self.names[0]], key)
        if s.name == self.names[0] or value != first:  # (a session's service of the first bundle is another object)
            return value
        fits = {"objective": lambda: value in s.objectives, "a": lambda: value in s.objectives,
                "b": lambda: value in s.objectives, "objectives": lambda: False,
                "others": lambda: all(o in s.objectives for o in value),
                "query": lambda: s.encodes, "query_class": lambda: value in s.class_names, "seed": lambda: False}[key]
        if fits():
            return value
        if key == "query_class":  # "" (unknown), never another text's class: the query text may be the one kept
            return ""
        return list(s.objectives) if key == "objectives" else getattr(self.defaults[s.name], key)


def session_of(request: object) -> str | None:
    """The gradio session a request belongs to (None: a call outside any session, e.g. from Python)."""
    return getattr(request, "session_hash", None)


def given(value) -> bool:
    """An optional argument was given: anything but None or blank text (wrong types then meet the checks)."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def item_id(value: object) -> str:
    """A gallery item id as a client sends it: always text. A number is refused, never read as a gallery row (with
    numeric ids, 83 meant the item in row 83, whose id was 96)."""
    if not isinstance(value, str):
        raise InputError(f"a gallery item id is text (e.g. \"83\", in quotes); got {shown(value)}")
    return value


def stated_for(query: str, query_class: str) -> str | None:
    """Which query a class was stated for: the text in the box when the class was set (None: no class)."""
    return query if query_class else None


def class_for(query_class: str, query: str, stated: str | None) -> str:
    """The stated class, or "" when it was stated for another text (pasted over, set by code): ✓/✗ and AP must
    never describe a query with another query's class. API calls carry no page state: their class is theirs."""
    return "" if query_class and stated is not None and stated != query else query_class


def page_number(page: object) -> int:
    """A page box's value as a page number from 1 (anything else, 1)."""
    if isinstance(page, bool) or not isinstance(page, (int, float)) or page != page or abs(page) > 2 ** 53:
        return 1
    return max(1, int(page))


def step_page(page: object, step: int) -> int:
    return max(1, page_number(page) + step)
