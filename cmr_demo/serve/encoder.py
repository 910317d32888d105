"""A query's backbone features: encoding texts and pictures, and the cache of recent texts.

Why its own class: encoding is the one costly step of a request and the one a features-only bundle cannot
do. Texts are cached (Compare and the maps ask for the same text again); the JSON API's batcher asks for
many texts in one backbone call.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from threading import Lock

import numpy as np

from cmr_demo.serve.inputs import InputError
from cmr_demo.serve.schema import Query

TEXT_CACHE = 512  # backbone features of recent text queries


class Encoder:
    """Backbone features [N, F] of queries for one bundle (None backbone: it refuses, saying what to do)."""

    def __init__(self, backbone, bundle_name: str, first_item_id: str):
        self.backbone = backbone
        self.encodes = backbone is not None  # new texts and pictures can be queries
        self.why_not = (f"bundle '{bundle_name}' ships features only (no backbone), so it cannot encode a new text "
                        f"or picture: query it with a gallery item instead (by id, e.g. '{first_item_id}', or picked "
                        f"from the gallery list)")
        self._texts: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = Lock()

    def require(self) -> None:
        if not self.encodes:
            raise InputError(self.why_not)

    def features(self, query: Query) -> np.ndarray:
        """[1, F] features of a live query (a picture or a text)."""
        return self.image_features(query) if query.modality == "image" else self.text_features([query.text])

    def image_features(self, query: Query) -> np.ndarray:
        return self.backbone.encode_images([query.image], progress=False)

    def cached_text_features(self, text: str) -> np.ndarray | None:
        with self._lock:
            hit = self._texts.get(text)
            if hit is not None:
                self._texts.move_to_end(text)
            return hit

    def text_features(self, texts: Sequence[str]) -> np.ndarray:
        """[N, F] features of cleaned texts: cached ones looked up, the rest encoded in one call."""
        found = {t: f for t in dict.fromkeys(texts) if (f := self.cached_text_features(t)) is not None}
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            feats = self.backbone.encode_texts(missing, progress=False)
            with self._lock:
                for n, text in enumerate(missing):  # copies: a slice would keep the whole batch alive in the cache
                    found[text] = self._texts[text] = feats[n:n + 1].copy()
                while len(self._texts) > TEXT_CACHE:
                    self._texts.popitem(last=False)
        return np.concatenate([found[t] for t in texts])
