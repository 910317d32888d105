"""How well does the frozen tiny CLIP know its world? Zero-shot beside a linear probe and a supervised ceiling.

    python bench/backbone.py --pretrain runs/pretrain [--supervised-steps 3000]

- zero-shot: the pre-training's own score ("a photo of a {class}." prompts) on the 8,000-item test
  split of shapes:40000, read from PRETRAIN/pretrain.json;
- linear probe: multinomial logistic regression on the frozen image features of the train split
  (28,000 items), regularisation chosen on val, accuracy on the same test split;
- supervised ceiling: the same image tower, from scratch, plus a linear classifier, trained with class
  labels on the same stream of pictures with the same batch size, optimizer family and schedule.
Writes bench/results/backbone.json; `python bench/report.py` turns it into the README's table.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cmr_demo.backbone.clip import load_backbone, open_clip, register_model_configs  # noqa: E402
from cmr_demo.files import save_json  # noqa: E402
from cmr_demo.data import load_data  # noqa: E402
from cmr_demo.data.shapes_stream import StreamConfig, render_batch  # noqa: E402
from cmr_demo.backbone.pretrain import PretrainConfig, _pixels_to_model, lr_at  # noqa: E402
from cmr_demo.provenance import stamp  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def linear_probe(backbone, data) -> dict:
    """Logistic regression on frozen, L2-normalised image features; C picked on val."""
    from sklearn.linear_model import LogisticRegression
    feats = {k: backbone.encode_images(s.images, batch_size=256, progress=False) for k, s in data.splits().items()}
    feats = {k: v / np.linalg.norm(v, axis=1, keepdims=True) for k, v in feats.items()}
    best = None
    for c in (1.0, 10.0, 100.0):
        clf = LogisticRegression(C=c, max_iter=2000).fit(feats["train"], data.train.labels)
        val = clf.score(feats["val"], data.val.labels)
        if best is None or val > best[0]:
            best = (val, c, clf)
    val, c, clf = best
    return {"accuracy": float(clf.score(feats["test"], data.test.labels)), "val_accuracy": float(val), "C": c,
            "n_train": len(data.train), "n_test": len(data.test)}


class LabelledStream(torch.utils.data.IterableDataset):
    """The pre-training stream's batches with their class ids (which pre-training itself never sees)."""

    def __init__(self, cfg: StreamConfig, steps: int):
        self.cfg, self.steps = cfg, steps

    def __iter__(self):
        for step in range(self.steps):  # one worker: batches in step order
            pixels, _, labels = render_batch(step, self.cfg)
            yield torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


def supervised(cfg: PretrainConfig, steps: int, test, eval_every: int = 500) -> dict:
    """The pre-training's image tower from scratch + Linear(D -> C), cross-entropy on stream pictures."""
    register_model_configs()
    torch.manual_seed(cfg.seed)
    model, _, preprocess = open_clip.create_model_and_transforms(cfg.arch, pretrained=None)
    tower = model.visual
    head = torch.nn.Linear(model.visual.output_dim, len(test.class_names))
    params = list(tower.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=cfg.weight_decay)
    convert, stream = _pixels_to_model(preprocess), StreamConfig(cfg.batch_size, cfg.group, cfg.hard_fraction)
    test_x = convert(torch.from_numpy(np.stack([np.asarray(im) for im in test.images])).permute(0, 3, 1, 2))
    schedule = PretrainConfig(**{**cfg.__dict__, "steps": steps})

    def accuracy() -> float:
        tower.eval()
        with torch.no_grad():
            pred = torch.cat([head(tower(test_x[i:i + 512])).argmax(1) for i in range(0, len(test_x), 512)])
        tower.train()
        return float((pred.numpy() == test.labels).mean())

    curve, start = [], time.perf_counter()
    loader = torch.utils.data.DataLoader(
        LabelledStream(stream, steps), batch_size=None, num_workers=1, prefetch_factor=4
    )
    for step, (pixels, labels) in enumerate(loader):
        x = convert(pixels)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, step / steps, schedule)
        loss = torch.nn.functional.cross_entropy(head(tower(x)), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            curve.append({"step": step + 1, "loss": float(loss), "test_accuracy": accuracy(),
                          "seconds": round(time.perf_counter() - start, 1)})
            print(f"supervised step {step + 1}: test accuracy {curve[-1]['test_accuracy']:.3f}", flush=True)
    return {"accuracy": curve[-1]["test_accuracy"], "steps": steps, "batch_size": cfg.batch_size,
            "seconds": round(time.perf_counter() - start, 1), "curve": curve}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrain", default="runs/pretrain", help="folder written by python -m cmr_demo.backbone.pretrain")
    p.add_argument("--supervised-steps", type=int, default=3000, help="steps of the supervised ceiling")
    p.add_argument("--reuse-ceiling", default=None, metavar="JSON",
                   help="take the supervised ceiling from an earlier result of this script instead of training it "
                        "again "
                        "(it trains from scratch on the world's scenes, so it does not depend on the backbone "
                        "measured)")
    p.add_argument("--out", default=str(RESULTS / "backbone"))
    args = p.parse_args()
    summary = json.loads((Path(args.pretrain) / "pretrain.json").read_text())
    cfg = PretrainConfig(**summary["config"])
    data = load_data(cfg.eval_data)
    backbone = load_backbone(f"{cfg.arch}:{Path(args.pretrain) / 'backbone.safetensors'}")
    result = {**stamp(["python", "bench/backbone.py", *sys.argv[1:]]),
              "zero_shot": summary["zero_shot_test"],
              "pretrain": {k: summary[k] for k in ("steps", "pairs_seen", "train_s", "stopped_by")},
              "linear_probe": linear_probe(backbone, data),
              "supervised": (json.loads(Path(args.reuse_ceiling).read_text())["supervised"] if args.reuse_ceiling
                             else supervised(cfg, args.supervised_steps, data.test))}
    result["zero_shot"].pop("per_class", None)
    save_json(Path(args.out).with_suffix(".json"), result)
    print(json.dumps({k: result[k]["accuracy"] for k in ("zero_shot", "linear_probe", "supervised")}))
    print("the README block: python bench/report.py")


if __name__ == "__main__":
    main()
