"""Every learning objective of the study behind one signature and one registry.

`objective(img_emb [Bi, D], txt_emb [Bt, D], labels [B], image_mask=None, text_mask=None)` returns
a dict with the total under "loss" and its named terms. Embeddings are unit-norm head outputs.
Masks drop rows of one modality (the paper's modality-imbalance setting: a pair whose text is
withheld trains its image only); every objective here works on unpaired, labelled sets, since
relevance is class membership. Objectives that own parameters (classifier, prototypes, proxies)
own them here, so the heads are identical across objectives.

Deliberately unlike the official code: the PAN (prototype) objective is not silently replaced,
semi-hard and all-negative triplets are what their names say, and Proxy-NCA / Proxy-Anchor work.
"""
from __future__ import annotations

import math
import re
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

Terms = dict[str, torch.Tensor]


def sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances [A, B] (in [0, 4] for unit vectors)."""
    return (a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2 * a @ b.T).clamp(min=0)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over mask; exactly 0 (still in the graph) when the mask is empty, never NaN."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


class Objective(nn.Module):
    """Base class: applies the masks, then `terms(img, yi, txt, yt)` returns named loss terms."""
    name: ClassVar[str]
    kind: ClassVar[str]  # "pair-wise" or "class-wise", as in the study
    about: ClassVar[str] = ""  # one line for people: what it does to the common space (shown by the app)
    class_source: ClassVar[str | None] = None  # what `class_scores` come from, in words; None: it has none
    defaults: ClassVar[dict[str, float]] = {}  # the official code's (the paper's) settings
    # the values a bundle build tries for each defining option, on validation (`cmr_demo.train.tuning`), in the order
    # they are tuned; empty: nothing to tune (why, in `untuned`)
    grid: ClassVar[dict[str, tuple[float, ...]]] = {}
    untuned: ClassVar[str] = ""

    def __init__(self, num_classes: int, embed_dim: int, **options: float):
        super().__init__()
        unknown = set(options) - set(self.defaults)
        if unknown:
            raise ValueError(f"objective '{self.name}' has no option(s) {sorted(unknown)}; "
                             f"its options are {self.defaults or 'none'}")
        self.num_classes, self.embed_dim = num_classes, embed_dim
        self.options = {**self.defaults, **{k: float(v) for k, v in options.items()}}

    def forward(self, img_emb, txt_emb, labels, image_mask=None, text_mask=None) -> Terms:
        yi = yt = labels
        if image_mask is not None:
            img_emb, yi = img_emb[image_mask], labels[image_mask]
        if text_mask is not None:
            txt_emb, yt = txt_emb[text_mask], labels[text_mask]
        terms = self.terms(img_emb.float(), yi, txt_emb.float(), yt)
        return {"loss": sum(terms.values()), **terms}

    def terms(self, img, yi, txt, yt) -> Terms:
        raise NotImplementedError

    def class_scores(self, emb: torch.Tensor) -> torch.Tensor | None:
        """[N, D] embeddings -> [N, C] scores from the objective's own class parameters (higher = more
        that class), or None when it has none (pair-wise objectives). Any monotone scale will do: the
        app calibrates a temperature on the bundle before turning scores into confidences."""
        return None


# ---------------------------------------------------------------- pair-wise objectives
class Contrastive(Objective):
    """Same-class image-text pairs pulled together, other pairs pushed past a margin.

    `form` 0 is the official code's: `relu(margin - d^2)` on squared distances. Between unit vectors d^2 = 2 - 2 cos,
    so at its margin 0.2 a pair is pushed only while its cosine is above 0.9: on our data that never happens and cl
    trains as ml. `form` 1 is Hadsell et al.'s (2006) `max(0, margin - d)^2`. The grid tries margins that act.
    Positives and negatives are each averaged over their own pairs (balanced); the official code averages one sum
    over all pairs, where a negative pair weighs (C - 1) times more than here with C balanced classes."""
    name, kind, defaults = "cl", "pair-wise", {"margin": 0.2, "form": 0.0}
    grid = {"margin": (0.2, 0.5, 1.0), "form": (0.0, 1.0)}
    about = "contrastive: pulls same-class image-text pairs together, pushes other pairs a margin apart"

    def terms(self, img, yi, txt, yt):
        d2, pos = sq_dist(img, txt), yi[:, None] == yt[None, :]
        margin = self.options["margin"]
        if self.options["form"] == 1.0:
            push = F.relu(margin - (d2 + 1e-12).sqrt()).pow(2)  # +1e-12: a finite gradient at d = 0
        elif self.options["form"] == 0.0:
            push = F.relu(margin - d2)
        else:
            raise ValueError(f"cl's form is 0 (the official relu(margin - d^2)) or 1 (Hadsell's max(0, margin - d)^2); "
                             f"got {self.options['form']:g}")
        return {"positive": masked_mean(d2, pos), "negative": masked_mean(push, ~pos)}


class ModalityInvariance(Objective):
    """Only the pull term: same-class image-text pairs together (collapse is what the study shows)."""
    name, kind, defaults = "ml", "pair-wise", {"weight": 1.0}
    untuned = "its weight scales its only term, and Adam's steps do not change with the loss's scale"
    about = "modality invariance: only pulls same-class image-text pairs together (nothing pushes classes apart)"

    def terms(self, img, yi, txt, yt):
        d2, pos = sq_dist(img, txt), yi[:, None] == yt[None, :]
        return {"positive": self.options["weight"] * masked_mean(d2, pos)}


class Triplet(Objective):
    """Cross-modal triplets (anchor in one modality, positive and negative in the other), both ways.

    All negatives: the mean hinge over every valid (anchor, positive, negative) triplet. Computed
    exactly without the [A, P, N] cube: per anchor, negatives' distances are sorted once, and the
    hinge sum over the negatives a positive violates is count * (margin + d_ap) - prefix sum of d_an.
    """
    name, kind, defaults = "tl", "pair-wise", {"margin": 0.2}
    grid = {"margin": (0.2, 0.5, 1.0)}
    about = "triplet: a matching item of the other modality must be nearer than a non-matching one, by a margin"
    semi_hard: ClassVar[bool] = False

    def _one_way(self, anchor, ya, other, yo) -> torch.Tensor:
        margin = self.options["margin"]
        d2, same = sq_dist(anchor, other), ya[:, None] == yo[None, :]  # [A, O]
        neg_sorted = torch.sort(d2.masked_fill(same, torch.inf), dim=1).values  # negatives first, ascending
        finite = torch.isfinite(neg_sorted)
        # [A, O+1], prefix[k] = sum of k smallest
        prefix = F.pad(torch.where(finite, neg_sorted, 0).cumsum(dim=1), (1, 0))
        key = torch.where(finite, neg_sorted, torch.finfo(d2.dtype).max).detach().contiguous()
        hi = torch.searchsorted(key, (d2 + margin).detach().contiguous())  # negatives with d_an < d_ap + margin
        lo = torch.searchsorted(key, d2.detach().contiguous(), right=True) if self.semi_hard else torch.zeros_like(hi)
        count = (hi - lo).to(d2.dtype)  # semi-hard: only d_ap < d_an < d_ap + margin
        # [A, O], summed over negatives
        hinge_sum = count * (margin + d2) - (prefix.gather(1, hi) - prefix.gather(1, lo))
        if self.semi_hard:
            triplets = (count * same).sum()
        else:
            triplets = (same.sum(1) * (~same).sum(1)).sum().to(d2.dtype)  # every (positive, negative) per anchor
        return (hinge_sum * same).sum() / triplets.clamp(min=1)

    def terms(self, img, yi, txt, yt):
        return {"image_anchor": self._one_way(img, yi, txt, yt),
                "text_anchor": self._one_way(txt, yt, img, yi)}


class SemiHardTriplet(Triplet):
    """Triplets whose negative is farther than the positive but still violates the margin.

    Every semi-hard negative of an (anchor, positive) pair counts, averaged over all such triplets in the batch
    (the batch-all semi-hard variant); FaceNet and the official code take one semi-hard negative per pair."""
    name, semi_hard = "tl-semihard", True
    about = "triplet on semi-hard negatives: only non-matching items just beyond the matching one count"


# ---------------------------------------------------------------- class-wise objectives
class ClassWise(Objective):
    """Class-wise objectives score each embedding against class parameters, one term per modality."""
    kind = "class-wise"

    def item_loss(self, emb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def terms(self, img, yi, txt, yt):
        return {name: self.item_loss(emb, y) if len(y) else emb.sum() * 0
                for name, emb, y in (("image", img, yi), ("text", txt, yt))}


class CosineClassifier(nn.Module):
    """The shared classifier: Linear(D -> C, bias) with weight rows re-normalised at every forward."""

    def __init__(self, embed_dim: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(embed_dim, num_classes)

    def forward(self, emb):
        return F.linear(emb, F.normalize(self.linear.weight, dim=1), self.linear.bias)


class ClassifierObjective(ClassWise):
    """A class-wise objective scored through the shared cosine classifier, which it owns."""
    class_source = "classifier"

    def __init__(self, num_classes, embed_dim, **options):
        super().__init__(num_classes, embed_dim, **options)
        self.classifier = CosineClassifier(embed_dim, num_classes)

    def class_scores(self, emb):
        return self.classifier(emb)


class LabelRegression(ClassifierObjective):
    """DSCMR's label-space term: L2 norm of (classifier output - one-hot), averaged over items."""
    name, defaults = "lrl", {"weight": 1.0}
    untuned = "its weight scales its only term, and Adam's steps do not change with the loss's scale"
    about = "label regression: a shared classifier's output is pulled towards the one-hot class label"

    def item_loss(self, emb, y):
        diff = self.classifier(emb) - F.one_hot(y, self.num_classes).float()
        return self.options["weight"] * diff.norm(dim=1).mean()


class CrossEntropy(ClassifierObjective):
    """Softmax cross-entropy on the shared cosine classifier (scale 1 = the official logits)."""
    name, defaults = "ce", {"scale": 1.0}
    grid = {"scale": (1.0, 4.0, 16.0)}
    about = "cross-entropy: a shared classifier names each item's class (softmax)"

    def item_loss(self, emb, y):
        return F.cross_entropy(self.options["scale"] * self.classifier(emb), y)


class PrototypeContrastive(ClassWise):
    """PAN's objective: softmax over -squared distance to fixed random unit prototypes, one per class.

    The prototypes are drawn from `prototype_seed`; the trainer sets it to the training seed unless it is given,
    so a spread over seeds includes the prototypes' randomness."""
    name, defaults, class_source = "pcl", {"temperature": 1.0, "prototype_seed": 0.0}, "prototypes"
    grid = {"temperature": (0.25, 0.5, 1.0)}
    about = "prototype contrastive: each item is pulled to its class's fixed random prototype (the paper's choice)"

    def __init__(self, num_classes, embed_dim, **options):
        super().__init__(num_classes, embed_dim, **options)
        g = torch.Generator().manual_seed(int(self.options["prototype_seed"]))
        protos = F.normalize(torch.randn(num_classes, embed_dim, generator=g), dim=1)
        self.register_buffer("prototypes", protos)  # fixed, not learned; saved with the checkpoint

    def class_scores(self, emb):
        return -sq_dist(emb, self.prototypes) / self.options["temperature"]

    def item_loss(self, emb, y):
        return F.cross_entropy(self.class_scores(emb), y)


class ProxyNCA(ClassWise):
    """Proxy-NCA (Movshovitz-Attias et al. 2017): learned unit proxies, NCA over scaled distances."""
    name, defaults, class_source = "proxy-nca", {"scale": 3.0}, "proxies"
    grid = {"scale": (1.0, 3.0, 8.0)}
    about = "proxy-NCA: each item is pulled to its class's learned proxy and away from the other proxies"

    def __init__(self, num_classes, embed_dim, **options):
        super().__init__(num_classes, embed_dim, **options)
        self.proxies = nn.Parameter(torch.randn(num_classes, embed_dim) / math.sqrt(embed_dim))

    def class_scores(self, emb):
        return -sq_dist(emb, F.normalize(self.proxies, dim=1))

    def item_loss(self, emb, y):
        d2 = self.options["scale"] ** 2 * sq_dist(emb, F.normalize(self.proxies, dim=1))  # [B, C]
        own = F.one_hot(y, self.num_classes).bool()
        negatives = torch.logsumexp(-d2.masked_fill(own, float("inf")), dim=1)
        return (d2[own] + negatives).mean()  # -log(exp(-d_y) / sum_{c != y} exp(-d_c))


class ProxyAnchor(ClassWise):
    """Proxy-Anchor (Kim et al. 2020): each proxy anchors its positives and negatives in the batch.

    Its alpha 32 comes from metric-learning image sets; here it is too sharp and the objective collapses (its
    proxies' learning rate is not the cause: the original's 100x gives no better). The grid tries softer ones."""
    name, defaults, class_source = "proxy-anchor", {"alpha": 32.0, "delta": 0.1}, "proxies"
    grid = {"alpha": (4.0, 8.0, 16.0, 32.0), "delta": (0.0, 0.1, 0.2)}
    about = "proxy-anchor: each class's learned proxy pulls the batch's items of its class and pushes the rest"

    def __init__(self, num_classes, embed_dim, **options):
        super().__init__(num_classes, embed_dim, **options)
        self.proxies = nn.Parameter(torch.randn(num_classes, embed_dim) * math.sqrt(2.0 / num_classes))

    def class_scores(self, emb):
        return emb @ F.normalize(self.proxies, dim=1).T

    def item_loss(self, emb, y):
        alpha, delta = self.options["alpha"], self.options["delta"]
        cos = emb @ F.normalize(self.proxies, dim=1).T  # [B, C]
        pos = F.one_hot(y, self.num_classes).bool()
        # log(1 + sum exp(z)) as softplus(logsumexp(z)): stable for alpha in the hundreds; the finite
        # fill (not -inf) keeps gradients finite for a class with no member in the batch
        soft = lambda z, keep: F.softplus(torch.logsumexp(z.masked_fill(~keep, -1e4), dim=0))  # noqa: E731
        pos_term, neg_term = soft(-alpha * (cos - delta), pos), soft(alpha * (cos + delta), ~pos)  # [C]
        present = pos.any(0)
        return pos_term[present].sum() / present.sum().clamp(min=1) + neg_term.sum() / self.num_classes


# ---------------------------------------------------------------- registry and hybrids
OBJECTIVES: dict[str, type[Objective]] = {cls.name: cls for cls in (
    Contrastive, ModalityInvariance, Triplet, SemiHardTriplet,
    LabelRegression, CrossEntropy, PrototypeContrastive, ProxyNCA, ProxyAnchor)}
STUDY = ("cl", "ml", "tl", "tl-semihard", "lrl", "ce", "pcl")  # the paper's six + semi-hard variant
_TERM = re.compile(r"^\s*(?:(\d+(?:\.\d*)?|\.\d+)\s*\*\s*)?([a-z][a-z0-9-]*)\s*$")


class Hybrid(Objective):
    """A weighted sum such as `pcl+0.5*tl`; each part keeps its own parameters and options."""
    kind, defaults = "hybrid", {}

    def __init__(self, name: str, parts: list[tuple[float, Objective]]):
        super().__init__(parts[0][1].num_classes, parts[0][1].embed_dim)
        self.name, self.weights = name, [w for w, _ in parts]
        self.parts = nn.ModuleList([obj for _, obj in parts])
        self.class_source = next((p.class_source for p in self.parts if p.class_source), None)

    def class_scores(self, emb):
        """The first part that has class parameters speaks for the hybrid (pcl in pcl+0.5*tl)."""
        return next((p.class_scores(emb) for p in self.parts if p.class_source), None)

    def terms(self, img, yi, txt, yt):
        out: Terms = {}
        for w, obj in zip(self.weights, self.parts):
            for term, value in obj.terms(img, yi, txt, yt).items():
                out[f"{obj.name}/{term}"] = w * value
        return out


def list_objectives() -> list[str]:
    return list(OBJECTIVES)


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown objective '{name}'; valid: {list_objectives()} or 'all', "
                      f"and hybrids such as 'pcl+tl' or 'pcl+0.5*tl'")


def parse_hybrid(spec: str) -> list[tuple[float, str]]:
    parts = []
    for term in spec.split("+"):
        match = _TERM.match(term)
        if not match or match.group(2) not in OBJECTIVES:
            raise _unknown(term.strip() or spec)
        parts.append((float(match.group(1) or 1.0), match.group(2)))
    return parts


def option_defaults(spec: str) -> dict[str, float]:
    """Every option an objective (or each part of a hybrid) declares, with its default: {'margin': 0.2, ...}."""
    return {k: v for _, part in parse_hybrid(spec) for k, v in OBJECTIVES[part].defaults.items()}


def option_grid(spec: str) -> dict[str, tuple[float, ...]]:
    """The values tried for each tunable option of an objective, or of each part of a hybrid (parts sharing an
    option name share its values), in the order they are tuned: {'temperature': (0.25, 0.5, 1.0), ...}."""
    out: dict[str, tuple[float, ...]] = {}
    for _, part in parse_hybrid(spec):
        for key, values in OBJECTIVES[part].grid.items():
            out[key] = tuple(sorted(set(out.get(key, ())) | set(values)))
    return out


def untuned_reason(spec: str) -> str:
    """Why an objective has no grid ('' when it has one)."""
    if option_grid(spec):
        return ""
    reasons = {OBJECTIVES[p].untuned for _, p in parse_hybrid(spec) if OBJECTIVES[p].untuned}
    return "; ".join(sorted(reasons)) or "it has no option to tune"


def expand_objectives(spec: str) -> list[str]:
    """'all' -> every registered non-hybrid objective; 'a,b' -> [a, b] (each validated)."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    out: list[str] = []
    for name in names:
        for item in (list_objectives() if name == "all" else [name]):
            parse_hybrid(item)
            if item not in out:
                out.append(item)
    if not out:
        raise _unknown(spec)
    return out


def build_objective(spec: str, num_classes: int, embed_dim: int,
                    options: dict[str, float] | None = None) -> Objective:
    """Build one objective (or hybrid). `options` go to every part that declares them; an option
    no part declares is an error, so a typo never passes silently."""
    options = dict(options or {})
    parts = parse_hybrid(spec)
    used: set[str] = set()
    built = []
    for weight, name in parts:
        cls = OBJECTIVES[name]
        mine = {k: v for k, v in options.items() if k in cls.defaults}
        used |= set(mine)
        built.append((weight, cls(num_classes, embed_dim, **mine)))
    if set(options) - used:
        raise ValueError(f"option(s) {sorted(set(options) - used)} belong to no part of '{spec}'; "
                         f"options there: {sorted({k for _, n in parts for k in OBJECTIVES[n].defaults})}")
    if len(built) == 1 and built[0][0] == 1.0:
        return built[0][1]
    return Hybrid(spec.replace(" ", ""), built)
