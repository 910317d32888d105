"""cmr_demo: supervised cross-modal retrieval on a frozen CLIP (a re-implementation of CLIP4CMR).

The short way in, in the spirit of openai/CLIP's `available_models` / `load` / `tokenize`:

    import cmr_demo
    cmr_demo.available_objectives()          # ['cl', 'ml', 'tl', ..., 'pcl']
    service = cmr_demo.load("assets/demo")   # a bundle, ready to search (RetrievalService)
    result = service.search(service.text_query("a red star"), "pcl", k=5)
    job = cmr_demo.TrainJob(cmr_demo.DataConfig("wikipedia:../shared/data/wikipedia"),
                            cmr_demo.ObjectiveSpec.parse("pcl,ce"))
    metrics = cmr_demo.train_heads(job)      # {objective: test mAP@all, per class, per query, ...}
    cmr_demo.build_bundle(job, "my_bundle")  # train + gallery + embeddings + maps, served by app.py

The package is laid out by stage: `data/` (readers), `backbone/` (the frozen CLIP, features, extraction,
pre-training), `train/` (heads, objectives, the fit loop, the training stage), `bundle/` (the folder
contract, building, verifying, loading, maps), `serve/` (search, analytics, map placement, the lab, the
JSON API and what the app shows), `experiments/` (the paper's studies). Names resolve lazily, so
`import cmr_demo` stays light (no torch until a name that needs it is used).
"""
from __future__ import annotations

import importlib

__version__ = "0.3.0"

_PUBLIC = {  # name -> (module that defines it, its name there)
    "available_objectives": ("cmr_demo.train.objectives", "list_objectives"),
    "ObjectiveSpec": ("cmr_demo.train.spec", "ObjectiveSpec"),
    "TrainJob": ("cmr_demo.train.stage", "TrainJob"), "DataConfig": ("cmr_demo.train.stage", "DataConfig"),
    "FeatureConfig": ("cmr_demo.train.stage", "FeatureConfig"),
    "train_heads": ("cmr_demo.train.stage", "train"),  # not `train`: that name is the stage's package
    "TrainConfig": ("cmr_demo.train.fit", "TrainConfig"), "HeadConfig": ("cmr_demo.train.heads", "HeadConfig"),
    "build_bundle": ("cmr_demo.bundle.build", "build"), "verify_bundle": ("cmr_demo.bundle.verify", "verify"),
    "load": ("cmr_demo.serve.service", "load"), "RetrievalService": ("cmr_demo.serve.service", "RetrievalService"),
    "load_data": ("cmr_demo.data", "load_data"), "load_backbone": ("cmr_demo.backbone.clip", "load_backbone"),
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'cmr_demo' has no attribute {name!r}")
    module, attr = _PUBLIC[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
