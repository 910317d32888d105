"""One seeded sample of rows, for every place that works on a bounded share of a large set (selection queries, the
rows a temperature or a threshold is fitted on, the points a map is fitted on): the same rows on every call."""
from __future__ import annotations

import numpy as np


def seeded_rows(n: int, limit: int, seed: int) -> np.ndarray | None:
    """None when all `n` rows fit in `limit` (use them all), else `limit` distinct rows drawn with `seed`, sorted."""
    if n <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
