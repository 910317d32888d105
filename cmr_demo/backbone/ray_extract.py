"""Feature extraction as Ray Data batches (`bundle build --ray`): a split's pictures and texts encoded by actors that
each load the backbone once, on GPUs when the cluster has them, on CPUs otherwise.

Why chunks, not Ray Data's own batching: each batch is one chunk of consecutive items of exactly the size the local
encoder uses (`--extract-batch-size` pictures, four times as many texts), encoded by the same `Backbone` methods, so
every feature is the one a local build computes, bit for bit on CPU. The pictures and texts go to the object store
once; a batch names only where its chunk starts.
"""
from __future__ import annotations

import numpy as np

from cmr_demo.ray_cluster import connect


class _Encode:
    """A Ray Data actor: the backbone, loaded once, and the split's items (fetched from the object store once)."""

    def __init__(self, spec: str, device: str, precision: str, batch_size: int, items: list):
        import ray

        from cmr_demo.backbone.clip import load_backbone
        self.backbone = load_backbone(spec, device=device, precision=precision)
        self.images, self.texts = ray.get(items[0]), ray.get(items[1])
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        starts, kinds, vectors = [], [], []
        for start, kind in zip(batch["start"].tolist(), batch["kind"].tolist()):
            if kind == "image":
                chunk = self.images[start:start + self.batch_size]
                out = self.backbone.encode_images(chunk, self.batch_size, 0, progress=False)
            else:
                chunk = self.texts[start:start + 4 * self.batch_size]
                out = self.backbone.encode_texts(chunk, batch_size=4 * self.batch_size, progress=False)
            starts.append(start)
            kinds.append(kind)
            vectors.append(out)
        return {"start": np.array(starts), "kind": np.array(kinds),
                "features": np.array([v.tobytes() for v in vectors], dtype=object),
                "rows": np.array([len(v) for v in vectors])}


class RayEncoder:
    """`encoder(split)` for `features.split_features`: (image, text) features of a split, computed on Ray."""

    def __init__(self, address: str | None, spec: str, device: str, precision: str, batch_size: int):
        self.address, self.spec, self.device, self.precision, self.batch_size = \
            address, spec, device, precision, batch_size

    def __call__(self, split) -> tuple[np.ndarray, np.ndarray]:
        connect(self.address)
        import ray
        import ray.data
        images, texts = list(split.images), list(split.texts)
        chunks = [{"start": s, "kind": "image"} for s in range(0, len(images), self.batch_size)] + \
                 [{"start": s, "kind": "text"} for s in range(0, len(texts), 4 * self.batch_size)]
        gpus = ray.cluster_resources().get("GPU", 0)
        actors = max(1, int(gpus) if gpus else int(ray.cluster_resources().get("CPU", 1)) // 2)
        device = "cuda" if gpus and self.device == "cpu" else self.device  # a GPU actor encodes on its GPU
        ds = ray.data.from_items(chunks, override_num_blocks=len(chunks)).map_batches(
            _Encode, batch_size=1, concurrency=min(actors, len(chunks)), num_gpus=1 if gpus else 0, num_cpus=1,
            fn_constructor_kwargs={"spec": self.spec, "device": device, "precision": self.precision,
                                   "batch_size": self.batch_size, "items": [ray.put(images), ray.put(texts)]})
        parts = {"image": {}, "text": {}}
        for row in ds.iter_rows():
            parts[row["kind"]][int(row["start"])] = np.frombuffer(row["features"], np.float32).reshape(row["rows"], -1)
        return tuple(np.concatenate([p[k] for k in sorted(p)]) if p else np.zeros((0, 0), np.float32)
                     for p in (parts["image"], parts["text"]))
