"""The frozen CLIP backbone: spec kinds and loading through open_clip (`clip`), cached features per dataset
(`features`), extraction as its own stage on one process or many (`extract`), and contrastive pre-training
of a small CLIP from scratch (`pretrain`)."""
