"""What the bundle can say about a query before ranking: its likely class, how sure, and whether it
belongs to the bundle's world at all.

Why: retrieval always returns a ranking, so "a dog" against a gallery of coloured shapes gets
confident-looking scores. The app states instead (a) the class the objective itself would assign,
with a confidence calibrated on the bundle, and (b) an in/out-of-world flag, so a user can tell a
bad answer from a question the gallery cannot answer.

- Class scores come from the ranking itself (`NeighbourScorer`): the query's nearest gallery items of the other
  modality, found by the index that ranks the results, so the read cannot contradict them (an objective's own
  classifier once read "a green triangle" as a red triangle while every result was a green triangle). One
  temperature per objective and modality turns scores into probabilities, fitted on gallery items as queries (their
  own pair left out; a seeded sample of 2,000 on larger galleries) by minimising the negative log-likelihood.
  A text naming a colour or a shape no class has is told so (`ClassGroups.unknown`).
- Texts: the share of the query's content words that the gallery's captions use. A caption-trained
  backbone has never seen other words (a tiny CLIP pre-trained on its world has untrained embeddings
  for them), and feature distances do not separate such texts (measured: kNN similarity to the
  gallery captions gives 0.49-0.88 misses at 0.02-0.06 false alarms). A text is in the world when more
  than MIN_COVERAGE of its content words are the world's.
- Images: the bundle's own picture check when it has one (`cmr_demo.bundle.world_check`, fitted at build time on
  the world's pictures against noise, writing, other drawings ...: it says what the picture looks like);
  otherwise cosine similarity of the backbone features to the nearest gallery image, against a threshold
  calibrated on the gallery itself: the IMAGE_QUANTILE quantile of every gallery image's similarity to its
  nearest other gallery image (so about that share of in-world images is flagged).
"""
from __future__ import annotations

import re
import threading

import numpy as np
import torch

from cmr_demo.sampling import seeded_rows

MIN_COVERAGE = 0.5  # more than half of a text's content words must be words of the world ("a red dog": out)
IMAGE_QUANTILE = 0.01  # false-alarm rate the image threshold is set for, on the gallery itself
WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
STOPWORDS = frozenset(
    "a an the and or of on in at to with without by for from into onto over under near next its it is are was "
    "were be been this that these those there here some any one his her their my your our me you i we they "
    "very just please show find me image images picture pictures photo photos".split())


class ClassGroups:
    """The bundle's named groupings of its classes (`about.class_groups`, e.g. by shape and by colour) as index
    lists, and how a query is read with them: the most probable group of each grouping, and the most probable
    class inside the first grouping's best group (a drawing in a colour no class has is still read as its shape)."""

    def __init__(self, groupings: dict[str, dict[str, list[str]]] | None, class_names: list[str]):
        index = {c: n for n, c in enumerate(class_names)}
        self.groupings = {kind: {g: [index[c] for c in members if c in index] for g, members in groups.items()}
                          for kind, groups in (groupings or {}).items()}

    def read(self, probs: np.ndarray) -> tuple[int, dict]:
        """[C] probabilities -> (the class to name, {grouping: {"name", "confidence"}})."""
        out, best = {}, int(np.argmax(probs))
        for n, (kind, groups) in enumerate(self.groupings.items()):
            mass = {g: float(probs[rows].sum()) for g, rows in groups.items() if rows}
            top = max(mass, key=mass.get)
            out[kind] = {"name": top, "confidence": mass[top]}
            if n == 0:
                rows = groups[top]
                best = rows[int(np.argmax(probs[rows]))]
        return best, out

    def unknown(self, text: str) -> dict[str, list[str]]:
        """Words of `text` that name a value of a grouping's kind that no class has ({"colour": ["purple"]} where the
        classes come in red, yellow, green and blue), when the text names no value the classes have ("a blue circle on
        a white background" names its class's colour: the white is its background): the read then says so instead
        of quietly naming the nearest class. The kinds known by their words: colours and shapes (KIND_WORDS)."""
        said = set(words(text))
        said |= {w[:-1] for w in said if w.endswith("s")} | {w[:-2] for w in said if w.endswith("es")}
        out = {}
        for kind, groups in self.groupings.items():
            known = {w for g in groups for w in words(g)}
            vocabulary = KIND_WORDS.get(kind.lower().replace("color", "colour"), set())
            missing = sorted(w for w in said & vocabulary if w not in known)
            if missing and not said & known:
                out[kind] = missing
        return out


# words that name a colour or a shape (English): a query naming one that no class has is told so
KIND_WORDS = {
    "colour": set("red orange yellow green blue purple violet pink brown black white grey gray cyan magenta teal "
                  "turquoise navy gold silver beige maroon lime indigo".split()),
    "shape": set("star heart circle square triangle cross ring crescent hexagon arrow pentagon octagon oval ellipse "
                 "rectangle rhombus trapezoid".split())}  # not their synonyms (moon, disc, box): captions use those


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def content_words(text: str) -> list[str]:
    return [w for w in words(text) if w not in STOPWORDS]


def fit_temperature(scores: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the NLL of softmax(scores / T) on labelled rows ([N, C], [N]): temperature
    scaling (Guo et al. 2017). The NLL is convex in 1/T, so a golden-section search over log T in [-7, 7] finds
    its minimum (to 1e-6 in log T); no optimiser library at serving time."""
    s = torch.from_numpy(np.asarray(scores, np.float64))
    y = torch.from_numpy(np.asarray(labels, np.int64))

    def nll(log_t: float) -> float:
        return float(torch.nn.functional.cross_entropy(s / np.exp(log_t), y))
    ratio = (np.sqrt(5) - 1) / 2
    lo, hi = -7.0, 7.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    while hi - lo > 1e-6:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return float(np.exp((lo + hi) / 2))


NEIGHBOURS = 30  # gallery items of the searched modality a class read looks at (the top of the query's own ranking)
PER_CLASS = 3  # a class's score: the mean similarity of its best PER_CLASS among them
NEIGHBOUR_ROWS = 2000  # gallery queries of each modality the neighbour read's temperature is fitted on


class NeighbourScorer:
    """Class reads from the ranking itself: a class's score is the mean similarity of its PER_CLASS best items among
    the query's NEIGHBOURS nearest gallery items of the other modality, found by the same index that ranks the
    results (`search(embeddings, modality, k) -> (scores, rows)`), so the read cannot contradict them (a query
    whose top results are green rings is read as a green ring). A class with fewer items among the neighbours has
    its missing ones counted a little below the last neighbour. One temperature per query modality, fitted on
    gallery items as queries with their own pair left out (and on the bundle's labelled related pictures)."""
    source = "nearest gallery items"

    def __init__(self, search, labels: np.ndarray, num_classes: int, image_emb: np.ndarray, text_emb: np.ndarray,
                 related: tuple[np.ndarray, np.ndarray] | None = None):
        self.search, self.labels, self.num_classes = search, np.asarray(labels), num_classes
        rows = _calibration_rows(len(labels), NEIGHBOUR_ROWS)
        image_scores, image_labels = self.scores(image_emb[rows], "image", own=rows), self.labels[rows]
        if related is not None:
            image_scores = np.concatenate([image_scores, self.scores(related[0], "image")])
            image_labels = np.concatenate([image_labels, related[1]])
        self.temperature = {"image": fit_temperature(image_scores, image_labels),
                            "text": fit_temperature(self.scores(text_emb[rows], "text", own=rows), self.labels[rows])}

    def scores(self, emb: np.ndarray, modality: str, own: np.ndarray | None = None) -> np.ndarray:
        """[N, D] queries of `modality` -> [N, C] class scores from their neighbours among the other modality's
        gallery items (`own`: each query's own gallery row, left out of its neighbours)."""
        sims, ids = self.search(np.atleast_2d(emb), "text" if modality == "image" else "image", NEIGHBOURS + 1)
        out = np.empty((len(sims), self.num_classes))
        for n, (s, rows) in enumerate(zip(sims, ids)):
            keep = rows >= 0 if own is None else (rows >= 0) & (rows != own[n])
            s, classes = s[keep][:NEIGHBOURS], self.labels[rows[keep][:NEIGHBOURS]]
            floor = (s[-1] if len(s) else 0.0) - 0.05
            best = np.full((self.num_classes, PER_CLASS), floor)
            for c in np.unique(classes):
                top = s[classes == c][:PER_CLASS]  # neighbours come best first
                best[c, :len(top)] = top
            out[n] = best.mean(1)
        return out

    def probabilities(self, emb: np.ndarray, modality: str) -> np.ndarray:
        """[N, D] embeddings of one modality's queries -> [N, C] calibrated class probabilities."""
        z = self.scores(np.atleast_2d(emb), modality) / self.temperature[modality]
        z = z - z.max(1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(1, keepdims=True)


CALIBRATION_ROWS = 5000  # gallery rows whose nearest other row calibrates the image check (all rows up to this)
TEMPERATURE_ROWS = 10000  # gallery items (both modalities each) the temperature is fitted on (all up to this)


def _calibration_rows(n: int, rows: int) -> np.ndarray:
    """All of n rows up to `rows`, else a seeded sample of `rows`, in order: calibration costs the same for any
    gallery size (a one-parameter fit, or a 1 % quantile, is as good from 10,000 rows as from 100,000)."""
    sample = seeded_rows(n, rows, 0)
    return np.arange(n) if sample is None else sample


def _nearest_other(g: np.ndarray, chunk: int = 2048, rows: int = CALIBRATION_ROWS) -> np.ndarray:
    """Cosine similarity of rows of unit-norm g [N, F] to their nearest other row: all N rows up to `rows`,
    else a seeded sample of `rows` of them (each still against all N: linear in N, so a 50,000-item gallery
    calibrates in a second; a 1 % quantile from 5,000 values is as good as from all). In row chunks."""
    pick = _calibration_rows(len(g), rows)
    out = np.empty(len(pick), np.float32)
    for start in range(0, len(pick), chunk):
        part = pick[start:start + chunk]
        sims = g[part] @ g.T
        sims[np.arange(len(part)), part] = -np.inf
        out[start:start + chunk] = sims.max(1)
    return out


class WorldCheck:
    """In/out-of-world tests calibrated on the bundle's gallery (see the module docstring)."""

    def __init__(self, captions: list[str], class_names: list[str], image_features: np.ndarray | None,
                 picture_check=None):
        self.picture_check = picture_check  # the bundle's own, fitted at build (cmr_demo.bundle.world_check)
        self.vocabulary = {w for t in captions for w in words(t)} | {w for c in class_names for w in words(c)}
        self.has_captions = any(t.strip() for t in captions)
        self.gallery = None
        self._calibrated = threading.Event()
        if image_features is not None and len(image_features) > 1:
            g = (image_features / np.maximum(np.linalg.norm(image_features, axis=1, keepdims=True), 1e-12)).astype(
                np.float32
            )
            self.gallery = g
            # the threshold takes seconds on a large gallery (5,000 rows against all): computed in the background,
            # so start-up does not wait; the first picture query waits for it if it comes first
            threading.Thread(target=self._calibrate, name="image-check-calibration", daemon=True).start()
        else:
            self._calibrated.set()

    def _calibrate(self) -> None:
        self._threshold: float | None = None
        try:
            self._threshold = float(np.quantile(_nearest_other(self.gallery), IMAGE_QUANTILE))
        except Exception as err:  # noqa: BLE001  (out of memory on a huge gallery: say so per query, keep serving)
            self._failure = f"{type(err).__name__}: {err}"
        finally:
            self._calibrated.set()

    @property
    def image_threshold(self) -> float | None:
        """The calibrated threshold (waits for the background calibration); None if it could not be computed."""
        self._calibrated.wait()
        return self._threshold

    def text(self, text: str) -> tuple[bool | None, str]:
        if not self.has_captions:
            return None, "this bundle has no captions to compare the words with"
        if not words(text):
            return False, "the text has no words at all"
        content = content_words(text)
        if not content:
            return None, "the text has no content words to judge by"
        unknown = [w for w in dict.fromkeys(content) if w not in self.vocabulary]
        coverage = 1 - sum(w not in self.vocabulary for w in content) / len(content)
        if coverage > MIN_COVERAGE:
            extra = f" (never used here: {', '.join(unknown[:4])})" if unknown else ""
            return True, f"{coverage:.0%} of its content words are words of this gallery's captions{extra}"
        share = "none" if coverage == 0 else f"only {coverage:.0%}"
        return False, (f"{share} of its content words occur in this gallery's captions (unknown here: "
                       f"{', '.join(unknown[:6])})")

    def image(self, features: np.ndarray) -> tuple[bool | None, str]:
        if self.picture_check is not None:
            return self.picture_check.judge(np.asarray(features, np.float32).reshape(-1))
        if self.gallery is None:
            return None, "this bundle stores no gallery features to compare the picture with"
        if self.image_threshold is None:
            return None, f"the image check could not be calibrated on this gallery ({self._failure[:120]})"
        f = np.asarray(features, np.float32).reshape(-1)
        sim = float((self.gallery @ (f / max(float(np.linalg.norm(f)), 1e-12))).max())
        verdict = sim >= self.image_threshold
        return verdict, (f"nearest gallery picture at similarity {sim:.3f}; threshold {self.image_threshold:.3f} "
                         f"(the {IMAGE_QUANTILE:.0%} quantile among the gallery's own pictures)")
