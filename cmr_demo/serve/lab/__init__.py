"""The objective lab: train one pair of heads live on a bundle's own features, with any objective and setting.

Why it exists: the paper's value is its study (which objective, how robust to missing texts or images,
how sensitive to hyper-parameters), and on a bundle's stored features one training run takes seconds.
Why it reproduces the bundle: it trains with `train.fit.fit` (the builder's code path) on the features the
builder trained on (`lab/features.safetensors`, float32) and scores with `train.stage.final_metrics`; the same
settings and seed therefore give the stored metrics.

A lab run never touches the bundle: its heads, gallery embeddings and map points live in the caller's
hands (the app keeps them in one user's session, see `RetrievalService.with_objective`). Its map points are
placed on the bundle's aligned map from their nearest neighbours in the run's own space, without UMAP.
"""
from cmr_demo.serve.lab.run import (MAX_SECONDS, TRAINING, LabFailure, LabJob, finish, gallery_view, lab_data,
                                    start, train_lab)
from cmr_demo.serve.lab.sessions import LabRun, SessionRuns, run_bytes
from cmr_demo.serve.lab.settings import (LIMITS, MAX_DIM, MAX_EPOCHS, MAX_PARTS, OBJECTIVES, Boxes, LabSettings,
                                         base_settings, changes, check_objective, has_lab, settings_for)

__all__ = ["LIMITS", "MAX_DIM", "MAX_EPOCHS", "MAX_PARTS", "MAX_SECONDS", "OBJECTIVES", "TRAINING", "Boxes",
           "LabFailure", "LabJob", "LabRun", "LabSettings", "SessionRuns", "base_settings", "changes",
           "check_objective", "finish", "gallery_view", "has_lab", "lab_data", "run_bytes", "settings_for", "start",
           "train_lab"]
