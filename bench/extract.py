"""Feature extraction speed: images/s and texts/s per backbone, beside the ceilings measured in the same run.

    python bench/extract.py [--backbones shapes-rn:assets/demo/backbone/backbone.safetensors ViT-B-32:random]
                            [--images 256] [--device cpu|cuda] [--precision fp32|bf16]
                            [--num-workers 0 8] [--sources memory files]

Images and captions come from the shapes world (64 px, resized by each backbone's own preprocessing, as in
a real run). Two sources: `memory` (PIL images already decoded) and `files` (JPEGs on disk, decoded by the
DataLoader workers, as `manifest:` and `clip4cmr:` data are read). Beside each pipeline figure:
  * model only: the same network on ready-made input tensors already on the device (what the pipeline
    would reach if decoding and preprocessing cost nothing);
  * on a GPU, the arithmetic floor: the network's FLOPs per image (torch's FlopCounterMode) over the
    bf16 matrix-product rate measured on this card in this run.
One warm-up batch is excluded everywhere. Writes bench/results/extract.json and .md (or --out).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cmr_demo.backbone.clip import load_backbone  # noqa: E402
from cmr_demo.data.shapes import render_item  # noqa: E402
from cmr_demo.provenance import machine  # noqa: E402

DEFAULT = ["shapes-rn:assets/demo/backbone/backbone.safetensors", "ViT-B-32:random"]
GPU_GOAL = 2000  # images/s for ViT-B-32 on one H200 (the goal; needs a GPU)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device: torch.device, n: int = 8192, reps: int = 10) -> float:
    """bf16 matrix-product rate of this device (TFLOP/s), the ceiling for the FLOP floor."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e12


def model_only(backbone, batch: int, reps: int) -> tuple[float, float]:
    """(images/s on ready tensors on the device, FLOPs per image)."""
    from torch.utils.flop_counter import FlopCounterMode
    size = backbone.model.visual.image_size
    size = size if isinstance(size, (tuple, list)) else (size, size)
    x = torch.randn(batch, 3, *size, device=backbone.device)
    with torch.no_grad(), backbone._autocast():
        with FlopCounterMode(display=False) as counter:
            backbone.model.encode_image(x[:1])
        flops = counter.get_total_flops()
        for _ in range(2):
            backbone.model.encode_image(x)
        _sync(backbone.device)
        start = time.perf_counter()
        for _ in range(reps):
            backbone.model.encode_image(x)
        _sync(backbone.device)
    return batch * reps / (time.perf_counter() - start), float(flops)


def measure(backbone, images, texts, batch: int, workers: int) -> tuple[float, float]:
    backbone.encode_images(images[:batch], batch_size=batch, num_workers=workers, progress=False)  # warm-up
    _sync(backbone.device)
    start = time.perf_counter()
    backbone.encode_images(images[batch:], batch_size=batch, num_workers=workers, progress=False)
    img_s = (len(images) - batch) / (time.perf_counter() - start)
    backbone.encode_texts(texts[:batch], progress=False)
    start = time.perf_counter()
    backbone.encode_texts(texts[batch:], progress=False)
    return img_s, (len(texts) - batch) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", nargs="+", default=DEFAULT)
    p.add_argument("--images", type=int, default=256, help="timed images (and captions) per row")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--num-workers", type=int, nargs="+", default=[0], help="DataLoader decoding workers to try")
    p.add_argument("--sources", nargs="+", default=["memory"], choices=["memory", "files"])
    p.add_argument("--model-reps", type=int, default=5, help="timed batches for the model-only ceiling")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "extract"))
    args = p.parse_args()
    device = torch.device(args.device)
    items = [render_item(i) for i in range(args.images + args.batch_size)]
    pil, texts = [it[0] for it in items], [it[1] for it in items]
    tmp = tempfile.TemporaryDirectory()
    sources = {"memory": pil}
    if "files" in args.sources:
        sources["files"] = []
        for i, im in enumerate(pil):
            path = Path(tmp.name) / f"{i:06d}.jpg"
            im.save(path, quality=90)
            sources["files"].append(str(path))
    tflops = matmul_tflops(device) if device.type == "cuda" else None
    rows = []
    for spec in args.backbones:
        backbone = load_backbone(spec, device=args.device, precision=args.precision)
        ceiling, flops = model_only(backbone, args.batch_size, args.model_reps)
        for source in args.sources:
            for workers in args.num_workers:
                img_s, txt_s = measure(backbone, sources[source], texts, args.batch_size, workers)
                rows.append({"backbone": spec, "device": args.device, "precision": args.precision,
                             "source": source, "num_workers": workers, "batch_size": args.batch_size,
                             "images_per_s": img_s, "texts_per_s": txt_s, "model_only_images_per_s": ceiling,
                             "gflops_per_image": flops / 1e9, "feature_dim": backbone.feature_dim,
                             "flop_floor_images_per_s": tflops * 1e12 / flops if tflops else None,
                             "n": args.images})
                print(json.dumps(rows[-1]), flush=True)
        del backbone
    result = {"date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": f"{machine()}, {torch.get_num_threads()} torch threads", "torch": torch.__version__,
              "command": " ".join(["python", "bench/extract.py", *sys.argv[1:]]), "bf16_matmul_tflops": tflops,
              "gpu_goal_images_per_s": GPU_GOAL, "rows": rows}
    Path(args.out + ".json").write_text(json.dumps(result, indent=2))
    Path(args.out + ".md").write_text(markdown(result) + "\n")
    print(markdown(result))


def markdown(r: dict) -> str:
    gpu = r["bf16_matmul_tflops"] is not None
    lines = [f"Feature extraction, {r['date']}, {r['machine']}, torch {r.get('torch', '?')}, "
             f"command `{r['command']}`", ""]
    if gpu:
        lines += [f"bf16 matrix-product rate measured in this run: {r['bf16_matmul_tflops']:.0f} TFLOP/s "
                  "(8192^3 products; the FLOP floor below is FLOPs per image over this rate).", ""]
    lines += ["| backbone | device | precision | source | workers | images/s | model only images/s | "
              + ("FLOP floor images/s | " if gpu else "") + "GFLOP/image | texts/s |",
              "|---|---|---|---|---|---|---|" + ("---|" if gpu else "") + "---|---|"]
    for x in r["rows"]:
        lines.append(f"| `{x['backbone']}` | {x['device']} | {x['precision']} | {x['source']} | {x['num_workers']} | "
                     f"{x['images_per_s']:,.0f} | {x['model_only_images_per_s']:,.0f} | "
                     + (f"{x['flop_floor_images_per_s']:,.0f} | " if gpu else "")
                     + f"{x['gflops_per_image']:.2f} | {x['texts_per_s']:,.0f} |")
    vit = [x["images_per_s"] for x in r["rows"] if x["backbone"].startswith("ViT-B-32")]
    lines += ["", f"GPU goal (ViT-B-32, one H200, bf16): >= {r['gpu_goal_images_per_s']:,} images/s: "
              + ((f"best {max(vit):,.0f}, {'met' if max(vit) >= r['gpu_goal_images_per_s'] else 'missed'}")
                 if gpu and vit else "not measured in this run (no GPU)")]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
