"""The paper's studies as sweeps of training jobs: modality imbalance and hyper-parameter sensitivity
(`study`; `python -m cmr_demo.experiments.study`)."""
