"""Feature extraction speed: images/s and texts/s per backbone, on this machine's CPU (or --device cuda).

    python bench/extract.py [--backbones shapes-rn:assets/demo/backbone/backbone.safetensors ViT-B-32:random]
                            [--images 256] [--device cpu] [--precision fp32]

Images and captions come from the shapes world (64 px, resized by each backbone's own preprocessing, as in
a real run). One warm-up batch is excluded. Writes bench/results/extract.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cmr_demo.backbone import load_backbone  # noqa: E402
from cmr_demo.data.shapes import render_item  # noqa: E402

DEFAULT = ["shapes-rn:assets/demo/backbone/backbone.safetensors", "ViT-B-32:random"]
GPU_GOAL = 2000  # images/s for ViT-B-32 on one H200 (the goal; needs a GPU)


def measure(spec: str, n: int, device: str, precision: str, batch: int) -> dict:
    backbone = load_backbone(spec, device=device, precision=precision)
    items = [render_item(i) for i in range(n + batch)]
    images, texts = [it[0] for it in items], [it[1] for it in items]
    backbone.encode_images(images[:batch], batch_size=batch, progress=False)  # warm-up
    backbone.encode_texts(texts[:batch], progress=False)
    start = time.perf_counter()
    backbone.encode_images(images[batch:], batch_size=batch, progress=False)
    img_s = n / (time.perf_counter() - start)
    start = time.perf_counter()
    backbone.encode_texts(texts[batch:], progress=False)
    txt_s = n / (time.perf_counter() - start)
    return {"backbone": spec, "device": device, "precision": precision, "images_per_s": img_s,
            "texts_per_s": txt_s, "feature_dim": backbone.feature_dim, "n": n}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", nargs="+", default=DEFAULT)
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "extract"))
    args = p.parse_args()
    rows = [measure(spec, args.images, args.device, args.precision, args.batch_size) for spec in args.backbones]
    machine = (torch.cuda.get_device_name(0) if args.device.startswith("cuda") else
               f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads")
    lines = [f"Feature extraction, {time.strftime('%Y-%m-%d %H:%M')}, {machine}, "
             f"command `python bench/extract.py {' '.join(sys.argv[1:])}`", "",
             "| backbone | device | precision | feature dim | images/s | texts/s |", "|---|---|---|---|---|---|"]
    lines += [f"| `{r['backbone']}` | {r['device']} | {r['precision']} | {r['feature_dim']} | "
              f"{r['images_per_s']:,.0f} | {r['texts_per_s']:,.0f} |" for r in rows]
    lines += ["", f"GPU goal (ViT-B-32, one H200, bf16): >= {GPU_GOAL:,} images/s"
              + ("" if args.device.startswith("cuda") else " -- not measured in this run (no GPU)")]
    Path(args.out + ".json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
